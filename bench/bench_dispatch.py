"""The drive loop's cost and dispatch latency, before and after, side by side in one invocation.

Usage (from the repository root; ~4 minutes on 2 cores)::

    .venv/bin/python bench/bench_dispatch.py                     # this checkout vs --base 80ff29a, 20 runs each
    .venv/bin/python bench/bench_dispatch.py --repeats 2         # interleaved: before, after, before, after
    .venv/bin/python bench/bench_dispatch.py --base none         # this checkout only
    .venv/bin/python bench/bench_dispatch.py --smoke --out /tmp/s.json   # a few seconds (the test suite runs it)

For every source tree (``--base REV`` is extracted with ``git archive`` to a temp dir; "after" is this checkout
as it is on disk) it runs the same random sweep (``run_cap`` = ``--runs``, ``num_workers`` = ``--workers``) in a
fresh ``SWEEPFLOW_HOME``, driven by that tree's ``drive()`` in a child process (``bench/_dispatch_driver.py``,
with ``PYTHONPATH`` set to the tree), and reports:

* **loop CPU**: CPU seconds of the thread running ``drive()`` (controller + embedded agent) / sweep wall time,
  i.e. the share of one core the scheduler takes while runs train;
* **dispatch latency**: a run's process exits -> the next run's process is spawned, per slot (both trees, measured
  from outside: audit hook + ``waitid``); and, where the tree's agent has the event hook, slot freed (outcome
  recorded) -> next run started;
* overhead: wall / (sum of run times / workers), and idle slot time (head / gaps / tail);
* the machine's load and the CPU other processes used meanwhile (this box is shared: say so with the result).

The job is ``examples/train_digits.py`` (real imports, CPU-bound training, real wandb start-up and shutdown), with
its epochs calibrated from one solo run to ``--train-seconds``; ``--smoke`` uses ``tests/scripts/curve.py``.
Writes JSON (``--out``, default ``bench/dispatch_results.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, CpuSampler, cpu_jiffies, dist, extract, fmt, machine

TRAIN = ROOT / "examples" / "train_digits.py"
CURVE = ROOT / "tests" / "scripts" / "curve.py"
DRIVER = Path(__file__).resolve().parent / "_dispatch_driver.py"
DEFAULT_BASE = "80ff29a"  # the commit before the loop became event-driven


# -- calibration ----------------------------------------------------------------------------------------------


def calibrate(train_seconds: float, tmp: Path) -> dict[str, Any]:
    """Epochs of train_digits that take ``train_seconds`` when run alone (from its rows' timestamps)."""
    sys.path.insert(0, str(ROOT))
    from sweepflow.local.txlog import RunLog, find_run_file

    probe_epochs = 40
    wandb_dir = tmp / "calibration"
    wandb_dir.mkdir()
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(wandb_dir), WANDB_RUN_ID="calib")
    subprocess.run(
        [sys.executable, str(TRAIN), f"--epochs={probe_epochs}"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = find_run_file(wandb_dir, "calib")
    assert path is not None, "calibration run wrote no transaction log"
    stamps = [row["_timestamp"] for row in RunLog.read(path).history]
    per_epoch = statistics.median(b - a for a, b in itertools.pairwise(stamps))
    return {
        "probe_epochs": probe_epochs,
        "seconds_per_epoch_solo": per_epoch,
        "epochs": max(1, round(train_seconds / per_epoch)),
    }


def sweep_config(runs: int, workers: int, epochs: int, *, smoke: bool = False) -> dict[str, Any]:
    if smoke:
        parameters = {"quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": epochs}, "sleep": {"value": 0.0}}
        return {
            "method": "random",
            "program": str(CURVE),
            "project": "bench-dispatch",
            "run_cap": runs,
            "metric": {"name": "loss", "goal": "minimize"},
            "scheduler": {"num_workers": workers},
            "parameters": parameters,
        }
    return {
        "method": "random",
        "program": str(TRAIN),
        "project": "bench-dispatch",
        "run_cap": runs,
        "metric": {"name": "val_loss", "goal": "minimize"},
        "scheduler": {"num_workers": workers},
        "parameters": {
            # Only parameters that do not change the cost of an epoch vary, so runs take about the same time.
            "learning_rate_init": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "alpha": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-2},
            "epochs": {"value": epochs},
            "hidden": {"value": 32},
            "batch_size": {"value": 64},
        },
    }


# -- one sweep in one tree ------------------------------------------------------------------------------------


