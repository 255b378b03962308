"""Dispatch latency and scheduling overhead of the embedded backend, measured on one real sweep.

Usage (from the repository root; ~1.5-2 minutes on 2 cores)::

    .venv/bin/python bench/bench_dispatch.py                      # 20 runs, 2 workers, ~2 s of training each
    .venv/bin/python bench/bench_dispatch.py --epochs 70          # skip the epoch calibration
    .venv/bin/python bench/bench_dispatch.py --cprofile /tmp/d.prof   # also cProfile the driving loop (slower!)

What it does, in one process:

1. Calibrates ``examples/train_digits.py``: one solo run, median seconds per epoch from the ``_timestamp`` of
   consecutive history rows, then ``epochs = target / that`` (``--train-seconds``, default 2 s; inside the
   sweep two runs and the controller share the cores, so epochs come out ~1.3x slower). train_digits
   is the job because it is what users run: a real script that imports numpy, scikit-learn and wandb, loads
   data and trains, so its start-up, CPU use and wandb shutdown are realistic. ``tests/scripts/curve.py`` with
   ``sleep`` would start faster and leave the cores idle, which hides the controller's CPU use and the
   contention of two runs on two cores.
2. Runs one random sweep (``run_cap`` = ``--runs``, ``num_workers`` = ``--workers``) in a fresh
   ``SWEEPFLOW_HOME`` (a temp dir), driven in-process by :func:`sweepflow.backends.local.drive` with an
   embedded agent, as the backend tests do. Nothing outside ``bench/`` is changed; the bench only wraps
   methods in this process with timers:

   * dispatch latency, two ways: the agent's own ``Agent.dispatch_latencies`` (it keeps one "slot freed"
     timestamp, so when two slots free in the same round only one dispatch is recorded), and a per-slot FIFO
     kept here (every freed slot -> the next run's process started; all dispatches).
   * where each dispatch's time went: every outermost call to a Store method, the engine's ``suggest``,
     ``RunProcess.start`` (spawn), ``RunProcess.poll_rows`` (txlog), ``SweepConfig.model_validate`` and the
     loop's ``time.sleep`` is recorded as an interval; each dispatch window is split into those categories,
     the rest is "other Python".
3. From the store: run time = ``ended_at - started_at``; start-up = first history row's ``_timestamp`` -
   ``started_at`` (checked to be wall-clock epoch seconds), plus finer splits from the transaction log's run
   record (``start_time``, when ``wandb.init`` began). Overhead ratios and idle-slot decomposition follow.
4. Times ``sweeps.next_run`` (through sweepflow's searcher) for random and bayes at 0..runs-1 finished trials,
   and Popen with and without ``preexec_fn`` (the agent's spawn path) from this process.

Writes a JSON result file (``--out``, default ``bench/dispatch_results.json``) and prints a short table.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import cProfile
import functools
import itertools
import json
import os
import platform
import pstats
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TRAIN = ROOT / "examples" / "train_digits.py"

# -- timing instrumentation (this process only) -------------------------------------------------------------

INTERVALS: list[tuple[float, float, str]] = []  # (t0, t1, category) of outermost timed calls, perf_counter
_depth = 0


def timed(category: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _depth
        if _depth:
            return fn(*args, **kwargs)
        _depth += 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            INTERVALS.append((t0, time.perf_counter(), category))
            _depth -= 1

    return wrapper


class _TimeShim:
    """Stands in for the ``time`` module inside sweepflow.backends.local, so drive()'s sleeps are recorded."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        t0 = time.perf_counter()
        time.sleep(seconds)
        INTERVALS.append((t0, time.perf_counter(), "sleep (poll interval)"))


