"""A stage's start-up: from a detached controller's spawn to its sweep's first run started, and the CPU a process
pays to load its first sweep config file; this checkout against ``--base REV``, interleaved in one run.

Usage (from the repository root)::

    .venv/bin/python bench/bench_startup.py                     # this checkout vs --base 3a815d7, 12 rounds
    .venv/bin/python bench/bench_startup.py --base none --rounds 3
    .venv/bin/python bench/bench_startup.py --smoke                     # one round, this checkout (the suite)

Every stage of a campaign starts this way (``launch`` spawns ``sweepflow controller ID``), and so does every
recovery that needs a new controller process; the fault benchmark (``bench_faults.py``) measured stage start-ups
of 6-11 s at load 4-5. A round launches one random sweep (``tests/scripts/curve.py``, 2 epochs, 2 runs) per tree
in a fresh ``SWEEPFLOW_HOME`` and times the controller from its spawn to the store recording its first run
started; the trees alternate within a round so that load drifts hit both alike. The config-load figure is the
process CPU time of one ``load_sweep_config`` of that config file in a fresh interpreter (its first call
imports W&B's validator and engine). Each tree runs in its own child processes (``PYTHONPATH``; ``--base`` is
extracted with ``git archive``, and is their working directory: ``python -c`` puts that first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, dist, extract, fmt, machine

CURVE = ROOT / "tests" / "scripts" / "curve.py"
DEFAULT_BASE = "3a815d7"  # the end of session 5

# One round in a child process of the tree under test: a sweep created with no driver, then its controller.
ONE_STAGE = """
import json, os, subprocess, sys, time
from sweepflow.backends.local import LocalBackend
from sweepflow.config import load_sweep_config
backend = LocalBackend()
handle = backend.launch(load_sweep_config(sys.argv[1]), drive="none")
spawned = time.time()
controller = subprocess.Popen(
    [sys.executable, "-m", "sweepflow", "controller", handle.id, "--store", backend.store.url],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
while not (started := [r.started_at for r in backend.store.runs(handle.id) if r.started_at]):
    time.sleep(0.005)
import sweepflow
print(sweepflow.__file__, file=sys.stderr)
print(json.dumps(min(started) - spawned))
controller.wait()
"""

LOAD_CONFIG = """
import json, sys, time
from sweepflow.config import load_sweep_config
t = time.process_time()
load_sweep_config(sys.argv[1])
print(json.dumps(time.process_time() - t))
"""


def _run(tree: Path, code: str, config: Path, home: Path, imported: dict[str, str] | None = None) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "SWEEPFLOW_HOME": str(home),
        "SWEEPFLOW_STANDBY": "1",  # as in production: a standby behind the controller
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }
    # cwd: `python -c` and `-m` put the working directory first on sys.path, ahead of PYTHONPATH
    out = subprocess.run([sys.executable, "-c", code, str(config)], env=env, capture_output=True, text=True, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {out.stderr[-2000:]}")
    if imported is not None:  # the sweepflow the child imported: the tree under test, or the measurement is void
        imported[str(tree)] = str(Path(out.stderr.strip().splitlines()[-1]).parent)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"the 'before' commit (default {DEFAULT_BASE}; 'none')")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "startup_results.json")
    parser.add_argument("--smoke", action="store_true", help="one round, this checkout only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.base, args.rounds = "none", 1
    with tempfile.TemporaryDirectory(prefix="sweepflow-startup-") as tmp:
        trees = {"after": ROOT}
        if args.base != "none":
            trees = {"before": extract(args.base, Path(tmp)), **trees}
        config = Path(tmp) / "stage.json"
        config.write_text(
            json.dumps(
                {
                    "method": "random",
                    "program": str(CURVE),
                    "metric": {"name": "loss", "goal": "minimize"},
                    "parameters": {"x": {"min": 0.0, "max": 1.0}, "epochs": {"value": 2}},
                    "run_cap": 2,
                    "scheduler": {"num_workers": 2},
                }
            )
        )
        startup: dict[str, list[float]] = {name: [] for name in trees}
        load_cpu: dict[str, list[float]] = {name: [] for name in trees}
        load_avg, imported = [], {}
        for i in range(args.rounds):
            order = list(trees.items()) if i % 2 == 0 else list(reversed(trees.items()))
            for name, tree in order:
                home = Path(tmp) / f"home-{name}-{i}"
                home.mkdir()
                startup[name].append(_run(tree, ONE_STAGE, config, home, imported))
                load_cpu[name].append(_run(tree, LOAD_CONFIG, config, home))
            load_avg.append(os.getloadavg()[0])
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/bench_startup.py", *(argv if argv is not None else sys.argv[1:])]),
        "base": args.base,
        "rounds": args.rounds,
        "sweepflow_imported": {name: imported[str(tree)] for name, tree in trees.items()},
        "spawn_to_first_run_started_s": {name: dist(v) for name, v in startup.items()},
        "first_config_load_cpu_s": {name: dist(v) for name, v in load_cpu.items()},
        "load_avg_1min_after_each_round": load_avg,
        "machine": machine(),
    }
    args.out.write_text(json.dumps(result, indent=2))
    labels = {
        "spawn_to_first_run_started_s": "spawn -> first run started",
        "first_config_load_cpu_s": "first config load, CPU",
    }
    for key, label in labels.items():
        cells = [
            f"{name} p50 {fmt(d.get('p50'), ' s', 2)} max {fmt(d.get('max'), ' s', 2)}"
            for name, d in result[key].items()
        ]
        print(f"{label}: " + "; ".join(cells))
    print(f"load avg (1 min) {[round(x, 2) for x in load_avg]}")
    return result


if __name__ == "__main__":
    main()
