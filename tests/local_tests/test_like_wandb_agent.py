"""Differential tests: the same script, parameters and command run under wandb 0.31's own agent code and under
sweepflow's runner, then compared through the runs' own offline logs (issue 9, items 1-6 and 10-11).

W&B's side is ``wandb.wandb_agent.Agent`` with only the server left out: ``_command_run`` builds the command,
writes the param file (``config_util.save_config_file_from_dict``) and starts the real ``AgentProcess``;
``_command_stop`` stops it (SIGTERM). sweepflow's side is :class:`~sweepflow.local.runner.RunProcess` with
:func:`~sweepflow.local.command.build_command`. Both runs are offline W&B runs of ``tests/scripts/probe.py``, which
records its argv and the Python type of each ``wandb.config`` value; what the runs recorded (config, exit record,
rows) is read back from each ``run-<id>.wandb`` with :class:`~sweepflow.local.txlog.RunLog`, and the state is
W&B's reading of it (:func:`sweepflow.local.outcome.end_state`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from wandb import wandb_agent
from wandb.sdk.lib import config_util

from sweepflow.config import SweepConfig
from sweepflow.local.command import ResolvedJob, build_command
from sweepflow.local.outcome import end_state
from sweepflow.local.runner import RunProcess, RunSpec, param_file_text
from sweepflow.local.search import Trial
from sweepflow.local.search._sweeps import sweep_run as _sweep_run
from sweepflow.local.txlog import RunLog, find_run_file
from sweepflow.states import RunState

PROBE = Path(__file__).resolve().parents[1] / "scripts" / "probe.py"
IMPUTED = {RunState.FAILED, RunState.CRASHED, RunState.KILLED}  # bayes_search._construct_gp_data's imputed states

#: Every type a parameter value can have, floats in every spelling (issue 9, item 1).
TYPED: dict[str, Any] = {
    "int": 3,
    "neg_int": -7,
    "float": 0.1,
    "whole_float": 1.0,
    "tiny": 1e-05,
    "small": 5e-05,
    "big": 1e16,
    "bigger": 1.5e300,
    "inf": math.inf,
    "neg_inf": -math.inf,
    "nan": math.nan,
    "true": True,
    "false": False,
    "none": None,
    "str": "adam",
    "str_exp": "1e-05",
    "str_int": "007",
    "str_bool": "yes",
    "str_null": "null",
    "empty": "",
    "unicode": "héllo wörld",
    "list": [1, 2.5, "a", None, 1e-05],
    "nested": {"lr": 1e-05, "betas": [0.9, 0.999], "sched": {"kind": "cos", "warm": 1e3}},
}


@dataclass
class Outcome:
    argv: list[str]
    config: dict[str, Any]
    types: dict[str, str]
    exit_record: int | None
    process_code: int
    state: RunState
    log: RunLog
    stop_signal: signal.Signals | None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)  # NaN == NaN, 1 != 1.0, "1e-05" != 1e-05


def _outcome(log_dir: Path, run_id: str, code: int, *, stopped: bool, stop_signal: signal.Signals | None) -> Outcome:
    path = find_run_file(log_dir, run_id)
    assert path is not None, f"no run log under {log_dir}"
    log = RunLog.read(path)
    deadline = time.time() + 5
    while not log.finished and code >= 0 and time.time() < deadline:  # the exit record lands a moment later
        time.sleep(0.1)
        log = RunLog.read(path)
    summary = log.summary
    return Outcome(
        argv=json.loads(summary.get("argv", "null")),
        config=log.config,
        types=json.loads(summary.get("types", "{}")),
        exit_record=log.exit_code,
        process_code=code,
        state=end_state(exit_record=log.exit_code, process_code=code, stopped=stopped, stop_signal=stop_signal),
        log=log,
        stop_signal=stop_signal,
    )


def _rows_logged(log_dir: Path, run_id: str, n: int, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = find_run_file(log_dir, run_id)
        if path is not None and sum("val.acc" in r for r in RunLog.read(path).history) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"{run_id}: {n} rows not logged within {timeout} s")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # What both agents' runs share: offline W&B, rows on disk within ~1 s, and `python` being this interpreter
    # (W&B's ${interpreter} is the bare word `python`).
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB__TRANSACTION_LOG_FLUSH_INTERVAL", "1")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("NOT_SET_X", raising=False)


def under_wandb(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, params: dict[str, Any], command: list[Any] | None, stop: bool
) -> Outcome:
    """The run under wandb's own agent code: ``_command_run``, the real ``AgentProcess``, ``_command_stop``."""
    wandb_dir = tmp_path / "wandb-side"
    for name, value in {"WANDB_DIR": str(wandb_dir), "WANDB_SWEEP_ID": "sw", "WANDB_RUN_ID": ""}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "")
    monkeypatch.chdir(tmp_path)
    agent = wandb_agent.Agent(api=None, queue=None, sweep_id="sw")
    agent._sweep_command = command or []
    args = {k: {"value": v} for k, v in params.items()}
    agent._command_run({"type": "run", "run_id": "w1", "program": str(PROBE), "args": args})
    proc = agent._run_processes["w1"]
    if stop:
        _rows_logged(wandb_dir, "w1", 3)
        agent._command_stop({"run_id": "w1"})
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return _outcome(wandb_dir, "w1", code, stopped=stop, stop_signal=signal.SIGTERM if stop else None)


