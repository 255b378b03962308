"""The drive loop's rounds (:class:`Driver.step`), with ``now`` passed in and stand-in run processes: what wakes
the controller, what a round costs the store, and that a freed slot is refilled in the round that frees it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sweepflow.local.controller import ControllerLeaseTaken
from sweepflow.local.drive import Driver
from sweepflow.store import SweepState, get_store
from tests.local_tests.fakes import CountingStore, FakeRuns, loss, make_agent, make_controller, make_sweep


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    opened = CountingStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.close()


def _driver(store, tmp_path: Path, runs: FakeRuns, events: list | None = None, **sweep_keys) -> Driver:
    sweep = make_sweep(store, **{"run_cap": 6, "scheduler": {"num_workers": 2}, **sweep_keys})
    controller = make_controller(store, sweep, lease_ttl=30.0)

    def agent():
        made = make_agent(store, runs, tmp_path, max_jobs=2, lease_ttl=30.0, report_interval=0.5)
        if events is not None:
            made.on_event = lambda kind, run_id, now: events.append((kind, run_id, now))
        return made

    return Driver(store, controller, agent, embedded_agents=True)


def test_a_freed_slot_is_refilled_in_the_round_that_frees_it(store: CountingStore, tmp_path: Path) -> None:
    runs, events = FakeRuns(), []
    driver = _driver(store, tmp_path, runs, events)
    assert driver.step(0.0)
    assert [kind for kind, _, _ in events] == ["started", "started"]
    first = runs.live()[0]
    first.exit(0)
    events.clear()
    assert driver.step(1.0)
    [(finished, ended_id, _), (started, started_id, _)] = events
    assert (finished, ended_id, started) == ("finished", first.spec.run_id, "started") and started_id != ended_id
    assert len(store.runs(driver.controller.sweep_id, states=["pending"])) == 1  # the controller topped up ahead


def test_a_run_that_ends_while_the_round_refills_a_slot_is_seen_by_the_controller_in_that_round(
    store: CountingStore, tmp_path: Path
) -> None:
    runs = FakeRuns()
    driver = _driver(store, tmp_path, runs, run_cap=2)
    driver.step(0.0)
    first, second = runs.live()
    first.exit(0)
    second.exit_at_poll = second._polls + 2  # still running at the round's first look, ended at its second
    assert not driver.step(1.0)  # run_cap reached and nothing in flight: done now, not at the next timer
    assert store.get_sweep(driver.controller.sweep_id).state is SweepState.FINISHED


def test_while_the_engine_loads_the_agent_goes_on_and_the_controller_decides_once_it_is_in(
    store: CountingStore, tmp_path: Path
) -> None:
    # A standby that takes over before its imports are done: blocking its loop on them would hold every slot that
    # frees meanwhile (issue 11). Its rounds record exits and start the run queued ahead; decisions wait.
    runs, events, loading = FakeRuns(), [], [False]
    driver = _driver(store, tmp_path, runs, events)
    driver.engine_ready = lambda: not loading[0]
    driver.step(0.0)  # two running, one queued ahead
    loading[0] = True
    ticks = driver.controller_ticks
    runs.live()[0].exit(0)
    events.clear()
    driver.step(1.0)
    assert [kind for kind, _, _ in events] == ["finished", "started"]  # the slot went to the run queued ahead
    assert driver.controller_ticks == ticks and not store.runs(driver.controller.sweep_id, states=["pending"])
    assert driver.next_due <= time.time() + driver.poll_interval  # it looks again soon, not at the next timer
    driver.step(1.1)
    assert driver.controller_ticks == ticks  # still loading
    loading[0] = False
    driver.step(1.2)  # nothing new happened, but the round it put off is owed
    assert driver.controller_ticks == ticks + 1
    assert len(store.runs(driver.controller.sweep_id, states=["pending"])) == 1  # topped up ahead again


def test_rounds_with_nothing_due_touch_no_table(store: CountingStore, tmp_path: Path) -> None:
    driver = _driver(store, tmp_path, FakeRuns())
    driver.step(0.0)
    ticks, store.writes, store.reads = driver.controller_ticks, 0, 0
    now = 0.0
    while now < 9.9:  # runs train silently; the first timer is the heartbeat / lease renewal at lease_ttl / 3
        now += 0.02
        driver.step(now)
    assert (store.writes, store.reads, driver.controller_ticks) == (0, 0, ticks)
    assert driver.next_due == pytest.approx(0.5 * int(now / 0.5 + 1), abs=0.03)  # the next metrics report
    driver.step(10.0)
    assert driver.controller_ticks == ticks + 1 and store.writes == 2  # heartbeat, lease renewal (the reaper reads)


def test_the_wait_ends_at_a_run_exit_or_a_commit_by_another_process(store: CountingStore, tmp_path: Path) -> None:
    runs = FakeRuns()
    driver = _driver(store, tmp_path, runs)
    driver.step(0.0)
    far = time.time() + 600  # a wait that reached it would report "timer"
    runs.live()[0].exit(0)  # a fake has no pidfd: the agent polls it when each short sleep ends
    assert driver.wait(far) == "exit"
    driver.step(1.0)
    with get_store(store.url) as cli:
        cli.set_sweep_state(driver.controller.sweep_id, SweepState.PAUSED, "pause requested")
    assert driver.wait(far) == "store"
    driver.step(2.0)
    assert driver.wait(time.time()) == "timer"


def test_a_commit_by_another_process_wakes_the_controller_and_the_agent(store: CountingStore, tmp_path: Path) -> None:
    runs = FakeRuns()
    driver = _driver(store, tmp_path, runs)
    driver.step(0.0)
    ticks = driver.controller_ticks
    with get_store(store.url) as cli:  # `sweepflow sweep ID --cancel` in another process
        cli.set_sweep_state(driver.controller.sweep_id, SweepState.CANCELED, "cancel requested")
    assert driver.step(0.5)  # the sweep has ended, but our runs are still stopping
    assert driver.controller_ticks == ticks + 1
    assert all(run.stopping for run in runs.live()) and len(runs.live()) == 2  # stops begun at once, not at 10 s
    for run in runs.live():
        run.exit(0)
    assert not driver.step(0.6)  # the sweep ended and nothing is in flight: the loop is done


@pytest.mark.parametrize("early", [None, {"type": "hyperband", "min_iter": 2, "eta": 2}], ids=["plain", "hyperband"])
def test_new_metrics_tick_the_controller_only_when_they_can_change_a_decision(
    store: CountingStore, tmp_path: Path, early: dict | None
) -> None:
    runs = FakeRuns()
    driver = _driver(store, tmp_path, runs, **({"early_terminate": early} if early else {}))
    driver.step(0.0)
    ticks = driver.controller_ticks
    for run in runs.live():
        run.log(loss=loss(run.spec.params["quality"], 1))
    driver.step(0.6)  # the agent's metrics report is due
    assert driver.controller_ticks == ticks + (1 if early else 0)


def test_a_round_refuses_a_sweep_another_live_controller_drives(store: CountingStore, tmp_path: Path) -> None:
    driver = _driver(store, tmp_path, FakeRuns())
    store.acquire_controller_lease(driver.controller.sweep_id, "elsewhere:1:abc", 30.0, now=0.0)
    with pytest.raises(ControllerLeaseTaken):
        driver.step(0.0)
