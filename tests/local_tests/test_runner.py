"""The runner, on real subprocess runs of the example training script and of scripts that misbehave."""

from __future__ import annotations

import select
import signal
import sys
import time
from pathlib import Path

import yaml

from sweepflow.local.runner import RunProcess, RunSpec, run_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "train_digits.py"


def _spec(tmp_path: Path, run_id: str, params: dict, argv: list[str] | None = None) -> RunSpec:
    return RunSpec(
        run_id=run_id,
        argv=argv or [sys.executable, str(SCRIPT)],
        params=params,
        project="test",
        run_dir=tmp_path / run_id,
    )


def _wait(run: RunProcess, timeout: float = 60) -> list[dict]:
    rows: list[dict] = []
    deadline = time.time() + timeout
    while run.returncode() is None and time.time() < deadline:
        rows += run.poll_rows()
        select.select([run.exit_fd] if run.exit_fd is not None else [], [], [], 0.2)  # wakes when it exits
    return rows + run.poll_rows()


def test_run_gets_its_params_and_reports_metrics_live(tmp_path: Path) -> None:
    run = RunProcess.start(_spec(tmp_path, "r1", {"epochs": 4, "hidden": 8, "activation": "tanh"}))
    rows = _wait(run)
    assert run.returncode() == 0
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert 0 < run.summary["final_val_acc"] <= 1


def test_sigint_stop_keeps_the_rows_and_the_exit_record(tmp_path: Path) -> None:
    run = RunProcess.start(_spec(tmp_path, "r2", {"epochs": 100000}))
    rows: list[dict] = []
    deadline = time.time() + 60
    while len(rows) < 3 and time.time() < deadline:
        rows += run.poll_rows()
        time.sleep(0.1)
    assert len(rows) >= 3, "no live rows within 60 s"
    code = run.stop(grace=20)
    rows += run.poll_rows()
    assert run._log is not None and run._log.finished  # wandb wrote its exit record
    assert code != -9 and len(rows) >= 3


def test_a_script_that_ignores_sigint_and_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    run = RunProcess.start(_spec(tmp_path, "r3", {}, [sys.executable, str(stubborn)]))
    log = tmp_path / "r3" / "output.log"
    deadline = time.time() + 120  # a busy box can take many seconds to start an interpreter
    while "ready" not in (log.read_text() if log.exists() else "") and time.time() < deadline:
        time.sleep(0.05)
    assert "ready" in log.read_text(), "the script never installed its handlers"
    # The escalation follows the clock it is given: SIGINT now, SIGTERM after grace, SIGKILL after term_grace.
    run.begin_stop(grace=1.0, term_grace=1.0, now=0.0)
    run.advance_stop(now=0.9)
    assert run.returncode() is None and run.stopping
    run.advance_stop(now=1.0)  # SIGTERM, ignored
    assert run.returncode() is None
    run.advance_stop(now=2.0)  # SIGKILL
    assert run.proc.wait(timeout=30) == -signal.SIGKILL
    run.close()


def test_config_values_never_pass_through_a_shell(tmp_path: Path) -> None:
    echo = tmp_path / "echo.py"
    echo.write_text("import json, os, sys\nprint(open(os.environ['WANDB_SWEEP_PARAM_PATH']).read())\n")
    nasty = "$(touch pwned); `touch pwned2` 'quoted' \"double\""
    run = RunProcess.start(_spec(tmp_path, "r4", {"name": nasty}, [sys.executable, str(echo)]))
    _wait(run, 20)
    assert run.returncode() == 0
    assert yaml.safe_load((tmp_path / "r4" / "output.log").read_text())["name"]["value"] == nasty
    assert not list(tmp_path.rglob("pwned*"))


def test_a_run_starts_its_own_wandb_core_as_under_wandb_agent(tmp_path: Path, monkeypatch) -> None:
    """A caller that used wandb in-process has WANDB_SERVICE set; its runs must not attach to that core (W&B's
    agent pops it as well), or two runs of one id would collide there ("run ID ... is in use")."""
    monkeypatch.setenv("WANDB_SERVICE", "2-12345-tcp-localhost-9")
    env = run_env(_spec(tmp_path, "r1", {}))
    assert "WANDB_SERVICE" not in env and env["WANDB_RUN_ID"] == "r1" and env["WANDB_MODE"] == "offline"