def under_sweepflow(tmp_path: Path, params: dict[str, Any], command: list[Any] | None, stop: bool) -> Outcome:
    config = SweepConfig(method="grid", parameters={"x": {"value": 1}}, **({"command": command} if command else {}))
    run_dir = tmp_path / "sweepflow-side"
    argv = build_command(config, params, job=ResolvedJob(program=PROBE), work_dir=run_dir)
    run = RunProcess.start(RunSpec("s1", argv, params, project="p", run_dir=run_dir, sweep_id="sw", cwd=tmp_path))
    if stop:
        _rows_logged(run_dir, "s1", 3)
        run.begin_stop(grace=30)
    deadline = time.time() + 120
    while run.returncode() is None and time.time() < deadline:
        run.advance_stop()
        time.sleep(0.05)
    if run.returncode() is None:
        run.stop(grace=0, term_grace=0)
    code = run.returncode()
    assert code is not None
    run.close()
    return _outcome(run_dir, "s1", code, stopped=stop, stop_signal=run.stop_signal)


def both(monkeypatch, tmp_path, params, command=None, stop=False) -> tuple[Outcome, Outcome]:
    return (
        under_wandb(monkeypatch, tmp_path, params, command, stop),
        under_sweepflow(tmp_path, params, command, stop),
    )


# --- item 1: the param file, against wandb's own writer and reader (no subprocess) --------------------------------


@pytest.mark.parametrize("name", TYPED)
def test_param_file_is_wandbs_byte_for_byte_and_reads_back_the_same_type(tmp_path: Path, name: str) -> None:
    params = {name: TYPED[name], "lr": 1e-05}
    theirs = tmp_path / "theirs.yaml"
    config_util.save_config_file_from_dict(str(theirs), {k: {"value": v} for k, v in params.items()})
    ours = tmp_path / "ours.yaml"
    ours.write_text(param_file_text(params), encoding="utf-8")
    assert ours.read_bytes() == theirs.read_bytes()
    read = config_util.dict_from_config_file(str(ours))  # what wandb.init reads from WANDB_SWEEP_PARAM_PATH
    assert _canonical(read) == _canonical(params)
    assert type(read[name]) is type(params[name]) and type(read["lr"]) is float