def instrument() -> dict[str, Any]:
    """Wrap store/engine/runner entry points with timers; swap in an Agent that logs slot events."""
    import sweepflow.backends.local as local_mod
    from sweepflow.config import SweepConfig
    from sweepflow.local.agent import Agent
    from sweepflow.local.runner import RunProcess
    from sweepflow.local.search import SweepsSearcher
    from sweepflow.store import Store

    for name, value in list(vars(Store).items()):
        if not name.startswith("_") and callable(value) and not isinstance(value, staticmethod | classmethod):
            setattr(Store, name, timed(f"store.{name}", value))
    SweepsSearcher.suggest = timed("engine suggest (sweeps.next_run)", SweepsSearcher.suggest)
    agent_wait = Agent.wait

    def wait(self: Agent, timeout: float) -> None:  # drive() sleeps here (woken early when a run exits)
        t0 = time.perf_counter()
        agent_wait(self, timeout)
        INTERVALS.append((t0, time.perf_counter(), "sleep (poll interval)"))

    Agent.wait = wait
    RunProcess.start = classmethod(timed("spawn (RunProcess.start: mkdir, params, Popen)", RunProcess.start.__func__))
    RunProcess.poll_rows = timed("txlog poll (RunProcess.poll_rows)", RunProcess.poll_rows)
    validate = SweepConfig.model_validate.__func__
    SweepConfig.model_validate = classmethod(timed("SweepConfig.model_validate", validate))

    events: dict[str, Any] = {"freed": [], "started": [], "exited": {}, "agents": []}

    def watch_exit(run_id: str, pid: int) -> None:
        # waitid(WNOWAIT) blocks until the child exits without reaping it, so Popen.poll still sees it.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            events["exited"][run_id] = time.perf_counter()

    class BenchAgent(Agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            events["agents"].append(self)

        def _finish(self, item_id, active, code, now):
            super()._finish(item_id, active, code, now)
            events["freed"].append((time.perf_counter(), active.claim.run.id))

        def _start(self, claim, now):
            before = self.started
            super()._start(claim, now)
            if self.started > before:
                events["started"].append((time.perf_counter(), claim.run.id))
                pid = self.active[claim.item.id].proc.pid
                threading.Thread(target=watch_exit, args=(claim.run.id, pid), daemon=True).start()

    local_mod.Agent = BenchAgent
    local_mod.time = _TimeShim()
    return events


# -- helpers --------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    """Percentile by linear interpolation (numpy's default); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def dist(values: list[float], scale: float = 1.0) -> dict[str, Any]:
    values = [x * scale for x in values]
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "max": max(values),
        "min": min(values),
    }


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        commit = head.stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True).stdout)
    except OSError:
        commit, dirty = "", None
    import wandb

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "wandb": wandb.__version__,
        "git_head": commit,
        "worktree_dirty": dirty,
    }


def cpu_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat (steal: time the hypervisor gave elsewhere)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, fields[7], sum(fields)


class CpuSampler(threading.Thread):
    """Every ``period`` s, CPU time used since the last sample by this benchmark's processes (their
    environment carries our SWEEPFLOW_HOME: the runs and their wandb-core) versus everything else on the
    machine, so a result taken on a shared box says how much other work competed with it. Short-lived
    processes that start and end between two samples are missed (both sides), so these are lower bounds.
    """

    def __init__(self, marker: str, period: float = 2.0):
        super().__init__(daemon=True)
        self.marker = marker.encode()
        self.period = period
        self.stop = threading.Event()
        self.ours = 0.0
        self.others = 0.0
        self.other_by_name: dict[str, float] = defaultdict(float)
        self._last: dict[tuple[int, int], float] = {}
        self._is_ours: dict[tuple[int, int], bool] = {}
        self._tick = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        now: dict[tuple[int, int], float] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                key = (int(entry.name), int(fields[19]))  # pid, start time
                cpu = (int(fields[11]) + int(fields[12])) / self._tick
                if key not in self._is_ours:
                    pid = int(entry.name)
                    environ = Path(entry.path, "environ").read_bytes() if pid != os.getpid() else self.marker
                    self._is_ours[key] = self.marker in environ
            except (OSError, ValueError, IndexError):
                continue
            now[key] = cpu
            if key in self._last:
                delta = cpu - self._last[key]
                if self._is_ours[key]:
                    self.ours += delta
                else:
                    self.others += delta
                    self.other_by_name[name] += delta
        self._last = now

    def run(self) -> None:
        self._sample()
        while not self.stop.wait(self.period):
            self._sample()

    def result(self, wall: float) -> dict[str, Any]:
        top = sorted(self.other_by_name.items(), key=lambda kv: -kv[1])[:5]
        return {
            "bench_processes_cpu_s": self.ours,
            "other_processes_cpu_s": self.others,
            "other_processes_cores_avg": self.others / wall,
            "top_other_processes_cpu_s": {k: round(v, 2) for k, v in top},
        }


# -- 1. calibration -----------------------------------------------------------------------------------------


