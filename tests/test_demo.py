"""The demo as a user runs it, killed with ``kill -9`` mid-campaign: the Prefect server it started goes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweepflow.store import Store

pytestmark = pytest.mark.slow  # a real Prefect server (and worker): run with `pytest -m slow`


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_kill_9_of_the_demo_takes_its_prefect_server_along(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "SWEEPFLOW_HOME": str(home), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "sweepflow.flows.demo", "--key", "kill-test"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    servers: list[int] = []
    store_db = home / "sweepflow.db"
    try:

        def mid_campaign() -> bool:  # the server is up and the first stage's sweep exists
            servers[:] = [c for c in _children(demo.pid) if b"server" in Path(f"/proc/{c}/cmdline").read_bytes()]
            if not servers or not store_db.exists():
                return False
            with Store(f"sqlite:///{store_db}") as store:
                return bool(store.list_sweeps())

        _until(mid_campaign, 240, "the demo's server and first sweep")
        os.kill(demo.pid, signal.SIGKILL)
        demo.wait()
        _until(lambda: not _alive(servers[0]), 30, "the server to die with the demo")
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in servers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if store_db.exists():
            with Store(f"sqlite:///{store_db}") as store:  # the sweeps' controllers exit once canceled
                for sweep in store.list_sweeps():
                    store.set_sweep_state(sweep.id, "canceled")
