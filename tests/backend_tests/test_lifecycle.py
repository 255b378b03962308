"""A run's life as under ``wandb agent``: a real public-style script with an exponent-written float runs green, and
SIGTERM to ``launch-sweep --wait`` stops the runs, records them, and leaves no process behind (issue 9, 1 and 6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sweepflow.backends.local import LocalBackend
from sweepflow.config import load_sweep_config
from sweepflow.local.drive import drive
from sweepflow.settings import Settings
from tests.backend_tests.conftest import SCRIPTS


def test_scikit_learn_script_with_an_exponent_float_runs_green(backend: LocalBackend, tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(
        f"program: {SCRIPTS / 'sklearn_logreg.py'}\n"
        "method: grid\n"
        "metric: {name: val_acc, goal: maximize}\n"
        "parameters:\n"
        "  C:\n"
        "    values: [1e-05, 1.0]\n"
    )
    handle = backend.launch(load_sweep_config(config), key="sk", drive="none")
    drive(backend, handle.id)
    runs = backend.runs(handle.id)
    assert sorted(r.config["C"] for r in runs) == [1e-05, 1.0]
    assert all(r.state == "finished" for r in runs), [(r.state, r.stop_reason) for r in runs]
    assert all(0.5 < r.summary["val_acc"] <= 1.0 for r in runs)
    assert backend.status(handle.id).best_value > 0.9


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_to_launch_sweep_wait_stops_records_and_leaves_nothing(settings: Settings, tmp_path: Path) -> None:
    pid_file = tmp_path / "worker.pid"
    config = tmp_path / "sweep.yaml"
    config.write_text(
        f"program: {SCRIPTS / 'spawner.py'}\nmethod: grid\nparameters:\n  pid_file: {{value: '{pid_file}'}}\n"
    )
    cli = subprocess.Popen(
        [sys.executable, "-m", "sweepflow", "launch-sweep", str(config), "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        assert cli.poll() is None, cli.stdout.read() if cli.stdout else ""
        time.sleep(0.2)
    worker = int(pid_file.read_text())
    assert _alive(worker)
    cli.send_signal(signal.SIGTERM)
    output, _ = cli.communicate(timeout=60)
    assert cli.returncode == 130, output
    assert "Traceback" not in output
    backend = LocalBackend(settings=Settings())
    (sweep,) = backend.store.list_sweeps()
    (run,) = backend.runs(sweep.id)
    assert run.state == "killed" and "agent shut down" in (run.stop_reason or ""), run
    assert backend.store.history(run.id), "the run's rows were lost"
    assert not _alive(worker), "the run's worker process was left behind"