def calibrate(train_seconds: float, tmp: Path) -> dict[str, Any]:
    from sweepflow.local.txlog import RunLog, find_run_file

    probe_epochs = 40
    wandb_dir = tmp / "calibration"
    wandb_dir.mkdir()
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(wandb_dir), WANDB_RUN_ID="calib")
    t0 = time.time()
    subprocess.run(
        [sys.executable, str(TRAIN), f"--epochs={probe_epochs}"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.time() - t0
    path = find_run_file(wandb_dir, "calib")
    assert path is not None, "calibration run wrote no transaction log"
    stamps = [row["_timestamp"] for row in RunLog.read(path).history]
    per_epoch = statistics.median(b - a for a, b in itertools.pairwise(stamps))
    return {
        "probe_epochs": probe_epochs,
        "probe_wall_s": wall,
        "probe_startup_s": stamps[0] - t0,
        "seconds_per_epoch_solo": per_epoch,
        "epochs": max(1, round(train_seconds / per_epoch)),
    }


# -- 2. the sweep -------------------------------------------------------------------------------------------


def sweep_config(args: argparse.Namespace, epochs: int) -> dict[str, Any]:
    return {
        "method": "random",
        "program": str(TRAIN),
        "project": "bench-dispatch",
        "run_cap": args.runs,
        "metric": {"name": "val_loss", "goal": "minimize"},
        "scheduler": {"num_workers": args.workers},
        "parameters": {
            # Only parameters that do not change the cost of an epoch vary, so runs take about the same time.
            "learning_rate_init": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "alpha": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-2},
            "epochs": {"value": epochs},
            "hidden": {"value": 32},
            "batch_size": {"value": 64},
        },
    }


def run_start_time(run_dir: Path, run_id: str) -> float | None:
    """wandb's own run start (``wandb.init`` began) from the run record of the transaction log."""
    from sweepflow.local.txlog import TransactionLog, find_run_file

    path = find_run_file(run_dir, run_id)
    if path is None:
        return None
    for record in TransactionLog(path).poll():
        if record.WhichOneof("record_type") == "run" and record.run.HasField("start_time"):
            return record.run.start_time.ToNanoseconds() / 1e9
    return None


def lanes(runs: list[Any], workers: int, begin: float, end: float) -> dict[str, Any]:
    """Assign runs to ``workers`` slots (earliest-freed first) and split the slots' idle time."""
    free = [begin] * workers
    head = gaps = 0.0
    gap_list = []
    first = [True] * workers
    for run in sorted(runs, key=lambda r: r.started_at):
        ready = [i for i in range(workers) if free[i] <= run.started_at + 1e-9]
        i = min(ready or range(workers), key=lambda j: free[j])
        idle = max(0.0, run.started_at - free[i])
        if first[i]:
            head += idle
            first[i] = False
        else:
            gaps += idle
            gap_list.append(idle)
        free[i] = run.ended_at
    tail = sum(max(0.0, end - f) for f in free)
    return {"head_s": head, "gaps_s": gaps, "tail_s": tail, "store_gaps": gap_list}


def run_sweep(args: argparse.Namespace, epochs: int, home: Path) -> dict[str, Any]:
    os.environ["SWEEPFLOW_HOME"] = str(home)
    events = instrument()
    from sweepflow.backends.local import LocalBackend
    from sweepflow.config import load_sweep_config
    from sweepflow.local.drive import drive
    from sweepflow.settings import Settings

    settings = Settings()
    backend = LocalBackend(settings=settings)
    handle = backend.launch(load_sweep_config(sweep_config(args, epochs)), key="bench-dispatch", drive="none")

    INTERVALS.clear()
    profiler = cProfile.Profile() if args.cprofile else None
    sampler = CpuSampler(f"SWEEPFLOW_HOME={home}")
    sampler.start()
    busy0, steal0, total0 = cpu_jiffies()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    load0 = os.getloadavg()
    wall0, perf0 = time.time(), time.perf_counter()
    if profiler:
        profiler.enable()
    final = drive(backend, handle.id, embedded_agents=True)
    if profiler:
        profiler.disable()
    wall1, perf1 = time.time(), time.perf_counter()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    busy1, steal1, total1 = cpu_jiffies()
    load1 = os.getloadavg()
    sampler.stop.set()
    sampler.join()

    store = backend.store
    runs = store.runs(handle.id)
    agent = events["agents"][0]
    wall = wall1 - wall0

    # -- dispatch latency: per-slot FIFO (freed slot -> next process started) and the agent's own list
    freed = sorted(events["freed"])
    started = sorted(events["started"])
    windows = []  # (slot freed, next process started, id of the run that freed it)
    queue: list[tuple[float, str]] = []
    fi = 0
    for t_start, _ in started:
        while fi < len(freed) and freed[fi][0] <= t_start:
            queue.append(freed[fi])
            fi += 1
        if queue:
            t_freed, run_id = queue.pop(0)
            windows.append((t_freed, t_start, run_id))
    latencies = [b - a for a, b, _ in windows]
    exited = events["exited"]
    # the agent noticing a process has ended (poll round) and recording it
    detection = [t - exited[rid] for t, rid in freed if rid in exited]
    exit_to_start = [b - exited[rid] for _, b, rid in windows if rid in exited]

    # -- where the dispatch windows' time went
    INTERVALS.sort()
    starts = [iv[0] for iv in INTERVALS]
    per_cat: dict[str, float] = defaultdict(float)
    per_dispatch_other = []
    per_window = []
    for a, b, _ in windows:
        covered = 0.0
        mine: dict[str, float] = defaultdict(float)
        for t0, t1, cat in INTERVALS[max(0, bisect.bisect_left(starts, a) - 1) : bisect.bisect_right(starts, b)]:
            overlap = min(t1, b) - max(t0, a)
            if overlap > 0:
                per_cat[cat] += overlap
                mine[cat] += overlap * 1e3
                covered += overlap
        per_cat["other Python (controller/agent logic)"] += (b - a) - covered
        per_dispatch_other.append((b - a) - covered)
        mine["other Python (controller/agent logic)"] = ((b - a) - covered) * 1e3
        per_window.append({"total_ms": (b - a) * 1e3, **{k: round(v, 2) for k, v in mine.items()}})
    n_disp = max(1, len(windows))
    breakdown = {
        cat: {"mean_ms_per_dispatch": total / n_disp * 1e3, "share": total / max(1e-12, sum(latencies))}
        for cat, total in sorted(per_cat.items(), key=lambda kv: -kv[1])
    }

    # -- the loop as a whole (all of drive, not only dispatch windows)
    loop_cat: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for t0, t1, cat in INTERVALS:
        if perf0 <= t0 <= perf1:
            loop_cat[cat][0] += 1
            loop_cat[cat][1] += t1 - t0
    iterations = loop_cat["sleep (poll interval)"][0]
    sleeping = loop_cat["sleep (poll interval)"][1]
    timed_total = sum(v[1] for v in loop_cat.values())
    loop = {
        "iterations": iterations,
        "mean_iteration_ms": (perf1 - perf0) / max(1, iterations) * 1e3,
        "mean_busy_ms_per_iteration": (perf1 - perf0 - sleeping) / max(1, iterations) * 1e3,
        "cpu_s": (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime),
        "by_category": {
            cat: {"calls": int(n), "total_s": s, "mean_ms": s / max(1, n) * 1e3}
            for cat, (n, s) in sorted(loop_cat.items(), key=lambda kv: -kv[1][1])
        },
        "untimed_s": (perf1 - perf0) - timed_total,
    }
    loop["cpu_share_of_one_core"] = loop["cpu_s"] / wall

    # -- per run: run time, start-up, training, teardown
    per_run = []
    ts_checks = []
    for run in runs:
        rows = store.history(run.id)
        info: dict[str, Any] = {"id": run.id, "state": run.state.value, "rows": len(rows)}
        if run.started_at is not None and run.ended_at is not None:
            info["run_s"] = run.ended_at - run.started_at
        if rows and run.started_at is not None:
            stamps = [r["_timestamp"] for r in rows]
            epoch = statistics.median(b - a for a, b in itertools.pairwise(stamps)) if len(rows) > 1 else 0
            wandb_start = run_start_time(settings.runs_dir / handle.id / run.id, run.id)
            info.update(
                startup_s=stamps[0] - run.started_at,  # includes the first epoch
                startup_excl_first_epoch_s=stamps[0] - epoch - run.started_at,
                train_s=stamps[-1] - stamps[0] + epoch,
                epoch_s=epoch,
                teardown_s=run.ended_at - stamps[-1],  # wandb.finish + exit + the agent noticing
                wandb_start_minus_row_start=(stamps[0] - rows[0]["_runtime"]) - wandb_start if wandb_start else None,
            )
            if wandb_start:
                info["spawn_to_wandb_init_s"] = wandb_start - run.started_at  # interpreter + imports
                info["wandb_init_to_train_s"] = stamps[0] - epoch - wandb_start  # init + data load
            ts_checks.append(run.started_at <= stamps[0] <= stamps[-1] <= run.ended_at)
        per_run.append(info)

    done = [r for r in per_run if "run_s" in r and "startup_s" in r]
    w = args.workers
    sum_run = sum(r["run_s"] for r in done)
    sum_startup = sum(r["startup_s"] for r in done)
    sum_train = sum(r["train_s"] for r in done)
    idle = lanes([r for r in runs if r.started_at and r.ended_at], w, wall0, wall1)

    def col(key: str) -> list[float]:
        return [r[key] for r in done if r.get(key) is not None]

    t0 = time.perf_counter()
    store.histories(handle.id)  # what a bayes controller reads before every suggestion
    histories_ms = (time.perf_counter() - t0) * 1e3

    return {
        "sweep_id": handle.id,
        "store_histories_ms": histories_ms,
        "final_state": final.state.value,
        "final_reason": final.state_reason,
        "poll_interval_s": settings.poll_interval,
        "epochs": epochs,
        "runs": len(runs),
        "run_states": {s: sum(r.state.value == s for r in runs) for s in {r.state.value for r in runs}},
        "wall_s": wall,
        "span_first_start_to_last_end_s": max(r.ended_at for r in runs) - min(r.started_at for r in runs),
        "load_before": load0,
        "load_after": load1,
        "machine_cpu_busy_share": (busy1 - busy0) / max(1, total1 - total0),
        "machine_cpu_steal_share": (steal1 - steal0) / max(1, total1 - total0),
        "cpu_sampler": sampler.result(wall),
        "dispatch": {
            "per_slot_ms": dist(latencies, 1e3),
            "agent_dispatch_latencies_ms": dist(agent.dispatch_latencies, 1e3),
            "store_clock_gaps_ms": dist(idle["store_gaps"], 1e3),
            "breakdown": breakdown,
            "other_python_ms": dist(per_dispatch_other, 1e3),
            "exit_detection_ms": dist(detection, 1e3),
            "process_exit_to_next_start_ms": dist(exit_to_start, 1e3),
            "windows": per_window,
        },
        "loop": loop,
        "per_run": per_run,
        "timestamp_is_wallclock_epoch": {"runs_checked": len(ts_checks), "all_within_started_ended": all(ts_checks)},
        "run_time_s": dist(col("run_s")),
        "startup_s": dist(col("startup_s")),
        "startup_excl_first_epoch_s": dist(col("startup_excl_first_epoch_s")),
        "spawn_to_wandb_init_s": dist(col("spawn_to_wandb_init_s")),
        "wandb_init_to_train_s": dist(col("wandb_init_to_train_s")),
        "train_s": dist(col("train_s")),
        "epoch_ms_in_sweep": dist(col("epoch_s"), 1e3),
        "teardown_s": dist(col("teardown_s")),
        "overhead": {
            "sum_run_s": sum_run,
            "sum_startup_s": sum_startup,
            "sum_train_s": sum_train,
            "ratio_run": wall / (sum_run / w),
            # literal: start-up removed from the runs only, so it counts as overhead
            "ratio_excl_startup": wall / ((sum_run - sum_startup) / w),
            # start-up removed from both sides: sweepflow's idle slot time relative to the runs' post-start-up time
            "ratio_excl_startup_both_sides": (wall - sum_startup / w) / ((sum_run - sum_startup) / w),
            "ratio_train_only": wall / (sum_train / w),
            "idle_slot_s": {k: v for k, v in idle.items() if k != "store_gaps"},
            "idle_share_of_slot_time": {k: v / (w * wall) for k, v in idle.items() if k != "store_gaps"},
        },
        "_profiler": profiler,
    }


# -- 3. suggestion latency ----------------------------------------------------------------------------------


def engine_bench(args: argparse.Namespace, epochs: int) -> dict[str, Any]:
    import numpy as np

    from sweepflow.config import load_sweep_config
    from sweepflow.local.search import SweepsSearcher, Trial

    sizes = sorted({0, 1, 5, 10, args.runs - 1} - {-1})
    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for method in ("random", "bayes"):
        config = load_sweep_config({**sweep_config(args, epochs), "method": method})
        searcher = SweepsSearcher(config, np.random.default_rng(1))
        out[method] = {}
        for n in sizes:
            trials = [
                Trial(
                    f"t{i}",
                    {
                        "learning_rate_init": float(10 ** rng.uniform(-4, -2)),
                        "alpha": float(10 ** rng.uniform(-6, -2)),
                        "epochs": epochs,
                        "hidden": 32,
                        "batch_size": 64,
                    },
                    "finished",
                    {"val_loss": float(rng.uniform(0.05, 0.5))},
                )
                for i in range(n)
            ] + [
                Trial(
                    "pending",
                    {"learning_rate_init": 1e-3, "alpha": 1e-4, "epochs": epochs, "hidden": 32, "batch_size": 64},
                    "running",
                )
            ]
            reps = 3 if method == "bayes" else 10
            samples = []
            for _ in range(reps):
                t0 = time.perf_counter()
                searcher.suggest(trials)
                samples.append(time.perf_counter() - t0)
            out[method][str(n)] = {"median_ms": statistics.median(samples) * 1e3, "max_ms": max(samples) * 1e3}
    return out


def spawn_bench() -> dict[str, Any]:
    """What Popen costs the agent (in this process, sized like a controller): with a ``preexec_fn`` setting the
    parent-death signal (CPython must fork() the whole process; the agent's fallback), without (vfork), and
    with util-linux ``setpriv --pdeathsig KILL`` doing it (what the agent uses when setpriv exists)."""
    import ctypes
    import shutil

    def _die_with_parent() -> None:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)

    def median_ms(argv: list[str], preexec: Any) -> float:
        samples = []
        for _ in range(15):
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, preexec_fn=preexec, start_new_session=True, stdin=subprocess.DEVNULL)
            samples.append(time.perf_counter() - t0)
            proc.wait()
        return statistics.median(samples) * 1e3

    out = {
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "popen_with_preexec_fn_ms": median_ms(["/bin/true"], _die_with_parent),
        "popen_without_preexec_fn_ms": median_ms(["/bin/true"], None),
    }
    if setpriv := shutil.which("setpriv"):
        out["popen_setpriv_pdeathsig_ms"] = median_ms([setpriv, "--pdeathsig", "KILL", "--", "/bin/true"], None)
    return out


