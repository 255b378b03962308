"""A local backend in a fresh SWEEPFLOW_HOME per test, with timeouts short enough for tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sweepflow.backends.local import LocalBackend
from sweepflow.config import load_sweep_config
from sweepflow.settings import Settings

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
CURVE = SCRIPTS / "curve.py"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    values = {"HOME": str(tmp_path / "home"), "LEASE_TTL": "3", "POLL_INTERVAL": "0.02", "STOP_GRACE": "5"}
    for key, value in values.items():
        monkeypatch.setenv(f"SWEEPFLOW_{key}", value)  # subprocesses (controller, agents) read the same
    return Settings()


@pytest.fixture
def backend(settings: Settings) -> LocalBackend:
    return LocalBackend(settings=settings)


def curve_config(**top) -> dict:
    """A sweep over tests/scripts/curve.py; ``top`` overrides top-level keys."""
    return {
        "method": "random",
        "program": str(CURVE),
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 3}, "sleep": {"value": 0.0}},
        **top,
    }


def sweep(config: dict):
    return load_sweep_config(config)


PYTHON = sys.executable


# The stub W&B server and the W&B backend on it, for the contract suite (tests/backend_tests/test_contract.py).
from tests.wandb_stub.fixtures import stub, wandb_backend  # noqa: E402, F401