def run_tree(label: str, tree: Path, config: dict[str, Any], tmp: Path, *, cprofile: Path | None = None) -> dict:
    home = tmp / f"home-{label}-{time.monotonic_ns()}"
    spec_path, out_path = home.with_suffix(".spec.json"), home.with_suffix(".out.json")
    spec_path.write_text(json.dumps({"config": config, "home": str(home), "cprofile": str(cprofile or "")}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPFLOW_")}  # the tree's own defaults
    env.update(PYTHONPATH=str(tree), SWEEPFLOW_HOME=str(home), WANDB_MODE="offline", WANDB_SILENT="true")
    sampler = CpuSampler(f"SWEEPFLOW_HOME={home}")
    sampler.start()
    busy0, steal0, total0 = cpu_jiffies()
    load0 = os.getloadavg()
    t0 = time.time()
    subprocess.run([sys.executable, str(DRIVER), str(spec_path), str(out_path)], env=env, check=True, cwd=tree)
    wall = time.time() - t0
    busy1, steal1, total1 = cpu_jiffies()
    sampler.stop.set()
    sampler.join()
    raw = json.loads(out_path.read_text())
    shutil.rmtree(home, ignore_errors=True)
    result = analyse(raw, config["scheduler"]["num_workers"])
    result.update(
        label=label,
        tree=str(tree),
        sweepflow_path=raw["sweepflow_path"],
        settings=raw["settings"],
        child_wall_s=wall,
        load_before=load0,
        load_after=os.getloadavg(),
        machine_cpu_busy_share=(busy1 - busy0) / max(1, total1 - total0),
        machine_cpu_steal_share=(steal1 - steal0) / max(1, total1 - total0),
        cpu_sampler=sampler.result(wall),
    )
    return result


def _pair(freed: list[tuple[float, str]], started: list[tuple[float, str]]) -> list[tuple[float, float, str]]:
    """Per slot: each freed slot (oldest first) -> the next start after it. (t_freed, t_started, freed run id)"""
    freed, started = sorted(freed), sorted(started)
    windows, waiting, fi = [], [], 0
    for t_start, _ in started:
        while fi < len(freed) and freed[fi][0] <= t_start:
            waiting.append(freed[fi])
            fi += 1
        if waiting:
            t_freed, run_id = waiting.pop(0)
            windows.append((t_freed, t_start, run_id))
    return windows


def lanes(runs: list[dict], workers: int, begin: float, end: float) -> dict[str, float]:
    """Assign runs to ``workers`` slots (earliest-freed first) and split the slots' idle time."""
    free = [begin] * workers
    first = [True] * workers
    head = gaps = 0.0
    for run in sorted(runs, key=lambda r: r["started_at"]):
        ready = [i for i in range(workers) if free[i] <= run["started_at"] + 1e-9]
        i = min(ready or range(workers), key=lambda j: free[j])
        idle = max(0.0, run["started_at"] - free[i])
        if first[i]:
            head += idle
            first[i] = False
        else:
            gaps += idle
        free[i] = run["ended_at"]
    tail = sum(max(0.0, end - f) for f in free)
    return {"head_s": head, "gaps_s": gaps, "tail_s": tail}


def analyse(raw: dict[str, Any], workers: int) -> dict[str, Any]:
    spawned, exited = raw["spawned"], raw["exited"]
    exits = [(t, rid) for rid, t in exited.items()]
    spawns = [(t, rid) for rid, t in spawned.items()]
    windows = _pair(exits, spawns)
    out: dict[str, Any] = {
        "final_state": raw["final_state"],
        "final_reason": raw["final_reason"],
        "runs": len(raw["runs"]),
        "run_states": {s: sum(r["state"] == s for r in raw["runs"]) for s in {r["state"] for r in raw["runs"]}},
        "wall_s": raw["wall_s"],
        "rounds": raw["rounds"],
        "loop_thread_cpu_s": raw["loop_thread_cpu_s"],
        "loop_cpu_share_of_one_core": raw["loop_thread_cpu_s"] / raw["wall_s"],
        "driver_process_cpu_s": raw["process_cpu_s"],
        "exits_seen": len(exits),
        "dispatch_exit_to_spawn_ms": dist([b - a for a, b, _ in windows], 1e3),
    }
    if raw["has_event_hook"]:
        events = raw["hook_events"]
        freed = [(t, rid) for kind, rid, t in events if kind == "finished"]
        started = [(t, rid) for kind, rid, t in events if kind == "started"]
        out["dispatch_freed_to_started_ms"] = dist([b - a for a, b, _ in _pair(freed, started)], 1e3)
        out["exit_noticed_ms"] = dist([t - exited[rid] for t, rid in freed if rid in exited], 1e3)
    done = [r for r in raw["runs"] if r["started_at"] and r["ended_at"]]
    if done:
        sum_run = sum(r["ended_at"] - r["started_at"] for r in done)
        idle = lanes(done, workers, raw["wall0"], raw["wall0"] + raw["wall_s"])
        out["run_time_s"] = dist([r["ended_at"] - r["started_at"] for r in done])
        out["startup_s"] = dist([r["first_row_at"] - r["started_at"] for r in done if r["first_row_at"]])
        out["overhead_ratio"] = raw["wall_s"] / (sum_run / workers)
        out["idle_share_of_slot_time"] = {k: v / (workers * raw["wall_s"]) for k, v in idle.items()}
    return out


# -- main -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=None, help="run_cap of the sweep (default 20; smoke 3)")
    parser.add_argument("--workers", type=int, default=2, help="num_workers (default 2)")
    parser.add_argument("--train-seconds", type=float, default=2.0, help="training time per run to aim for")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (skips calibration)")
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"the 'before' commit (default {DEFAULT_BASE}; 'none')")
    parser.add_argument("--repeats", type=int, default=1, help="sweeps per tree, interleaved (default 1)")
    parser.add_argument("--smoke", action="store_true", help="3 quick runs of tests/scripts/curve.py, no base")
    parser.add_argument("--cprofile", type=Path, default=None, help="cProfile this checkout's drive() into here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "dispatch_results.json")
    args = parser.parse_args(argv)
    if args.smoke and args.base == DEFAULT_BASE:
        args.base = "none"
    runs = args.runs or (3 if args.smoke else 20)

    started = time.time()
    result: dict[str, Any] = {
        "command": " ".join(["bench/bench_dispatch.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_at_start": os.getloadavg(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="sweepflow-bench-"))
    try:
        if args.smoke:
            epochs = args.epochs or 3
        elif args.epochs is None:
            result["calibration"] = calibrate(args.train_seconds, tmp)
            epochs = result["calibration"]["epochs"]
        else:
            epochs = args.epochs
        config = sweep_config(runs, args.workers, epochs, smoke=args.smoke)
        trees = [] if args.base.lower() == "none" else [(f"before ({args.base})", extract(args.base, tmp))]
        trees.append(("after (this checkout)", ROOT))
        result["sweeps"] = []
        for _ in range(args.repeats):
            for label, tree in trees:
                cprofile = args.cprofile if tree == ROOT else None
                result["sweeps"].append(run_tree(label, tree, config, tmp, cprofile=cprofile))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_at_end"] = os.getloadavg()
    result["bench_total_s"] = time.time() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    report(result, args.workers, epochs)
    print(f"results: {args.out} (bench took {result['bench_total_s']:.0f} s)")
    return result


def report(result: dict[str, Any], workers: int, epochs: int) -> None:
    sweeps = result["sweeps"]
    print(f"\n{sweeps[0]['runs']} runs, {workers} workers, {epochs} epochs; load {result['load_at_start'][0]:.2f} "
          f"-> {result['load_at_end'][0]:.2f}")  # fmt: skip
    rows = [
        ("loop CPU, share of one core", lambda s: fmt(s["loop_cpu_share_of_one_core"] * 100, " %", 2)),
        ("loop CPU s / wall s", lambda s: f"{s['loop_thread_cpu_s']:.2f} / {s['wall_s']:.1f}"),
        ("loop rounds", lambda s: str(s["rounds"])),
        ("dispatch exit->spawn p50 / p90 (ms)", lambda s: _p(s.get("dispatch_exit_to_spawn_ms"))),
        ("dispatch freed->started p50 / p90 (ms)", lambda s: _p(s.get("dispatch_freed_to_started_ms"))),
        ("exit noticed p50 / p90 (ms)", lambda s: _p(s.get("exit_noticed_ms"))),
        ("overhead wall / (sum run / workers)", lambda s: fmt(s.get("overhead_ratio"), "", 3)),
        ("run time p50 (s)", lambda s: fmt((s.get("run_time_s") or {}).get("p50"), "", 2)),
        ("other processes, cores on average", lambda s: fmt(s["cpu_sampler"]["other_processes_cores_avg"], "", 2)),
        ("final state", lambda s: f"{s['final_state']} ({s['runs']} runs)"),
    ]
    width = max(len(s["label"]) for s in sweeps) + 2
    print(f"{'':<42}" + "".join(f"{s['label']:>{width}}" for s in sweeps))
    for name, get in rows:
        print(f"{name:<42}" + "".join(f"{get(s):>{width}}" for s in sweeps))


def _p(d: dict[str, Any] | None) -> str:
    if not d or not d.get("n"):
        return "-"
    return f"{d['p50']:.1f} / {d['p90']:.1f}"


if __name__ == "__main__":
    main()