def test_empty_param_file_is_wandbs(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.yaml"
    config_util.save_config_file_from_dict(str(theirs), {})
    assert param_file_text({}) == theirs.read_text() == "wandb_version: 1"


# --- items 1, 10, 11: config, types, argv and a nested metric, end to end -----------------------------------------

COMMAND = ["${env}", "${interpreter}", "${program}", "${args}", "${foo}", "--k=${envvar:NOT_SET_X}", "${args_dict}"]


@pytest.mark.usefixtures("offline")
def test_config_types_and_argv_match_wandb_agent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    theirs, ours = both(monkeypatch, tmp_path, TYPED, COMMAND)
    assert ours.argv == theirs.argv
    assert "--k=NOT_SET_X" in ours.argv and "nested" in ours.argv  # W&B's envvar text and ${args_dict} keys
    assert _canonical(ours.config) == _canonical(theirs.config)
    assert ours.types == theirs.types
    assert ours.types["tiny"] == ours.types["big"] == ours.types["inf"] == "float"
    assert ours.types["str_exp"] == "str" and ours.config["own_default"] == "kept"
    assert (ours.state, theirs.state) == (RunState.FINISHED, RunState.FINISHED)
    # item 10: the engine finds `val.acc`, logged as a nested dict, in the summary as in the history
    for side in (ours, theirs):
        run = _sweep_run(Trial("t", {}, "finished", side.log.summary, side.log.history))
        assert run.metric_history("val.acc") == pytest.approx([0.5, 0.6, 0.7])
        assert run.summary_metric("val.acc") == pytest.approx(0.7)


# --- items 3, 4: the state is what the run recorded -----------------------------------------------------------------


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(
    ("mode", "state", "recorded"),
    [
        ("finish_exit_code_1", RunState.FAILED, 1),  # exits 0, recorded 1: failed, as in W&B
        ("finish_then_raise", RunState.FINISHED, 0),  # exits 1, recorded 0: finished, as in W&B
        ("raise", RunState.FAILED, 1),
        ("sigkill", RunState.CRASHED, None),  # no exit record: W&B's crashed, not "failed (-9)"
    ],
)
def test_state_comes_from_the_exit_record_as_in_wandb(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str, state: RunState, recorded: int | None
) -> None:
    theirs, ours = both(monkeypatch, tmp_path, {"mode": mode})
    assert (ours.exit_record, ours.process_code) == (theirs.exit_record, theirs.process_code)
    assert ours.exit_record == recorded
    assert ours.state == theirs.state == state


# --- item 5: stopping sends SIGTERM, so a user's handler runs; else the history is kept ----------------------------


@pytest.mark.usefixtures("offline")
def test_stop_runs_the_users_sigterm_handler_as_wandb_agent_does(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    theirs, ours = both(monkeypatch, tmp_path, {"mode": "wait_term"}, stop=True)
    for side in (theirs, ours):
        assert any("handled" in row for row in side.log.history), "the SIGTERM handler did not run"
    assert (ours.exit_record, ours.process_code) == (theirs.exit_record, theirs.process_code) == (0, 0)
    assert ours.state == theirs.state == RunState.FINISHED  # it finished cleanly: W&B's exit code contract


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("inherited", ["handled", "ignored"])
def test_stop_of_a_script_without_a_sigterm_handler_is_imputed_as_on_wandb(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, inherited: str
) -> None:
    # A child inherits SIGINT ignored when its parent ignores it: a process started in the background by a
    # non-interactive shell (`cmd &` in a script, as CI harnesses start test runs) or by nohup. Python then keeps it
    # ignored, so the script cannot be stopped with SIGINT and sweepflow sends SIGTERM, as W&B's agent always does.
    # This test set its precondition from the parent it was given until session 6, and failed in CI for that.
    before = signal.signal(signal.SIGINT, signal.default_int_handler if inherited == "handled" else signal.SIG_IGN)
    try:
        theirs, ours = both(monkeypatch, tmp_path, {"mode": "wait"}, stop=True)
    finally:
        signal.signal(signal.SIGINT, before)
    # W&B's SIGTERM kills it with no exit record.
    assert theirs.process_code == -signal.SIGTERM and theirs.exit_record is None
    if inherited == "handled":  # sweepflow sent SIGINT, so wandb finished the run's log
        assert ours.stop_signal == signal.SIGINT and ours.exit_record is not None and len(ours.log.history) >= 3
    else:  # SIGINT would be lost: SIGTERM, as W&B
        assert (ours.stop_signal, ours.process_code, ours.exit_record) == (signal.SIGTERM, -signal.SIGTERM, None)
    # Either way the engine imputes it (bayes treats failed / crashed / killed alike), and sweepflow says killed.
    assert ours.state == RunState.KILLED and theirs.state in IMPUTED


def test_param_file_path_is_wandbs(tmp_path: Path) -> None:
    spec = RunSpec("r9", ["true"], {"a": 1e-05}, project="p", run_dir=tmp_path, sweep_id="sw")
    run = RunProcess.start(spec)
    while run.returncode() is None:
        time.sleep(0.01)
    run.close()
    path = tmp_path / "wandb" / "sweep-sw" / "config-r9.yaml"  # wandb_agent: WANDB_DIR/wandb/sweep-ID/config-RUN.yaml
    assert yaml.safe_load(path.read_text()) == {"wandb_version": 1, "a": {"value": 1e-05}}
