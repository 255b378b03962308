"""Shared test fixtures. The compat corpora are read where they are (../shared/compat), never copied here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPAT = Path(os.environ.get("SWEEPFLOW_COMPAT_DIR", ROOT.parent / "shared" / "compat"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may reach outside this machine.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # wandb used in-process (the W&B backend's tests) sets WANDB_SERVICE to the pytest process's wandb-core; undo it
    # after each test, so later tests' subprocesses never attach to it.
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    # No standby controllers unless a test is about them (tests/test_faults.py, the --wait takeover tests): each is
    # a process importing the engine, and beside every sweep of the suite they cost the 2-core CI minutes. Without
    # one, a dead controller is replaced by the sensor, the path these tests then cover.
    monkeypatch.setenv("SWEEPFLOW_STANDBY", "0")
