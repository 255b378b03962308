"""kill -9 at the worst moments: the controller mid-sweep, an agent mid-run. Nothing duplicated, nothing lost: runs
killed with their agent run again (tests/test_faults.py injects many more faults)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from sweepflow.backends.local import LocalBackend
from sweepflow.errors import SweepflowError
from sweepflow.local.processes import interrupt_on_signals
from tests.backend_tests.conftest import curve_config, sweep


def _until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _pid(owner: str | None) -> int:
    return int((owner or "").split(":")[1])


@pytest.fixture
def reaper(backend: LocalBackend) -> Iterator[list[subprocess.Popen]]:
    """Processes a test started; whatever survives the test is stopped, and every sweep cancelled."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for s in backend.store.list_sweeps():
        if not s.state.is_terminal:
            backend.set_state(s.id, "cancel")
    for proc in started:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    for s in backend.store.list_sweeps():  # controllers exit once their sweep is cancelled
        if s.lease_owner and not _until(lambda s=s: not backend.controller_alive(s.id), 30, "controller exit"):
            os.kill(_pid(s.lease_owner), signal.SIGKILL)


def test_kill_9_of_the_controller_then_resume(backend: LocalBackend, reaper: list) -> None:
    config = sweep(curve_config(run_cap=6, scheduler={"num_workers": 2}, parameters={
        "quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 8}, "sleep": {"value": 0.3}}))  # fmt: skip
    handle = backend.launch(config, key="campaign/coarse")
    store = backend.store
    _until(lambda: store.counts(handle.id).get("finished", 0) >= 2, 90, "two finished runs")
    before = {r.id: r for r in store.runs(handle.id)}
    finished_before = {i for i, r in before.items() if r.state.value == "finished"}
    os.kill(_pid(store.get_sweep(handle.id).lease_owner), signal.SIGKILL)

    again = backend.launch(config, key="campaign/coarse")  # what a re-run flow does
    assert (again.id, again.created) == (handle.id, False)
    # The flow's sensor keeps the sweep driven while it waits (the kill may not have landed at launch time).
    _until(lambda: backend.ensure_driven(handle.id) or backend.status(handle.id).done, 120, "the resumed sweep")

    runs = store.runs(handle.id)
    status = backend.status(handle.id)
    assert status.state == "finished" and len(runs) == 6  # run_cap exact
    assert len({json.dumps(r.config, sort_keys=True) for r in runs}) == 6  # no config twice
    after = {r.id: r for r in runs}
    assert all(after[i].state.value == "finished" and after[i].summary == before[i].summary for i in finished_before)
    # The runs killed with the controller (its embedded agent's) were queued again and finished: none is lost.
    assert [r.state.value for r in runs] == ["finished"] * 6


def test_kill_9_of_an_agent_mid_run(backend: LocalBackend, reaper: list) -> None:
    store = backend.store
    agent_cmd = [sys.executable, "-m", "sweepflow", "launch-agent", "--queue", "qa", "--max-jobs", "1"]
    first = subprocess.Popen(agent_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reaper.append(first)
    _until(lambda: store.live_agents("qa"), 30, "agent registration")
    config = sweep(curve_config(run_cap=3, queue="qa", parameters={
        "quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 6}, "sleep": {"value": 0.4}}))  # fmt: skip
    handle = backend.launch(config, key="agent-crash")
    victim = _until(lambda: [r for r in store.runs(handle.id) if r.state.value == "running"], 60, "a running run")[0]
    os.kill(first.pid, signal.SIGKILL)
    # Its process is gone: the controller (another process) sees it at once, not after the lease, and queues the
    # run it was running again (the script did not fail).
    _until(lambda: store.get_run(victim.id).attempt == 2, 30, "the victim queued again")

    # No agent serves the queue now: the sweep's controller serves it itself, and the sweep ends complete.
    _until(lambda: backend.status(handle.id).done, 90, "the sweep to end")
    runs = store.runs(handle.id)
    assert backend.status(handle.id).state == "finished" and len(runs) == 3
    assert [r.state.value for r in runs] == ["finished"] * 3


def test_a_running_sweep_whose_controller_died_can_be_resumed(backend: LocalBackend) -> None:
    """What a user does after kill -9 of `launch-sweep --wait`: `launch-sweep --resume_id ID --wait`."""
    sweep_id = backend.launch(sweep(curve_config(run_cap=1)), key="k", drive="none").id
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = f"{socket.gethostname()}:{os.getpid()}:live"
    backend.store.acquire_controller_lease(sweep_id, live, 60)
    with pytest.raises(SweepflowError, match="already running"):  # a live controller drives it
        backend.resume(sweep_id, drive="none")
    backend.store.release_controller_lease(sweep_id, live)
    backend.store.acquire_controller_lease(sweep_id, f"{socket.gethostname()}:{dead.pid}:gone", 60)
    backend.resume(sweep_id, drive="none")  # not "already running": its controller is dead, nobody drives it
    assert not backend.status(sweep_id).done


def _controllers_of(sweep_id: str) -> list[int]:
    """Pids of the ``sweepflow controller SWEEP_ID`` processes on this machine."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"controller" in argv and sweep_id.encode() in argv:
            found.append(int(entry))
    return found


def _launch_wait(backend: LocalBackend, tmp_path, reaper: list, *argv: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sweepflow", "launch-sweep", *argv, "--wait"]
    with open(tmp_path / "wait.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    reaper.append(proc)
    return proc


def _slow_sweep_file(tmp_path, run_cap: int) -> str:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(curve_config(run_cap=run_cap, parameters={
        "quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 8}, "sleep": {"value": 0.3}})))  # fmt: skip
    return str(path)


def test_kill_9_of_launch_sweep_wait_is_taken_over_by_its_standby(
    backend: LocalBackend, tmp_path, reaper, monkeypatch
) -> None:
    """The foreground `--wait` keeps a standby controller: its kill -9 does not stall the sweep until the user runs
    the command again, and the command run again watches the sweep to its end instead of refusing it."""
    # The production lease: under the tests' 3 s one, a busy box can stall the standby's first renewal (it is
    # loading the engine) past the lease, and the command run again then takes the sweep instead of watching.
    monkeypatch.setenv("SWEEPFLOW_LEASE_TTL", "30")
    monkeypatch.setenv("SWEEPFLOW_STANDBY", "1")
    store = backend.store
    first = _launch_wait(backend, tmp_path, reaper, _slow_sweep_file(tmp_path, run_cap=4))
    sweep_id = _until(lambda: [s.id for s in store.list_sweeps()], 60, "the sweep")[0]
    victim = _until(lambda: [r for r in store.runs(sweep_id) if r.state.value == "running"], 60, "a running run")[0]
    standby = _until(lambda: _controllers_of(sweep_id), 30, "the standby controller")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    # Nobody runs a command: the standby takes the sweep, queues the run killed with --wait's agent again, runs it.
    _until(lambda: _pid(store.get_sweep(sweep_id).lease_owner) in standby, 30, "the standby to take the sweep")
    _until(lambda: store.get_run(victim.id).attempt == 2, 30, "the killed run queued again")

    again = _launch_wait(backend, tmp_path, reaper, "--resume_id", sweep_id)
    assert again.wait(timeout=180) == 0, (tmp_path / "wait.log").read_text()
    assert "watching it" in (tmp_path / "wait.log").read_text()
    runs = store.runs(sweep_id)
    assert backend.status(sweep_id).state == "finished" and len(runs) == 4
    assert [r.state.value for r in runs] == ["finished"] * 4
    assert len({json.dumps(r.config, sort_keys=True) for r in runs}) == 4


def test_ctrl_c_of_launch_sweep_wait_stops_its_standby_too(
    backend: LocalBackend, tmp_path, reaper, monkeypatch
) -> None:
    """A clean stop is not undone: the standby goes with the command, and no run starts after it."""
    monkeypatch.setenv("SWEEPFLOW_STANDBY", "1")
    store = backend.store
    proc = _launch_wait(backend, tmp_path, reaper, _slow_sweep_file(tmp_path, run_cap=6))
    sweep_id = _until(lambda: [s.id for s in store.list_sweeps()], 60, "the sweep")[0]
    _until(lambda: [r for r in store.runs(sweep_id) if r.state.value == "running"], 60, "a running run")
    _until(lambda: _controllers_of(sweep_id), 30, "the standby controller")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert _controllers_of(sweep_id) == []
    started = {r.id for r in store.runs(sweep_id) if r.started_at}
    time.sleep(5)  # longer than a standby takes to take over a released sweep
    assert {r.id for r in store.runs(sweep_id) if r.started_at} == started
    assert all(r.state.value != "running" for r in store.runs(sweep_id))
    assert not backend.status(sweep_id).done  # still resumable with --resume_id


def test_a_ctrl_c_the_moment_a_standby_starts_leaves_no_standby_behind(backend: LocalBackend, monkeypatch) -> None:
    """Ctrl-C may fall just after the standby's process exists: the loop's clean stop must still find it."""
    spawned: list[subprocess.Popen] = []

    def spawn(sweep_id: str, *, standby: bool) -> subprocess.Popen:
        spawned.append(subprocess.Popen(["sleep", "60"]))  # stands for the standby controller
        os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C, at the worst moment
        return spawned[-1]

    monkeypatch.setattr(backend, "_spawn_controller", spawn)
    try:
        with interrupt_on_signals(), pytest.raises(KeyboardInterrupt):  # as `launch-sweep --wait` runs
            backend.ensure_standby("s")
            time.sleep(1)  # the interrupt is raised by now wherever it lands
        backend.stop_standby("s")  # what the driving loop's `finally` does
        assert spawned[0].poll() is not None, "the standby outlived the stop"
    finally:
        spawned[0].kill()
        spawned[0].wait()