# -- main -----------------------------------------------------------------------------------------------------


def fmt(x: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20, help="run_cap of the sweep (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="num_workers (default 2)")
    parser.add_argument("--train-seconds", type=float, default=2.0, help="training time per run to aim for")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (skips calibration)")
    parser.add_argument("--no-engine", action="store_true", help="skip the sweeps.next_run and Popen timings")
    parser.add_argument("--cprofile", type=Path, default=None, help="cProfile drive() and dump stats here")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary SWEEPFLOW_HOME")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "dispatch_results.json")
    args = parser.parse_args()

    os.environ["WANDB_MODE"] = "offline"  # never the network
    os.environ.setdefault("WANDB_SILENT", "true")
    started = time.time()
    result: dict[str, Any] = {
        "command": " ".join(
            [os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable]
            + [os.path.relpath(a, ROOT) if a.startswith(str(ROOT)) else a for a in sys.argv]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_at_start": os.getloadavg(),
        "settings_env": {k: v for k, v in os.environ.items() if k.startswith("SWEEPFLOW_")},
    }
    tmp = Path(tempfile.mkdtemp(prefix="sweepflow-bench-"))
    try:
        if args.epochs is None:
            result["calibration"] = calibrate(args.train_seconds, tmp)
            epochs = result["calibration"]["epochs"]
        else:
            epochs = args.epochs
        sweep = run_sweep(args, epochs, tmp / "home")
        profiler = sweep.pop("_profiler")
        result["sweep"] = sweep
        if profiler:
            profiler.dump_stats(args.cprofile)
            stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative")
            stats.print_stats(40)
        if not args.no_engine:
            result["engine_suggest"] = engine_bench(args, epochs)
            result["spawn"] = spawn_bench()
    finally:
        if args.keep_home:
            print(f"SWEEPFLOW_HOME kept: {tmp / 'home'}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    result["load_at_end"] = os.getloadavg()
    result["bench_total_s"] = time.time() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))

    s = result["sweep"]
    d, o = s["dispatch"], s["overhead"]
    print(
        f"\nsweep {s['sweep_id']}: {s['runs']} runs {s['run_states']}, {args.workers} workers, {epochs} epochs, "
        f"poll {s['poll_interval_s'] * 1e3:.0f} ms, wall {s['wall_s']:.1f} s, "
        f"load {result['load_at_start'][0]:.2f} -> {result['load_at_end'][0]:.2f}"
    )
    cs = s["cpu_sampler"]
    print(
        f"machine CPU busy {s['machine_cpu_busy_share']:.0%} of {os.cpu_count()} cores (steal "
        f"{s['machine_cpu_steal_share']:.1%}); other processes used "
        f"{cs['other_processes_cores_avg']:.2f} cores on average {cs['top_other_processes_cpu_s']}"
    )
    print(f"{'metric':<52} {'p50':>9} {'p90':>9} {'max':>9} {'mean':>9}  n")
    for label, dd, unit in (
        ("dispatch latency, per slot (ms)", d["per_slot_ms"], ""),
        ("dispatch latency, Agent.dispatch_latencies (ms)", d["agent_dispatch_latencies_ms"], ""),
        ("exit noticed: process exit -> recorded (ms)", d["exit_detection_ms"], ""),
        ("process exit -> next process started (ms)", d["process_exit_to_next_start_ms"], ""),
        ("run time ended_at-started_at (s)", s["run_time_s"], ""),
        ("start-up: first row _timestamp - started_at (s)", s["startup_s"], ""),
        ("  spawn -> wandb.init (interpreter+imports) (s)", s["spawn_to_wandb_init_s"], ""),
        ("  wandb.init -> training starts (s)", s["wandb_init_to_train_s"], ""),
        ("training (s)", s["train_s"], ""),
        ("teardown: last row -> ended_at (s)", s["teardown_s"], ""),
    ):
        digits = 1 if "(ms)" in label else 2
        print(
            f"{label:<52} {fmt(dd.get('p50'), unit, digits):>9} {fmt(dd.get('p90'), unit, digits):>9} "
            f"{fmt(dd.get('max'), unit, digits):>9} {fmt(dd.get('mean'), unit, digits):>9}  {dd['n']}"
        )
    print(f"overhead ratio wall/(sum run/{args.workers}):            {o['ratio_run']:.3f}   (target <= 1.05)")
    print(f"overhead ratio excl. start-up wall/(sum(run-startup)/{args.workers}): {o['ratio_excl_startup']:.3f}")
    print(
        f"overhead ratio excl. start-up on both sides (wall-sum startup/{args.workers})/(sum(run-startup)/"
        f"{args.workers}): {o['ratio_excl_startup_both_sides']:.3f}"
    )
    idle = o["idle_share_of_slot_time"]
    print(f"idle slot time: head {idle['head_s']:.1%}, dispatch gaps {idle['gaps_s']:.1%}, tail {idle['tail_s']:.1%}")
    print(
        f"driving loop: {s['loop']['iterations']} rounds, {s['loop']['mean_busy_ms_per_iteration']:.1f} ms busy "
        f"each, CPU {s['loop']['cpu_share_of_one_core']:.0%} of a core"
    )
    print("where a dispatch's time goes (mean ms per dispatch):")
    for cat, v in list(d["breakdown"].items())[:8]:
        print(f"  {cat:<60} {v['mean_ms_per_dispatch']:7.1f}  ({v['share']:.0%})")
    print(
        f"store.histories() of the finished sweep (read before each bayes suggestion): {s['store_histories_ms']:.1f} ms"
    )
    if "engine_suggest" in result:
        print(
            "suggest latency, median ms by finished trials: "
            + "; ".join(
                f"{m}: " + ", ".join(f"{n}->{v['median_ms']:.0f}" for n, v in by.items())
                for m, by in result["engine_suggest"].items()
            )
        )
    if "spawn" in result:
        sp = result["spawn"]
        print(
            f"Popen of /bin/true from this {sp['rss_mb']:.0f} MB process: with preexec_fn "
            f"{sp['popen_with_preexec_fn_ms']:.1f} ms, without {sp['popen_without_preexec_fn_ms']:.2f} ms, "
            f"setpriv --pdeathsig {sp.get('popen_setpriv_pdeathsig_ms', float('nan')):.2f} ms"
        )
    print(f"results: {args.out}  (bench took {result['bench_total_s']:.0f} s)")


if __name__ == "__main__":
    main()
