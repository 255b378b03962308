"""The ``sweepflow`` command, run as a user runs it: a subprocess, exit codes, and what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import COMPAT

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_version_and_help() -> None:
    assert _run("--version").stdout.startswith("sweepflow ")
    assert "validate" in _run("--help").stdout
    assert "Exit 1 if any is invalid" in _run("validate", "--help").stdout


def test_validate_accepts_the_repo_configs() -> None:
    ours = [p for p in sorted((ROOT / "deployments").glob("*.yaml")) if p.name != "automations.yaml"]  # Prefect's
    result = _run("validate", *(str(p) for p in ours))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid pipeline (2 stages)" in result.stdout


def test_bad_inputs_get_one_readable_error_each_and_no_traceback(tmp_path: Path) -> None:
    files = {
        "binary.yaml": b"\xff\xfe\x00bad",
        "broken.yaml": b"method: [random\n",
        "list.yaml": b"- method: random\n",
        "empty.yaml": b"",
        "broken.json": b"{method: 1}",
        "wrong.yaml": b"method: grid\nparameters:\n  optim:\n    parameters:\n      lr: {min: 0.1, max: 0.01}\n",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    result = _run("validate", "--format", "json", *(str(tmp_path / n) for n in files), str(tmp_path / "absent.yaml"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    verdicts = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    assert all(not r["valid"] and r["errors"] for r in verdicts.values()) and len(verdicts) == 7
    assert "UTF-8" in verdicts["binary.yaml"]["errors"][0]["message"]
    assert "line 2" in verdicts["broken.yaml"]["errors"][0]["message"]
    assert "mapping" in verdicts["list.yaml"]["errors"][0]["message"]
    assert verdicts["wrong.yaml"]["errors"][0]["path"] == "parameters.optim.parameters.lr.max"


def test_text_output_lists_every_error() -> None:
    corpus_file = COMPAT / "sweep_configs" / "087_leaf-disease-values-not-list.yaml"
    if not corpus_file.is_file():
        pytest.skip(f"compat corpus file not found: {corpus_file}")
    result = _run("validate", str(corpus_file))
    assert result.returncode == 1
    assert result.stdout.count("error") == 6


def test_validate_checks_a_job_registry(tmp_path: Path) -> None:
    (tmp_path / "sweepflow.yaml").write_text("jobs:\n  p/train: {program: missing.py}\n  p/eval: {progam: x.py}\n")
    result = _run("validate", str(tmp_path / "sweepflow.yaml"))
    assert result.returncode == 1
    assert "missing.py' does not exist" in result.stdout
    assert 'jobs["p/eval"].progam: is not a known key here' in result.stdout


def test_launch_sweep_wait_then_status_runs_and_queue(tmp_path: Path) -> None:
    env_home = {"SWEEPFLOW_HOME": str(tmp_path / "home")}
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "method: grid\nprogram: " + str(ROOT / "tests" / "scripts" / "curve.py") + "\nqueue: cpu\n"
        "metric: {name: loss}\nparameters:\n  quality: {values: [1.0, 2.0]}\n  epochs: {value: 2}\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **env_home, "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "sweepflow", *args], capture_output=True, text=True, timeout=120, env=env
        )

    assert run("queue", "cpu", "--priority", "high", "--cost-per-hour", "1.5").returncode == 0
    launched = run("launch-sweep", str(config), "--wait", "--format", "json")
    assert launched.returncode == 0, launched.stderr
    result = json.loads(launched.stdout)  # the progress bar went to stderr
    assert result["state"] == "finished" and result["counts"] == {"finished": 2} and result["cost_usd"] > 0
    runs = json.loads(run("runs", result["sweep_id"], "--format", "json").stdout)
    assert sorted(r["config"]["quality"] for r in runs) == [1.0, 2.0]
    assert all({"id", "state", "config", "summary"} <= set(r) and "loss" in r["summary"] for r in runs)
    csv = run("runs", result["sweep_id"], "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("run_id,") and len(csv) == 3
    # issue 9, item 2: the config each run recorded, the script's own keys too, with the sweep's parameters marked
    assert all(r["wandb_config"]["quality"] == r["config"]["quality"] and "nan" in r["wandb_config"] for r in runs)
    header = csv[0].split(",")
    assert "config.quality*" in header and "config.nan" in header
    assert "finished 2" in run("status", result["sweep_id"]).stdout
    missing = run("status", "nosuchid")
    assert missing.returncode == 1 and "no sweep 'nosuchid'" in missing.stderr and "Traceback" not in missing.stderr


def test_validate_refuses_what_the_local_backend_cannot_run(tmp_path: Path) -> None:
    (tmp_path / "custom.yaml").write_text("method: custom\nprogram: train.py\nparameters: {x: {values: [1, 2]}}\n")
    (tmp_path / "train.py").write_text("")
    (tmp_path / "campaign.yaml").write_text("name: c\nstages:\n  only:\n    sweep: custom.yaml\n")
    result = _run("validate", "--format", "json", str(tmp_path / "custom.yaml"), str(tmp_path / "campaign.yaml"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    sweep_verdict, campaign_verdict = json.loads(result.stdout)
    assert [e["path"] for e in sweep_verdict["errors"]] == ["method"]
    assert "no search engine in the local backend" in sweep_verdict["errors"][0]["message"]
    assert [e["path"] for e in campaign_verdict["errors"]] == ["stages.only.sweep.method"]


def test_the_demo_is_a_flow_the_cli_starts_as_a_program() -> None:
    result = _run("demo", "--help")
    assert result.returncode == 0 and "--key" in result.stdout
    direct = subprocess.run(
        [sys.executable, "-m", "sweepflow.flows.demo", "--help"], capture_output=True, text=True, timeout=60
    )
    assert direct.returncode == 0 and "--key" in direct.stdout
