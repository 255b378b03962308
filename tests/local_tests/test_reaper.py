"""The reaper: a dead agent's runs are settled from their own logs, and runs lost with it run again.

An agent is made "dead" by re-registering it under the pid of a process that has exited, which is what a reaper on
this machine sees after a ``kill -9`` (tests/test_faults.py kills real processes)."""

from __future__ import annotations

import select
import subprocess
import time
from pathlib import Path

import pytest

from sweepflow.local.agent import Agent
from sweepflow.local.drive import Driver
from sweepflow.store import RunState, Store, SweepState, get_store
from tests.local_tests.fakes import FakeRuns, loss, make_agent, make_controller, make_sweep


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with get_store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class AgentDied(Exception):
    """Stands for a kill -9 at one precise point of the agent's code."""


def _dies() -> None:
    raise AgentDied


def _kill(store: Store, agent: Agent) -> None:
    """What the store shows of an agent after kill -9: its registration names a process that is gone."""
    store.register_agent(agent.queue, agent_id=agent.id, pid=_dead_pid())


def test_a_run_that_completed_before_its_agent_died_is_recorded_finished_from_its_log(
    store: Store, tmp_path: Path
) -> None:
    sweep = make_sweep(store, run_cap=1, parameters={"quality": {"value": 0.5}, "epochs": {"value": 3}})
    controller = make_controller(store, sweep, runs_dir=tmp_path / "runs")
    agent = Agent(store, "default", runs_dir=tmp_path / "runs")  # real run processes
    controller.tick()
    assert agent.tick().started == 1
    [active] = agent.active.values()
    assert select.select([active.proc.exit_fd], [], [], 120)[0], "the run did not end"
    # The run has ended; its agent sees it, and dies while it settles the run (looks for its exit record).
    active.proc.exit_recorded = _dies  # type: ignore[method-assign]
    with pytest.raises(AgentDied):
        agent.tick()
    _kill(store, agent)
    deadline = time.time() + 30
    while store.get_run(active.claim.run.id).state.in_flight and time.time() < deadline:
        controller.reap_now()  # what the drive loop does when the agent's pidfd fires
        controller.tick()
        time.sleep(0.2)
    active.proc.close()
    run = store.get_run(active.claim.run.id)
    assert (run.state, run.stop_reason, run.attempt) == (RunState.FINISHED, None, 1)
    assert run.summary["loss"] == pytest.approx(loss(0.5, 3))
    assert [row["epoch"] for row in store.history(run.id)] == [1, 2, 3]
    controller.tick()
    assert store.get_sweep(sweep.id).state is SweepState.FINISHED


def test_runs_lost_with_their_agent_run_again_a_bounded_number_of_times(store: Store, tmp_path: Path) -> None:
    runs = FakeRuns()
    sweep = make_sweep(store, run_cap=2)
    controller = make_controller(store, sweep, lease_ttl=30.0, lookahead=0, lost_run_retries=2)
    controller.tick(0.0)
    first_id = store.runs(sweep.id)[0].id
    for attempt in (1, 2, 3):
        agent = make_agent(store, runs, tmp_path, lease_ttl=30.0)
        agent.tick(float(attempt))
        assert store.get_run(first_id).attempt == attempt and store.get_run(first_id).state is RunState.RUNNING
        runs.by_id[first_id].log(loss=1.0)
        agent.tick(attempt + 0.5)  # its rows are reported; then it dies mid-run
        _kill(store, agent)
        controller.reap_now()
        controller.tick(attempt + 0.6)
    lost = store.get_run(first_id)  # third loss: retries used up, it counts as crashed (as a crash does in W&B)
    assert (lost.state, lost.attempt) == (RunState.CRASHED, 3)
    assert lost.stop_reason.startswith("agent lost (its process ") and store.history(first_id) == []
    second = store.runs(sweep.id)[1]
    assert second.state is RunState.PENDING and second.config != lost.config  # the sweep goes on, within run_cap


def test_a_run_the_sweep_was_stopping_is_not_run_again(store: Store, tmp_path: Path) -> None:
    runs = FakeRuns()
    sweep = make_sweep(store, run_cap=1)
    controller = make_controller(store, sweep, lease_ttl=30.0)
    agent = make_agent(store, runs, tmp_path, lease_ttl=30.0)
    controller.tick(0.0)
    agent.tick(0.0)
    [run] = store.runs(sweep.id)
    store.request_stop(run.id, "hyperband: behind")
    _kill(store, agent)
    controller.reap_now()
    controller.tick(1.0)
    ended = store.get_run(run.id)
    assert (ended.state, ended.attempt) == (RunState.KILLED, 1)
    assert ended.stop_reason.startswith("hyperband: behind; agent lost")


def test_the_drive_loop_wakes_when_an_agent_of_this_machine_dies(store: Store, tmp_path: Path) -> None:
    sweep = make_sweep(store, run_cap=1)
    controller = make_controller(store, sweep, lease_ttl=30.0)
    driver = Driver(store, controller, lambda: None, embedded_agents=False)  # an external agent serves the queue
    stand_in = subprocess.Popen(["sleep", "60"])  # the external agent's process
    try:
        store.register_agent("default", agent_id="external", pid=stand_in.pid)
        driver.step(time.time())
        claim = store.claim_next("default", "external", lease_ttl=30.0)
        store.mark_run_started(claim.run.id, "external", item_id=claim.item.id)
        driver.step(time.time())  # the controller sees the run, and watches its agent's process
        assert driver.wait(time.time() + 0.3) == "timer"
        stand_in.kill()
        stand_in.wait()
        assert driver.wait(time.time() + 30) == "agent"  # at once, not at the next reap or the lease's expiry
        driver.step(time.time())
        assert store.get_run(claim.run.id).attempt == 2  # settled (crashed) and queued again
    finally:
        stand_in.kill()
        controller.reaper.close()


def test_the_drive_loop_serves_the_queue_at_once_when_its_idle_agent_dies(store: Store, tmp_path: Path) -> None:
    """An external agent killed between two runs loses no run, but its queue is unserved: the loop learns it from
    the agent's pidfd and serves the queue itself, instead of waiting for a replacement agent to start."""
    sweep = make_sweep(store, run_cap=2)
    controller = make_controller(store, sweep, lease_ttl=30.0)
    stand_in = subprocess.Popen(["sleep", "60"])  # the external agent's process, running nothing yet
    runs = FakeRuns()

    def served() -> bool:
        return any(a.pid == stand_in.pid and stand_in.poll() is None for a in store.live_agents("default"))

    driver = Driver(store, controller, lambda: make_agent(store, runs, tmp_path), queue_served=served)
    try:
        store.register_agent("default", agent_id="external", pid=stand_in.pid)
        assert driver.agent is not None  # nothing served the queue when the loop began
        driver.agent.shutdown()
        driver.agent = None  # now the external agent serves it
        driver.step(time.time())
        assert driver.wait(time.time() + 0.3) == "timer"
        stand_in.kill()
        stand_in.wait()
        assert driver.wait(time.time() + 30) == "agent"  # at once, though it held no run
        driver.step(time.time())
        assert driver.agent is not None  # the loop serves the queue itself
        driver.step(time.time())
        assert runs.live(), "the embedded agent started the queued run"
    finally:
        stand_in.kill()
        controller.reaper.close()
