"""Issue 13, "Scale": what one scheduling decision costs as a sweep grows to 10,000 runs with 500 in flight.

Usage (from the repository root)::

    .venv/bin/python bench/bench_scale.py                      # this checkout vs --base, every case, side by side
    .venv/bin/python bench/bench_scale.py --base none          # this checkout only
    .venv/bin/python bench/bench_scale.py --cases sim-random   # some cases only
    .venv/bin/python bench/bench_scale.py --jobs 4             # up to 4 children at once (CPU time is per child)
    .venv/bin/python bench/bench_scale.py --smoke              # a few hundred runs, this checkout (the tests run it)

Every case runs in a child process per source tree (``--base REV`` is extracted with ``git archive``; "after" is
this checkout as it is on disk; ``PYTHONPATH`` picks the tree), against a fresh SQLite file; the trees of one
case run back to back (or side by side with ``--jobs``), so both numbers are taken under the same load. Cases:

* ``sim-*`` -- the controller and the store, driven as the drive loop drives them: an agent holds ``workers``
  claimed runs, each logs 1-3 history rows and finishes, in a random order (a seeded RNG picks the next run to
  advance), and the controller ticks after every run that ends (a metric report alone ticks it only under
  Hyperband or a metric target, neither set here). Inside a measuring window (``--windows``: the first
  ``--window`` ends after ``w`` runs have finished) one run ends per tick: that tick is one *scheduling decision*
  (settle the ended run, suggest and queue its replacement). Between windows runs end ``--batch`` at a time per
  tick, which only fast-forwards the sweep to the next window.
* ``tune-random`` -- the Python entry point: :func:`sweepflow.tune.tune`, ``run_cap`` runs, ``num_workers``
  at once, an objective yielding 1-3 values; its controller's ticks are timed by a subclass swapped into
  ``sweepflow.tune`` (the code that runs is the real one).

Reported: CPU ms (``time.process_time``: the machine is shared, wall time would measure the neighbours) per tick
by finished-run window, per suggestion (the searcher's ``suggest``), per run ended (``mark_run_finished``), per
history row (``append_history``) and per claim (``claim_next`` + ``mark_run_started``); the store's size per run
and per history row (SQLite's ``dbstat``: pages of each table with its indexes); peak RSS of the child; the load
average before and after. W&B's bayes is run smaller (its suggestion fits a GP over the runs: O(runs) by design),
and grid over a smaller grid (the engine rebuilds the whole grid and every run's config on each suggestion).
Writes JSON (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, dist, fmt, machine

DEFAULT_BASE = "c32c2d6"  # the tree before this benchmark's fixes
SCRIPT = Path(__file__).resolve()

RANDOM_SPACE = {
    "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
    "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
    "width": {"distribution": "int_uniform", "min": 1, "max": 1024},
    "act": {"values": ["relu", "tanh", "gelu"]},
}


def grid_space(points: int) -> dict[str, Any]:
    """A two-parameter grid of about ``points`` configs."""
    side = max(2, round(points**0.5))
    return {"a": {"values": list(range(side))}, "b": {"values": list(range(side))}}


#: name -> (sweep config without scheduler/run_cap, workers, windows, window, batch) at full size.
CASES: dict[str, dict[str, Any]] = {
    "sim-random": {"method": "random", "workers": 500, "windows": [0, 1000, 5000, 10000], "window": 50, "batch": 250},
    "sim-grid": {
        "method": "grid",
        "workers": 500,
        "windows": [0, 1000, 2000],
        "window": 30,
        "batch": 250,
        "grid": 2601,
    },
    "sim-bayes": {"method": "bayes", "workers": 20, "windows": [0, 100, 300], "window": 10, "batch": 20},
    "sim-tpe": {"method": "tpe", "workers": 100, "windows": [0, 500, 2000], "window": 20, "batch": 100},
    "tune-random": {"method": "random", "workers": 500, "runs": 10000},
}
SMOKE: dict[str, dict[str, Any]] = {
    "sim-random": {"method": "random", "workers": 30, "windows": [0, 150], "window": 8, "batch": 30},
    "tune-random": {"method": "random", "workers": 30, "runs": 150},
}


def sweep_config(case: dict[str, Any], run_cap: int | None) -> dict[str, Any]:
    method = case["method"]
    config: dict[str, Any] = {
        "metric": {"name": "loss", "goal": "minimize"},
        "scheduler": {"num_workers": case["workers"]},
        "parameters": grid_space(case["grid"]) if method == "grid" else RANDOM_SPACE,
    }
    if method == "tpe":  # Optuna's TPE, chosen as W&B's Optuna scheduler is
        config["scheduler"].update(job="wandb/sweep-jobs/job-optuna-sweep-scheduler:latest")
        config["scheduler"]["settings"] = {"sampler": {"type": "TPESampler"}}
    else:
        config["method"] = method
    if run_cap is not None:
        config["run_cap"] = run_cap
    return config


def loss_of(config: dict[str, Any]) -> float:
    """A cheap deterministic metric of a config (its value does not matter to the cost measured)."""
    return sum(hash(str(v)) % 1000 for v in config.values()) / 1000.0


# -- the child: one case on one tree --------------------------------------------------------------------------


class Clock:
    """CPU milliseconds of calls, by name."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms[name].append((time.process_time() - t0) * 1000)

        return timed


