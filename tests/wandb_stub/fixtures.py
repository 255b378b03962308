"""pytest fixtures for the stub W&B server: import them into a conftest (``from tests.wandb_stub.fixtures import *``).

The API key is a canary: a test can grep logs, artifacts, the store and Prefect's database for it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweepflow.backends.wandb import WandbBackend
from sweepflow.settings import Settings
from tests.wandb_stub.server import StubServer

#: 40 characters, as a real W&B key; unmistakable when it leaks.
CANARY_KEY = "canary0123456789abcdef0123456789abcdef00"
ENTITY = "stub-team"


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    """A fresh stub W&B server; ``WANDB_*`` point at it (the flow, wandb's client and agents read the same)."""
    server = StubServer(CANARY_KEY, entity=ENTITY).start()
    monkeypatch.setenv("WANDB_BASE_URL", server.url)
    monkeypatch.setenv("WANDB_API_KEY", CANARY_KEY)
    monkeypatch.setenv("WANDB_ENTITY", ENTITY)
    monkeypatch.setenv("WANDB_PROJECT", "sweepflow-tests")
    yield server
    server.stop()


def stop_agents(backend: WandbBackend) -> None:
    """Stop every ``wandb agent`` this test started (SIGINT, then SIGKILL), so none outlives its stub."""
    root = backend.agents.root
    folders = [p for p in root.glob("*") if p.is_dir()] if root.exists() else []
    paths = [p.name.replace("+", "/") for p in folders]
    for path in paths:
        backend.agents.stop(path, signal.SIGINT)
    deadline = time.time() + 15
    while time.time() < deadline and any(backend.agents.live(p) for p in paths):
        time.sleep(0.2)
    for path in paths:
        backend.agents.stop(path, signal.SIGKILL)
        for pid in backend.agents.live(path):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def wandb_backend(stub: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WandbBackend]:
    """The W&B backend on the stub, quick to retry (tests), its agents stopped afterwards."""
    monkeypatch.setenv("SWEEPFLOW_HOME", str(tmp_path / "home"))
    backend = WandbBackend(settings=Settings(), first_delay=0.05)
    yield backend
    stop_agents(backend)
