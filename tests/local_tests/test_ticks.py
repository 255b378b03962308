"""The scheduling rules, tick by tick: a real store, stand-in run processes, and ``now`` passed in (milliseconds,
no sleeps). The backend tests run the same rules on real subprocess sweeps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweepflow.local.controller import ControllerLeaseTaken
from sweepflow.local.runner import EXIT_RECORD_WAIT
from sweepflow.store import RunState, Store, SweepState, get_store
from tests.local_tests.fakes import CountingStore, FakeRuns, loss, make_agent, make_controller, make_sweep


@pytest.fixture
def store() -> Store:
    with get_store("sqlite://") as opened:
        yield opened


@pytest.fixture
def runs() -> FakeRuns:
    return FakeRuns()


def _states(store: Store, sweep_id: str) -> list[str]:
    return [r.state.value for r in store.runs(sweep_id)]


def test_run_cap_is_exact_with_one_run_queued_ahead(store: Store, runs: FakeRuns, tmp_path: Path) -> None:
    sweep = make_sweep(store, run_cap=5, scheduler={"num_workers": 2})
    controller = make_controller(store, sweep)
    agent = make_agent(store, runs, tmp_path, max_jobs=2)
    assert controller.tick(0.0)
    assert _states(store, sweep.id) == ["pending"] * 3  # two workers and one ahead
    assert agent.tick(0.0).started == 2
    now = 0.0
    while controller.tick(now):
        now += 1.0
        oldest = runs.live()[0]
        oldest.log(loss=1.0)
        oldest.exit(0)
        done = agent.tick(now)
        # The freed slot is refilled by the agent's claim alone: the queued-ahead run starts in the same tick.
        assert (done.finished, done.started) == (1, 1) or not store.runs(sweep.id, states=["pending"])
        assert len(store.runs(sweep.id, states=["running"])) <= 2
    final = store.get_sweep(sweep.id)
    assert (final.state, final.state_reason) == (SweepState.FINISHED, "run_cap 5 reached")
    assert _states(store, sweep.id) == ["finished"] * 5
    assert len({json.dumps(r.config, sort_keys=True) for r in store.runs(sweep.id)}) == 5


def test_an_exited_run_frees_its_slot_at_once_while_its_exit_record_is_awaited(
    store: Store, runs: FakeRuns, tmp_path: Path
) -> None:
    """wandb-core may write a run's exit record after the script is gone: the agent waits up to EXIT_RECORD_WAIT
    for it (else a finished run would be recorded crashed), but the next run starts meanwhile."""
    sweep = make_sweep(store, run_cap=3)
    controller = make_controller(store, sweep, lookahead=0)  # nothing queued ahead: the controller fills the slot
    agent = make_agent(store, runs, tmp_path)
    controller.tick(0.0)
    assert agent.tick(0.0).started == 1
    killed = runs.live()[0]
    killed.log(loss=1.0)
    killed.record_late = True  # a kill -9: no record will come
    killed.exit(-9)
    done = agent.tick(1.0)
    assert (done.exited, done.finished, agent.running) == (1, 0, 0)
    assert store.get_run(killed.spec.run_id).exit_code == -9  # said at once: the slot is free
    controller.tick(1.0)
    assert agent.tick(1.0).started == 1, "the next run waited for the exit record"
    assert agent.tick(1.0 + EXIT_RECORD_WAIT - 0.01).finished == 0
    assert store.get_run(killed.spec.run_id).state is RunState.RUNNING
    assert agent.tick(1.0 + EXIT_RECORD_WAIT).finished == 1
    assert store.get_run(killed.spec.run_id).state is RunState.CRASHED
    assert [row["loss"] for row in store.history(killed.spec.run_id)] == [1.0]

    late = runs.live()[0]  # its record lands after the exit, within the wait
    late.log(loss=0.5)
    late.record_late = True
    late.exit(0)
    assert agent.tick(4.0).exited == 1
    late.record_late = False
    assert agent.tick(4.1).finished == 1
    assert store.get_run(late.spec.run_id).state is RunState.FINISHED


def test_a_sweeps_own_agent_runs_only_that_sweeps_runs(store: Store, runs: FakeRuns, tmp_path: Path) -> None:
    """Two sweeps on one queue, each driven with its own agent (sized by its num_workers): neither agent takes
    the other's runs, however old they are, so each sweep gets its workers. An agent of the whole queue
    (`launch-agent`) takes any."""
    first, second = make_sweep(store, "a", run_cap=2), make_sweep(store, "b", run_cap=2)
    make_controller(store, first, lookahead=0).tick(0.0)  # first's runs are the queue's oldest
    make_controller(store, second, lookahead=0).tick(1.0)
    own = make_agent(store, runs, tmp_path, sweep_id=second.id)
    assert own.tick(2.0).started == 1
    assert [r.spec.sweep_id for r in runs.live()] == [second.id]
    anyone = make_agent(store, runs, tmp_path)
    assert anyone.tick(2.0).started == 1
    assert runs.live()[-1].spec.sweep_id == first.id
    assert [a.id for a in store.live_agents("default", now=2.0, queue_wide=True)] == [anyone.id]


def test_bayes_never_queues_ahead(store: Store) -> None:
    sweep = make_sweep(store, method="bayes", run_cap=5, scheduler={"num_workers": 2})
    make_controller(store, sweep).tick(0.0)
    assert _states(store, sweep.id) == ["pending", "pending"]


def test_lookahead_zero_queues_only_the_workers(store: Store) -> None:
    sweep = make_sweep(store, run_cap=5, scheduler={"num_workers": 2})
    make_controller(store, sweep, lookahead=0).tick(0.0)
    assert _states(store, sweep.id) == ["pending", "pending"]


def test_a_failure_streak_makes_the_agent_quit_without_queueing_a_run_it_would_cancel(
    store: Store, runs: FakeRuns, tmp_path: Path, monkeypatch
) -> None:
    """W&B's agent quits on failures (wandb.agent's max_consecutive_failed_runs here); the sweep is not failed."""
    monkeypatch.setenv("WANDB_AGENT_DISABLE_FLAPPING", "true")  # else 3 failures in its first 60 s end it first
    sweep = make_sweep(store, run_cap=20)
    controller = make_controller(store, sweep)
    agent = make_agent(store, runs, tmp_path, max_consecutive_failed_runs=3)
    now = 0.0
    outcomes = iter([1, 0, 1, 1, 1])  # a success in between resets the streak
    while agent.quit_reason is None and controller.tick(now):
        agent.tick(now)
        now += 1.0
        for run in runs.live():
            run.exit(next(outcomes))
        agent.tick(now, claim=False)
    assert agent.quit_reason == "3 consecutive failed runs"
    assert store.get_sweep(sweep.id).state is SweepState.RUNNING  # a person resumes it with another agent
    assert _states(store, sweep.id) == ["failed", "finished", "failed", "failed", "failed"]  # none queued ahead


def test_hyperband_runs_at_its_cadence_and_the_stop_is_recorded_with_its_reason(
    store: Store, runs: FakeRuns, tmp_path: Path
) -> None:
    sweep = make_sweep(
        store,
        method="grid",
        scheduler={"num_workers": 3},
        early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2},
        parameters={"quality": {"values": [1.0, 1.1, 50.0]}, "epochs": {"value": 12}},
    )
    controller = make_controller(store, sweep, hyperband_every=0.5)
    evaluations = []
    to_stop = controller.stopper.to_stop
    controller.stopper.to_stop = lambda trials: evaluations.append(len(trials)) or to_stop(trials)
    agent = make_agent(store, runs, tmp_path, max_jobs=3, report_interval=0.25)
    events: list[tuple[str, str]] = []
    agent.on_event = lambda kind, run_id, now: events.append((kind, run_id))
    controller.tick(0.0)
    agent.tick(0.0)
    by_quality = {r.spec.params["quality"]: r for r in runs.by_id.values()}
    assert controller.watches_metrics and sorted(by_quality) == [1.0, 1.1, 50.0]
    for epoch in (1, 2):
        for quality, run in by_quality.items():
            run.log(loss=loss(quality, epoch))
    assert agent.tick(0.1).rows == 0  # not due: reports every 0.25 s
    assert agent.tick(0.3).rows == 6
    controller.tick(0.3)
    controller.tick(0.4)  # within hyperband_every: not evaluated again
    assert len(evaluations) == 1
    bad = by_quality[50.0]
    assert store.get_run(bad.spec.run_id).stop_requested.startswith("hyperband:")
    assert controller.stop_requests == 1
    assert bad.stop_began is None  # the agent learns it at its next heartbeat, or at once when told to sync
    assert agent.tick(0.4, sync=True).stopping == 1 and bad.stop_began == 0.4
    bad.exit(-15)  # the SIGTERM of the stop ended it (the script has no handler)
    agent.tick(0.5)
    stopped = store.get_run(bad.spec.run_id)
    assert stopped.state is RunState.KILLED and f"Run: {bad.spec.run_id}" in stopped.stop_reason
    assert ("stopping", bad.spec.run_id) in events and events[-1] == ("finished", bad.spec.run_id)
    controller.tick(0.9)
    assert len(evaluations) == 2  # the cadence came round again


def test_pause_holds_new_runs_until_resume(store: Store, runs: FakeRuns, tmp_path: Path) -> None:
    sweep = make_sweep(store, run_cap=4)
    controller = make_controller(store, sweep)
    agent = make_agent(store, runs, tmp_path)
    controller.tick(0.0)
    store.set_sweep_state(sweep.id, SweepState.PAUSED)
    assert agent.tick(1.0).started == 0  # a paused sweep's queue hands nothing out
    assert controller.tick(1.0) and _states(store, sweep.id) == ["pending", "pending"]
    store.set_sweep_state(sweep.id, SweepState.RUNNING, "resumed")
    assert agent.tick(2.0).started == 1


def test_stop_lets_running_runs_finish_and_ends_the_queued_one(store: Store, runs: FakeRuns, tmp_path: Path) -> None:
    sweep = make_sweep(store, run_cap=4)
    controller = make_controller(store, sweep)
    agent = make_agent(store, runs, tmp_path)
    controller.tick(0.0)
    agent.tick(0.0)
    store.set_sweep_state(sweep.id, SweepState.FINISHED, "stop requested")
    assert not controller.tick(1.0)
    [running] = runs.live()
    agent.tick(1.0, sync=True)
    assert not running.stopping  # stop: no new runs, the running one finishes
    running.exit(0)
    agent.tick(2.0)
    assert _states(store, sweep.id) == ["finished", "killed"]
    assert store.get_sweep(sweep.id).lease_owner is None


def test_cancel_stops_running_runs(store: Store, runs: FakeRuns, tmp_path: Path) -> None:
    sweep = make_sweep(store, run_cap=4, scheduler={"num_workers": 2})
    controller = make_controller(store, sweep)
    agent = make_agent(store, runs, tmp_path, max_jobs=2)
    controller.tick(0.0)
    agent.tick(0.0)
    store.set_sweep_state(sweep.id, SweepState.CANCELED, "cancel requested")
    assert agent.tick(0.5).stopping == 0  # the heartbeat that brings stop requests is not due yet
    assert agent.tick(0.5, sync=True).stopping == 2
    for run in runs.live():
        run.exit(-15)  # the stop's SIGTERM ended them
    agent.tick(1.0)
    assert not agent.busy and _states(store, sweep.id) == ["killed", "killed", "killed"]
    assert not controller.tick(1.0)


def test_an_agent_whose_lease_was_reaped_kills_its_run_and_records_nothing(
    store: Store, runs: FakeRuns, tmp_path: Path
) -> None:
    sweep = make_sweep(store, run_cap=3)
    controller = make_controller(store, sweep, lease_ttl=30.0)
    agent = make_agent(store, runs, tmp_path, lease_ttl=30.0)
    lost: list[str] = []
    agent.on_event = lambda kind, run_id, now: kind == "lost" and lost.append(run_id)
    controller.tick(0.0)
    agent.tick(0.0)
    [run] = runs.live()
    # The agent stalls (no heartbeat) past its lease; the controller's reaper ends the run as crashed (agent lost),
    # and the controller queues it again: its script did not fail.
    controller.tick(30.5)
    requeued = store.get_run(run.spec.run_id)
    assert (requeued.state, requeued.attempt, requeued.config) == (RunState.PENDING, 2, store.runs(sweep.id)[0].config)
    run.log(loss=0.1)
    agent.tick(30.6, claim=False)
    assert lost == [run.spec.run_id] and run.hard_stopped and run.closed and not agent.busy
    assert store.get_run(requeued.id) == requeued and store.history(requeued.id) == []  # the lost agent wrote nothing


def test_reaping_runs_at_a_fraction_of_the_lease(store: Store, runs: FakeRuns, tmp_path: Path) -> None:
    sweep = make_sweep(store, run_cap=3, scheduler={"num_workers": 2})
    controller = make_controller(store, sweep, lease_ttl=30.0)  # reaps every 10 s
    controller.tick(0.0)
    store.claim_next("default", "gone-1", lease_ttl=30.0, now=0.0)
    controller.tick(5.0)
    store.claim_next("default", "gone-2", lease_ttl=30.0, now=5.0)

    def attempts() -> list[int]:  # a reaped run is queued again: its attempt tells it was reaped
        return [r.attempt for r in store.runs(sweep.id)][:2]

    controller.tick(30.5)  # reaps: the first claim expired at 30
    assert attempts() == [2, 1]
    controller.tick(35.5)  # the second expired at 35, but the next reap is due at 40.5
    assert attempts() == [2, 1]
    controller.tick(40.5)
    assert attempts() == [2, 2]  # within lease_ttl * (1 + 1/3) of its last beat
    assert _states(store, sweep.id)[:2] == ["pending", "pending"]


def test_a_controller_learns_it_lost_the_lease_before_deciding(store: Store) -> None:
    sweep = make_sweep(store, run_cap=3)
    first = make_controller(store, sweep, lease_ttl=30.0)
    second = make_controller(store, sweep, lease_ttl=30.0)
    first.tick(0.0)
    with pytest.raises(ControllerLeaseTaken):
        second.tick(1.0)
    assert second.tick(31.0)  # the first stopped renewing: its lease expired
    with pytest.raises(ControllerLeaseTaken):
        first.tick(32.0)  # its renewal is overdue, so it renews first, and learns it lost the sweep
    assert store.get_sweep(sweep.id).lease_owner == second.owner


def test_idle_ticks_touch_the_store_only_when_something_is_due(tmp_path: Path, runs: FakeRuns) -> None:
    store = CountingStore(f"sqlite:///{tmp_path / 'store.db'}")
    sweep = make_sweep(store, run_cap=10, scheduler={"num_workers": 2})
    controller = make_controller(store, sweep, lease_ttl=30.0)
    agent = make_agent(store, runs, tmp_path, max_jobs=2, lease_ttl=30.0, report_interval=0.5)
    controller.tick(0.0)
    agent.tick(0.0)
    store.writes = store.reads = 0
    for i in range(1, 450):  # 9 s of 20 ms rounds while both runs train without logging
        agent.tick(i * 0.02, claim=False)
    assert (store.writes, store.reads) == (0, 0)
    agent.tick(10.0, claim=False)  # the heartbeat is due at lease_ttl / 3
    controller.tick(10.0)  # so are the lease renewal and the reaper (which only reads: no lease has expired)
    assert store.writes == 2


def test_the_agent_reads_and_validates_each_sweep_config_once(store: Store, runs: FakeRuns, tmp_path: Path) -> None:
    sweep = make_sweep(store, run_cap=3)
    controller = make_controller(store, sweep)
    agent = make_agent(store, runs, tmp_path)
    reads: list[str] = []
    get_sweep = store.get_sweep
    now = 0.0
    while controller.tick(now):
        store.get_sweep = lambda sweep_id: reads.append(sweep_id) or get_sweep(sweep_id)  # type: ignore[method-assign]
        agent.tick(now)
        now += 1.0
        for run in runs.live():
            run.exit(0)
        agent.tick(now, claim=False)
        store.get_sweep = get_sweep  # type: ignore[method-assign]
    assert len(runs.by_id) == 3 and reads == [sweep.id]


def test_the_metric_target_ends_the_sweep_when_a_running_run_reaches_it() -> None:
    # The controller checks the target on the runs that changed since its last tick only (a run that reached it
    # earlier would have ended the sweep then); here the target is reached mid-run, on a run's second row.
    from sweepflow.tune import tune

    def two_rows(config: dict) -> Iterator[float]:
        yield 1.0
        yield config["x"]

    config = {
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize", "target": 0.25},
        "parameters": {"x": {"values": [0.9, 0.8, 0.2, 0.1, 0.7]}},
        "scheduler": {"num_workers": 1},
    }
    result = tune(config, two_rows)
    [hit] = [r for r in result.runs if r.config["x"] == 0.2]
    assert result.state == "finished" and result.reason == f"run {hit.id} reached the target loss=0.25"
    assert hit.state is RunState.FINISHED and not any(
        r.config["x"] == 0.1 and r.state is RunState.FINISHED for r in result.runs
    )
