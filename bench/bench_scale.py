"""Issue 13, "Scale": what one scheduling decision costs as a sweep grows to 10,000 runs with 500 in flight.

Usage (from the repository root)::

    .venv/bin/python bench/bench_scale.py                      # this checkout vs --base, every case, side by side
    .venv/bin/python bench/bench_scale.py --base none          # this checkout only
    .venv/bin/python bench/bench_scale.py --cases sim-random   # some cases only
    .venv/bin/python bench/bench_scale.py --cases sim-random --windows 0,10000   # some finished-run windows only
    .venv/bin/python bench/bench_scale.py --jobs 4             # up to 4 children at once (CPU time is per child)
    .venv/bin/python bench/bench_scale.py --smoke              # ~300 runs, this checkout (the test suite runs it)

Every case runs in a child process per source tree (``--base REV`` is extracted with ``git archive``; "after" is
this checkout as it is on disk; ``PYTHONPATH`` picks the tree), against a fresh SQLite file; the trees of one
case run back to back (or side by side with ``--jobs``), so both numbers are taken under the same load. Cases:

* ``sim-*`` -- the controller and the store, driven as the drive loop drives them. For each window ``w`` (the
  case's ``windows``, or ``--windows``), a store is first written holding a sweep with ``w`` finished runs (bulk,
  checked with ``Store.check()``; by each tree's own code in a child: their schema versions may differ, the
  stores' contents do not, as the configs are seeded). Then the tree's controller takes it: a
  warm-up tick fills the ``workers`` slots, an agent claims them, each run logs 1-3 history rows and ends, in a
  random order (a seeded RNG picks the next run to advance), and the controller ticks after every run that ends
  (a metric report alone ticks it only under Hyperband or a metric target, neither set here). Each of the
  ``window`` ticks timed is one *scheduling decision*: see the run that ended, suggest a config, queue it.
* ``tune-random`` (10k runs, this checkout) and ``tune-random-2k`` (both trees) -- the Python entry point:
  :func:`sweepflow.tune.tune`, ``run_cap`` runs, ``num_workers`` at once, an objective yielding 1-3 values; its
  controller's ticks are timed by a subclass swapped into ``sweepflow.tune`` (the code that runs is the real one).

Reported: CPU ms (``time.process_time``: the machine is shared, wall time would measure the neighbours) per tick
by finished-run window, and within it reading the runs (``Store.runs`` / ``run_changes`` / ``metric_series``),
suggesting (the searcher's ``suggest``) and queueing (``add_run``); per run ended (``mark_run_finished``), per
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
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, dist, extract, fmt, machine

DEFAULT_BASE = "c32c2d6"  # the tree before this benchmark's fixes
QUEUE = "scale"
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


#: The cases at full size: W&B's random at 10k finished runs, grid over a 51 x 51 grid, bayes small (its GP is
#: O(runs) by design), Optuna's TPE; ``windows`` are the finished-run counts measured, ``window`` ticks each.
CASES: dict[str, dict[str, Any]] = {
    "sim-random": {"method": "random", "workers": 500, "windows": [0, 1000, 5000, 10000], "window": 50},
    "sim-grid": {"method": "grid", "workers": 100, "windows": [0, 1000, 2400], "window": 30, "grid": 2601},
    "sim-bayes": {"method": "bayes", "workers": 20, "windows": [0, 100, 300], "window": 10},
    "sim-tpe": {"method": "tpe", "workers": 100, "windows": [0, 500, 2000], "window": 20},
    "tune-random": {"method": "random", "workers": 500, "runs": 10000, "after_only": True},
    "tune-random-2k": {"method": "random", "workers": 500, "runs": 2000},
}
SMOKE: dict[str, dict[str, Any]] = {
    "sim-random": {"method": "random", "workers": 30, "windows": [0, 150], "window": 8},
    "tune-random": {"method": "random", "workers": 30, "runs": 100},
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


def prefill(case: dict[str, Any], finished: int, db: Path, seed: int) -> str:
    """A store holding a sweep with ``finished`` runs already done, each with 1-3 history rows: the state a
    sweep is in after that many runs. Written in bulk into the store's own tables (what the benchmark measures
    is the decisions after this point, not how the past was written) and checked with :meth:`Store.check`.
    Runs in a child of each tree (its own schema), once per window and tree."""
    import itertools

    from sweepflow.config import load_sweep_config
    from sweepflow.local.search import searcher_for
    from sweepflow.store import Store, config_hash
    from sweepflow.store import _schema as tables

    store = Store(f"sqlite:///{db}")
    cfg = load_sweep_config(sweep_config(case, run_cap=None))
    stored = cfg.to_wandb()
    stored["seed"] = seed
    sweep, _ = store.create_sweep(None, "bench", stored)
    store.ensure_queue(QUEUE)
    rng = random.Random(seed)
    if case["method"] == "grid":
        space = cfg.to_wandb()["parameters"]
        names = sorted(space)
        configs = [
            dict(zip(names, combo, strict=True)) for combo in itertools.product(*(space[n]["values"] for n in names))
        ]
    else:  # random-search configs (bayes and TPE read them as prior results)
        searcher = searcher_for(load_sweep_config(sweep_config({**case, "method": "random"}, None)), seed)
        configs = [searcher.suggest([]) for _ in range(finished)]  # asked again and again: a new draw each time
    runs, items, rows = [], [], []
    t = 1_800_000_000.0  # fixed times (2027): they order the prefilled runs; no decision measured depends on them
    for number, config in enumerate(configs[:finished], start=1):
        run_id = f"r{number:07d}"
        history = [loss_of({"c": str(config), "n": step}) for step in range(rng.randint(1, 3))]
        runs.append(
            {
                "id": run_id, "sweep_id": sweep.id, "number": number, "queue": QUEUE, "config": config,
                "config_hash": config_hash(config), "state": "finished", "attempt": 1, "exit_code": 0,
                "summary": {"loss": history[-1]}, "agent_id": "prefill", "queued_at": t + number,
                "started_at": t + number, "ended_at": t + number + 1, "search_info": None,
            }
        )  # fmt: skip
        items.append(
            {
                "queue": QUEUE, "run_id": run_id, "priority": 0, "enqueued_at": t + number, "state": "done",
                "claimed_by": "prefill", "claimed_at": t + number, "lease_expires_at": t + number + 30,
            }
        )  # fmt: skip
        rows += [
            {"run_id": run_id, "step": step, "row": {"loss": v, "_step": step, "_timestamp": t + number}}
            for step, v in enumerate(history)
        ]
    with store._write() as conn:  # one transaction; the tables are the store's own
        for table, values in ((tables.runs, runs), (tables.queue_items, items), (tables.run_history, rows)):
            if values:
                conn.execute(table.insert(), values)
    problems = store.check()
    assert not problems, problems
    store.close()
    return sweep.id


def simulate(case: dict[str, Any], db: Path, seed: int, sweep_id: str) -> dict[str, Any]:
    """The controller and store driven as the drive loop drives them (see the module docstring), from a store
    prefilled with the window's finished runs: a warm-up tick fills the slots, then ``window`` ticks each end one
    run and are timed."""
    from sweepflow.local.controller import Controller, ControllerSettings
    from sweepflow.store import Store

    workers, window = case["workers"], case["window"]
    store = Store(f"sqlite:///{db}")
    ttl = 3600.0
    controller = Controller(store, sweep_id, settings=ControllerSettings(queue=QUEUE, lease_ttl=ttl))
    clock = Clock()
    controller.searcher.suggest = clock.wrap("suggest", controller.searcher.suggest)  # type: ignore[method-assign]
    # Where a tick's time goes: reading the runs (whichever way the tree reads them), queueing the new run.
    for method in ("runs", "run_changes", "metric_series"):
        if hasattr(store, method):
            setattr(store, method, clock.wrap("read", getattr(store, method)))
    store.add_run = clock.wrap("add_run", store.add_run)  # type: ignore[method-assign]
    claim = clock.wrap("claim", lambda: store.claim_next(QUEUE, agent, lease_ttl=ttl))
    start = clock.wrap("claim", lambda run_id, item_id: store.mark_run_started(run_id, agent, item_id=item_id))
    finish = clock.wrap("finish", store.mark_run_finished)
    log = clock.wrap("history", store.append_history)
    agent = store.register_agent(QUEUE, max_jobs=workers).id
    rng = random.Random(seed)
    active: dict[int, list[Any]] = {}  # item id -> [run id, rows left, step, summary]
    parts = ("suggest", "read", "add_run")
    ticks: list[dict[str, Any]] = []

    def tick(ended: int) -> bool:
        before = {name: len(clock.ms[name]) for name in parts}
        t0 = time.process_time()
        alive = controller.tick()
        ms = (time.process_time() - t0) * 1000
        spent = {name: sum(clock.ms[name][before[name] :]) for name in parts}
        suggested = len(clock.ms["suggest"]) - before["suggest"]
        ticks.append({"ended": ended, "suggested": suggested, "ms": ms, "parts": spent})
        return alive

    def fill() -> None:
        while len(active) < workers:
            got = claim()
            if got is None:
                return
            if start(got.run.id, got.item.id) is not None:
                active[got.item.id] = [got.run.id, rng.randint(1, 3), 0, {}]

    alive = tick(0)  # warm-up: the first read of every run, and the slots filled at once
    fill()
    warm = len(ticks)
    while alive and active and len(ticks) - warm < window:
        item_id = rng.choice(list(active))
        run = active[item_id]
        if run[1] > 0:  # one more history row, as an agent relays a logged step
            value = loss_of({"s": run[0], "n": run[2]})
            run[3] = {"loss": value}
            row = {"loss": value, "_step": run[2], "_timestamp": time.time()}
            log(run[0], [row], summary=run[3], item_id=item_id)
            run[1] -= 1
            run[2] += 1
            continue
        del active[item_id]
        finish(run[0], "finished", exit_code=0, summary=run[3], item_id=item_id)
        alive = tick(1)
        fill()
    if alive:
        store.set_sweep_state(sweep_id, "finished", "the benchmark has measured its window", expect=["running"])
    controller.release()
    store.close()
    inside = ticks[warm:]
    return {
        "tick_ms": dist([t["ms"] for t in inside]),
        "suggested_per_tick": dist([t["suggested"] for t in inside]),
        **{f"{name}_ms_per_tick": dist([t["parts"][name] for t in inside]) for name in parts},
        "warmup_tick_ms": ticks[0]["ms"],
        "finish_ms": dist(clock.ms["finish"]),
        "history_ms": dist(clock.ms["history"]),
        "claim_ms": dist(clock.ms["claim"]),
        "store": store_sizes(db),
    }


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
    if spec.get("prefill"):
        return {"sweep_id": prefill(case, spec["finished"], db, spec["seed"])}
    load = os.getloadavg()
    t0 = time.process_time()
    if spec["name"].startswith("tune"):
        out = tune_case(case, db, spec["seed"])
    else:
        out = simulate(case, db, spec["seed"], spec["sweep_id"])
    out.update(
        cpu_s_total=time.process_time() - t0,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        load_before=load,
        load_after=os.getloadavg(),
        sweepflow_path=str(Path(sweepflow.__file__).parent),
    )
    return out


# -- the parent: every case on every tree ---------------------------------------------------------------------


def run_child(tree: Path, spec: dict[str, Any], *, keep_db: bool = False) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--child", json.dumps(spec)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['name']} on {tree} failed:\n{proc.stderr[-4000:]}")
    if not keep_db:
        Path(spec["db"]).unlink(missing_ok=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per case, finished-run window and tree (trees side by side)."""
    lines = [
        "| case | finished runs | tree | tick CPU ms p50 / mean / max | of which, mean: read runs / suggest / "
        "add_run | finish / history row / claim ms p50 | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, trees in results.items():
        if name.startswith("tune"):
            continue
        windows = sorted({w for r in trees.values() for w in r}, key=int)
        for w in windows:
            for label, r in sorted(trees.items(), reverse=True):  # before, then after
                if w not in r:
                    continue
                m = r[w]
                t = m["tick_ms"]
                parts = " / ".join(
                    fmt(m[f"{k}_ms_per_tick"].get("mean"), digits=2) for k in ("read", "suggest", "add_run")
                )
                ops = " / ".join(fmt(m[f"{k}_ms"].get("p50"), digits=2) for k in ("finish", "history", "claim"))
                lines.append(
                    f"| {name} | {w} | {label} | {fmt(t.get('p50'), digits=2)} / {fmt(t.get('mean'), digits=2)} / "
                    f"{fmt(t.get('max'), digits=1)} | {parts} | {ops} | {m['peak_rss_mb']:.0f} |"
                )
    lines += [
        "",
        "| case | tree | runs | state | CPU s (ms per run) | ticks | tick CPU ms p50 / mean / max | store: "
        "file MB, B per run (runs + queue items), B per history row | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, trees in results.items():
        if not name.startswith("tune"):
            continue
        for label, r in sorted(trees.items(), reverse=True):
            t, st = r["tick_ms"], r["store"]
            lines.append(
                f"| {name} | {label} | {r['runs']} | {r['state']} | {r['cpu_s']:.1f} ({r['cpu_ms_per_run']:.2f}) | "
                f"{r['ticks']} | {fmt(t.get('p50'), digits=2)} / {fmt(t.get('mean'), digits=2)} / "
                f"{fmt(t.get('max'), digits=1)} | {st['file_bytes'] / 1e6:.1f}, {st['bytes_per_run']:.0f}, "
                f"{st['bytes_per_history_row']:.0f} | {r['peak_rss_mb']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help="git revision to compare with, or 'none'")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="children run at once (each measures its own CPU time)")
    parser.add_argument("--smoke", action="store_true", help="a few hundred runs, this checkout only")
    parser.add_argument("--windows", help="comma-separated finished-run counts, instead of each sim case's own")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return {}
    cases = SMOKE if args.smoke else {name: CASES[name] for name in args.cases.split(",")}
    base = "none" if args.smoke else args.base
    windows = [int(w) for w in args.windows.split(",")] if args.windows else None
    load, t0 = os.getloadavg(), time.time()
    results: dict[str, Any] = {}
    meta: dict[str, Any] = {"argv": sys.argv if argv is None else argv, "base": base, "machine": machine()}

    def save() -> None:
        meta.update(load_before=load, load_after=os.getloadavg(), wall_s=time.time() - t0)
        meta["utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if args.out:  # after every child: a run cut short keeps what it measured
            args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        trees = {"after": ROOT} if base == "none" else {"before": extract(base, tmp), "after": ROOT}
        jobs: list[tuple[str, str, str | None, dict[str, Any]]] = []  # case, tree, window, child spec
        for name, case in cases.items():
            labels = ["after"] if case.get("after_only") else list(trees)
            if name.startswith("tune"):
                jobs += [(name, label, None, {"name": name, "case": case, "seed": args.seed}) for label in labels]
                continue
            for w in windows or case["windows"]:
                for label in labels:  # each tree writes its own (trees may differ in schema version)
                    db = tmp / f"{label}-{name}-{w}.db"
                    spec = {"name": name, "case": case, "seed": args.seed, "db": str(db), "finished": w}
                    sweep_id = run_child(trees[label], {**spec, "prefill": True}, keep_db=True)["sweep_id"]
                    jobs.append((name, label, str(w), {**spec, "sweep_id": sweep_id}))
        for name, label, _, spec in jobs:
            spec.setdefault("db", str(tmp / f"{label}-{name}.db"))
        workers = max(3, args.jobs) if args.smoke else max(1, args.jobs)  # the smoke's three children at once
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run_child, trees[label], spec): (name, label, w) for name, label, w, spec in jobs}
            for future in as_completed(futures):
                name, label, w = futures[future]
                got = future.result()
                if w is None:
                    results.setdefault(name, {})[label] = got
                else:
                    results.setdefault(name, {}).setdefault(label, {})[w] = got
                print(f"{name} [{label}] {w or ''}: done ({got['cpu_s_total']:.1f} CPU s)", flush=True)
                save()
        shutil.rmtree(tmp, ignore_errors=True)
    save()
    print(table(results))
    print(json.dumps(meta))
    return {"meta": meta, "results": results}


if __name__ == "__main__":
    main()