def store_sizes(db: Path) -> dict[str, Any]:
    """Bytes of the database file and per table (with its indexes), from SQLite's ``dbstat``."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = conn.execute(
            "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
            "LEFT JOIN sqlite_schema m ON m.name = d.name GROUP BY 1"
        ).fetchall()
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "run_history")}
    finally:
        conn.close()
    tables = dict(rows)
    return {
        "file_bytes": db.stat().st_size,
        "tables": tables,
        "runs": counts["runs"],
        "history_rows": counts["run_history"],
        "bytes_per_run": (tables.get("runs", 0) + tables.get("queue_items", 0)) / max(1, counts["runs"]),
        "bytes_per_history_row": tables.get("run_history", 0) / max(1, counts["run_history"]),
        "file_bytes_per_run": db.stat().st_size / max(1, counts["runs"]),
    }


def simulate(case: dict[str, Any], db: Path, seed: int) -> dict[str, Any]:
    """The controller and store driven as the drive loop drives them (see the module docstring)."""
    from sweepflow.config import load_sweep_config
    from sweepflow.local.controller import Controller, ControllerSettings
    from sweepflow.store import Store

    workers, windows, window, batch = case["workers"], case["windows"], case["window"], case["batch"]
    store = Store(f"sqlite:///{db}")
    cfg = load_sweep_config(sweep_config(case, run_cap=None))
    stored = cfg.to_wandb()
    stored["seed"] = seed
    sweep, _ = store.create_sweep(None, "bench", stored)
    queue = "scale"
    store.ensure_queue(queue)
    ttl = 3600.0
    controller = Controller(store, sweep.id, settings=ControllerSettings(queue=queue, lease_ttl=ttl))
    clock = Clock()
    controller.searcher.suggest = clock.wrap("suggest", controller.searcher.suggest)  # type: ignore[method-assign]
    # Where a tick's time goes: reading the runs (whichever way the tree reads them), queueing the new run.
    for method in ("runs", "run_changes", "metric_series"):
        if hasattr(store, method):
            setattr(store, method, clock.wrap("read", getattr(store, method)))
    store.add_run = clock.wrap("add_run", store.add_run)  # type: ignore[method-assign]
    claim = clock.wrap("claim", lambda: store.claim_next(queue, agent, lease_ttl=ttl))
    start = clock.wrap("claim", lambda run_id, item_id: store.mark_run_started(run_id, agent, item_id=item_id))
    finish = clock.wrap("finish", store.mark_run_finished)
    log = clock.wrap("history", store.append_history)
    agent = store.register_agent(queue, max_jobs=workers).id
    rng = random.Random(seed)
    active: dict[int, list[Any]] = {}  # item id -> [run id, rows left, step, summary]
    ticks: list[dict[str, Any]] = []
    finished = 0
    last_beat = time.monotonic()
    grid_done = False

    parts = ("suggest", "read", "add_run")

    def tick(ended: int) -> bool:
        before = {name: len(clock.ms[name]) for name in parts}
        t0 = time.process_time()
        alive = controller.tick()
        ms = (time.process_time() - t0) * 1000
        spent = {name: sum(clock.ms[name][before[name] :]) for name in parts}
        suggested = len(clock.ms["suggest"]) - before["suggest"]
        ticks.append({"finished": finished, "ended": ended, "suggested": suggested, "ms": ms, "parts": spent})
        return alive

    def fill() -> None:
        while len(active) < workers:
            got = claim()
            if got is None:
                return
            if start(got.run.id, got.item.id) is not None:
                active[got.item.id] = [got.run.id, rng.randint(1, 3), 0, {}]

    alive = tick(0)
    fill()
    last = windows[-1] + window
    while alive and finished < last and active:
        in_window = any(w <= finished < w + window for w in windows)
        target = 1 if in_window else min(batch, min((w - finished for w in windows if w > finished), default=batch))
        ended = 0
        while ended < target and active:
            item_id = rng.choice(list(active))
            run = active[item_id]
            if run[1] > 0:  # one more history row, as an agent relays a logged step
                value = loss_of({"s": run[0], "n": run[2]})
                run[3] = {"loss": value}
                log(
                    run[0],
                    [{"loss": value, "_step": run[2], "_timestamp": time.time()}],
                    summary=run[3],
                    item_id=item_id,
                )
                run[1] -= 1
                run[2] += 1
                continue
            del active[item_id]
            finish(run[0], "finished", exit_code=0, summary=run[3], item_id=item_id)
            ended += 1
            finished += 1
        if time.monotonic() - last_beat > 5:  # the agent's heartbeat, as often as a real one's
            store.heartbeat(agent, list(active), ttl=ttl)
            last_beat = time.monotonic()
        alive = tick(ended)
        fill()
        if not alive and case["method"] == "grid":
            grid_done = True
    if alive:
        store.set_sweep_state(sweep.id, "finished", "the benchmark has measured its windows", expect=["running"])
    controller.release()
    store.close()
    by_window = {}
    for w in windows:
        inside = [t for t in ticks if w <= t["finished"] < w + window and t["ended"] == 1]
        by_window[str(w)] = {
            "tick_ms": dist([t["ms"] for t in inside]),
            "suggested_per_tick": dist([t["suggested"] for t in inside]),
            **{f"{name}_ms_per_tick": dist([t["parts"][name] for t in inside]) for name in parts},
        }
    per_suggest = _by_window(clock.ms["suggest"], ticks, windows, window)
    return {
        "finished": finished,
        "grid_exhausted": grid_done,
        "windows": by_window,
        "suggest_ms_by_window": {str(w): dist(per_suggest.get(w, [])) for w in windows},
        "all_ticks_cpu_s": sum(t["ms"] for t in ticks) / 1000,
        "ticks": len(ticks),
        "finish_ms": dist(clock.ms["finish"]),
        "history_ms": dist(clock.ms["history"]),
        "claim_ms": dist(clock.ms["claim"]),
        "suggest_ms": dist(clock.ms["suggest"]),
        "store": store_sizes(db),
        "_windows_def": windows,
        "_window": window,
    }


def _by_window(suggest_ms: list[float], ticks: list[dict[str, Any]], windows: list[int], window: int) -> dict:
    """Suggestion times of the single-end ticks, by the window they fell in (suggestions are timed in order)."""
    out: dict[int, list[float]] = defaultdict(list)
    i = 0
    for t in ticks:
        got = suggest_ms[i : i + t["suggested"]]
        i += t["suggested"]
        for w in windows:
            if t["ended"] == 1 and w <= t["finished"] < w + window:
                out[w].extend(got)
    return out


def tune_case(case: dict[str, Any], db: Path, seed: int) -> dict[str, Any]:
    """:func:`tune` on a 1-3 step objective, its controller's ticks timed (see the module docstring)."""
    import sweepflow.tune as tune_module
    from sweepflow.local.controller import Controller

    ticks: list[float] = []

    class TimedController(Controller):
        def tick(self, now: float | None = None) -> bool:
            t0 = time.process_time()
            try:
                return super().tick(now)
            finally:
                ticks.append((time.process_time() - t0) * 1000)

    def objective(config: dict[str, Any]) -> Iterator[float]:
        steps = 1 + int(config["x"] * 3) % 3
        for step in range(steps):
            yield loss_of(config) + step

    tune_module.Controller = TimedController  # type: ignore[misc]
    t0 = time.process_time()
    result = tune_module.tune(
        sweep_config(case, run_cap=case["runs"]), objective, store=f"sqlite:///{db}", seed=seed, lease_ttl=3600.0
    )
    cpu = time.process_time() - t0
    result.store.close()
    return {
        "state": result.state,
        "runs": len(result.runs),
        "cpu_s": cpu,
        "cpu_ms_per_run": cpu * 1000 / max(1, len(result.runs)),
        "ticks": len(ticks),
        "tick_cpu_s": sum(ticks) / 1000,
        "tick_ms": dist(ticks),
        "store": store_sizes(db),
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import sweepflow

    case, db = spec["case"], Path(spec["db"])
    load = os.getloadavg()
    t0 = time.process_time()
    run = tune_case if spec["name"].startswith("tune") else simulate
    out = run(case, db, spec["seed"])
    out.update(
        cpu_s_total=time.process_time() - t0,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        load_before=load,
        load_after=os.getloadavg(),
        sweepflow_path=str(Path(sweepflow.__file__).parent),
    )
    return out


# -- the parent: every case on every tree ---------------------------------------------------------------------


def extract(rev: str, tmp: Path) -> Path:
    """The source tree of ``rev`` (``git archive``: nothing in .git changes)."""
    tree = tmp / f"tree-{rev}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_child(tree: Path, name: str, case: dict[str, Any], tmp: Path, seed: int) -> dict[str, Any]:
    db = tmp / f"{tree.name}-{name}.db"
    spec = {"name": name, "case": case, "db": str(db), "seed": seed}
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--child", json.dumps(spec)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} on {tree} failed:\n{proc.stderr[-4000:]}")
    db.unlink(missing_ok=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown: one row per case, tree and window."""
    lines = [
        "| case | tree | finished runs | tick CPU ms p50 / mean / max | of which: read runs / suggest / add_run "
        "(mean) | finish ms p50 | history row ms p50 | claim ms p50 | store B/run | B/history row | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, trees in results.items():
        for label, r in trees.items():
            s = r["store"]
            p50 = {k: fmt(r.get(f"{k}_ms", {}).get("p50"), digits=2) for k in ("finish", "history", "claim")}
            tail = (
                f"{p50['finish']} | {p50['history']} | {p50['claim']} | {s['bytes_per_run']:.0f} | "
                f"{s['bytes_per_history_row']:.0f} | {r['peak_rss_mb']:.0f} |"
            )
            if name.startswith("tune"):
                t = r["tick_ms"]
                lines.append(
                    f"| {name} | {label} | {r['runs']} runs, {r['ticks']} ticks ({r['cpu_ms_per_run']:.2f} CPU ms/run)"
                    f" | {fmt(t.get('p50'), digits=2)} / {fmt(t.get('mean'), digits=2)} / {fmt(t.get('max'), digits=1)}"
                    f" | - | - | - | - | {s['bytes_per_run']:.0f} | {s['bytes_per_history_row']:.0f} | "
                    f"{r['peak_rss_mb']:.0f} |"
                )
                continue
            for w, stats in r["windows"].items():
                t = stats["tick_ms"]
                sug = " / ".join(
                    fmt(stats[f"{k}_ms_per_tick"].get("mean"), digits=2) for k in ("read", "suggest", "add_run")
                )
                lines.append(
                    f"| {name} | {label} | {w}-{int(w) + r['_window']} | {fmt(t.get('p50'), digits=2)} / "
                    f"{fmt(t.get('mean'), digits=2)} / {fmt(t.get('max'), digits=1)} | {sug} | " + tail
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help="git revision to compare with, or 'none'")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="children run at once (each measures its own CPU time)")
    parser.add_argument("--smoke", action="store_true", help="a few hundred runs, this checkout only")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return {}
    cases = SMOKE if args.smoke else {name: CASES[name] for name in args.cases.split(",")}
    base = "none" if args.smoke else args.base
    load, t0 = os.getloadavg(), time.time()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        trees = {"after": ROOT} if base == "none" else {"before": extract(base, tmp), "after": ROOT}
        jobs = [(name, label) for name in cases for label in trees]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {
                job: pool.submit(run_child, trees[job[1]], job[0], cases[job[0]], tmp, args.seed) for job in jobs
            }
            for name, label in jobs:
                got = results.setdefault(name, {})[label] = futures[name, label].result()
                print(f"{name} [{label}]: done ({got['cpu_s_total']:.1f} CPU s)", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {
        "argv": sys.argv if argv is None else argv,
        "base": base,
        "machine": machine(),
        "load_before": load,
        "load_after": os.getloadavg(),
        "wall_s": time.time() - t0,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(table(results))
    print(json.dumps(meta))
    out = {"meta": meta, "results": results}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
