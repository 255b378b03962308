"""The store's contract, method by method, in one process with time driven through ``now``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from sweepflow.errors import SweepflowError
from sweepflow.store import (
    LEASE_EXPIRED_REASON,
    PRIORITIES,
    DuplicateConfigError,
    ItemState,
    LeaseLostError,
    NotFoundError,
    RunCapReachedError,
    RunRefusedError,
    RunState,
    Store,
    StoreError,
    SweepInactiveError,
    SweepState,
    config_hash,
    priority_value,
)

T0 = 1_800_000_000.0  # a fixed "now"; tests move time by adding to it


def _sweep(store: Store, key: str | None = "stage", **config: object):
    sweep, _ = store.create_sweep(key, "proj", {"method": "random", **config}, now=T0)
    return sweep


def _claimed(store: Store, sweep_id: str, config: dict, *, agent: str = "a1", ttl: float = 30, now: float = T0):
    run = store.add_run(sweep_id, config, queue="q", now=now)
    claim = store.claim_next("q", agent, lease_ttl=ttl, now=now)
    assert claim is not None and claim.run.id == run.id
    return claim


# -- sweeps -------------------------------------------------------------------------------------------------


def test_create_sweep_is_get_or_create_on_key(store: Store) -> None:
    first, created = store.create_sweep("nightly/coarse", "proj", {"method": "grid"}, prior_runs=[{"a": 1}], now=T0)
    again, created_again = store.create_sweep("nightly/coarse", "other", {"method": "bayes"}, now=T0 + 5)
    assert created and not created_again
    assert again == first  # the existing sweep comes back untouched
    assert len(first.id) == 8 and first.id.isalnum() and first.id == first.id.lower()
    assert first.state is SweepState.PENDING and first.created_at == first.updated_at == T0
    assert first.prior_runs == [{"a": 1}] and first.config == {"method": "grid"}
    assert store.find_sweep("nightly/coarse") == first
    assert store.get_sweep(first.id) == first
    assert store.get_sweep("nope") is None and store.find_sweep("nope") is None


def test_sweeps_without_key_are_always_new(store: Store) -> None:
    a, created_a = store.create_sweep(None, "proj", {})
    b, created_b = store.create_sweep(None, "proj", {})
    assert created_a and created_b and a.id != b.id and a.key is b.key is None


def test_run_cap_comes_from_config_or_argument(store: Store) -> None:
    assert _sweep(store, "a", run_cap=7).run_cap == 7
    assert store.create_sweep("b", "p", {"run_cap": 7}, run_cap=3)[0].run_cap == 3
    assert _sweep(store, "c").run_cap is None
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(StoreError, match="run_cap"):
            store.create_sweep(f"bad-{bad}", "p", {"run_cap": bad})


def test_list_sweeps_filters(store: Store) -> None:
    a, _ = store.create_sweep("a", "p1", {}, now=T0)
    b, _ = store.create_sweep("b", "p2", {}, now=T0 + 1)
    c, _ = store.create_sweep("c", "p1", {}, now=T0 + 2)
    store.set_sweep_state(c.id, "running", now=T0 + 3)
    assert [s.id for s in store.list_sweeps()] == [a.id, b.id, c.id]
    assert [s.id for s in store.list_sweeps(project="p1")] == [a.id, c.id]
    assert [s.id for s in store.list_sweeps(states=["running"])] == [c.id]
    assert [s.id for s in store.list_sweeps(project="p2", states=["pending", "paused"])] == [b.id]
    with pytest.raises(StoreError, match="not a SweepState"):
        store.list_sweeps(states=["runing"])


def test_set_sweep_state_and_expect_guard(store: Store) -> None:
    sweep = _sweep(store)
    running = store.set_sweep_state(sweep.id, "running", now=T0 + 1)
    assert running is not None and running.state is SweepState.RUNNING and running.updated_at == T0 + 1
    assert store.set_sweep_state(sweep.id, "finished", expect=["pending"]) is None
    assert store.get_sweep(sweep.id).state is SweepState.RUNNING  # refused: nothing written
    done = store.set_sweep_state(sweep.id, "finished", "run_cap reached", expect=["running"], now=T0 + 2)
    assert done.state is SweepState.FINISHED and done.state_reason == "run_cap reached"
    with pytest.raises(StoreError, match="not a SweepState"):
        store.set_sweep_state(sweep.id, "done")
    with pytest.raises(NotFoundError):
        store.set_sweep_state("missing", "running")


def test_ending_a_sweep_stops_its_queued_runs(store: Store) -> None:
    sweep = _sweep(store)
    running = _claimed(store, sweep.id, {"x": 1})
    store.mark_run_started(running.run.id, "a1", now=T0)
    claimed_not_started = _claimed(store, sweep.id, {"x": 2})
    waiting = store.add_run(sweep.id, {"x": 3}, queue="q", now=T0)

    store.set_sweep_state(sweep.id, "finished", "user asked", now=T0 + 9)

    assert store.get_run(running.run.id).state is RunState.RUNNING  # stop: running runs finish
    assert store.get_run(running.run.id).stop_requested is None
    for run_id in (claimed_not_started.run.id, waiting.id):
        run = store.get_run(run_id)
        assert (run.state, run.stop_reason, run.ended_at) == (RunState.KILLED, "sweep finished: user asked", T0 + 9)
    assert store.mark_run_started(claimed_not_started.run.id, "a1") is None  # the agent must not start it
    assert [i.run_id for i in store.queue_items("q", states=["claimed"])] == [running.run.id]
    assert store.check() == []


def test_cancelling_a_sweep_asks_running_runs_to_stop(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1})
    store.mark_run_started(claim.run.id, "a1", now=T0)
    store.set_sweep_state(sweep.id, "canceled", now=T0 + 1)
    assert store.get_run(claim.run.id).stop_requested == "sweep canceled"
    beat = store.heartbeat("a1", [claim.item.id], ttl=30, now=T0 + 2)
    assert beat.stop == {claim.item.id: "sweep canceled"} and not beat.lost


# -- controller lease -----------------------------------------------------------------------------------------


def test_controller_lease(store: Store) -> None:
    sweep = _sweep(store)
    assert store.acquire_controller_lease(sweep.id, "ctl-A", 10, now=T0)
    assert not store.acquire_controller_lease(sweep.id, "ctl-B", 10, now=T0 + 5)  # A holds it
    assert store.acquire_controller_lease(sweep.id, "ctl-A", 10, now=T0 + 9)  # renewal
    assert store.get_sweep(sweep.id).lease_expires_at == T0 + 19
    assert not store.acquire_controller_lease(sweep.id, "ctl-B", 10, now=T0 + 18.9)
    assert store.acquire_controller_lease(sweep.id, "ctl-B", 10, now=T0 + 19)  # A's expired
    assert store.get_sweep(sweep.id).lease_owner == "ctl-B"
    assert not store.release_controller_lease(sweep.id, "ctl-A")  # only the holder releases
    assert store.release_controller_lease(sweep.id, "ctl-B")
    assert store.get_sweep(sweep.id).lease_owner is None
    assert store.acquire_controller_lease(sweep.id, "ctl-A", 10, now=T0 + 20)
    with pytest.raises(NotFoundError):
        store.acquire_controller_lease("missing", "ctl-A", 10)


def test_add_run_with_owner_needs_the_live_lease(store: Store) -> None:
    sweep = _sweep(store)
    with pytest.raises(LeaseLostError):
        store.add_run(sweep.id, {"x": 1}, queue="q", owner="ctl-A", now=T0)
    store.acquire_controller_lease(sweep.id, "ctl-A", 10, now=T0)
    assert store.add_run(sweep.id, {"x": 1}, queue="q", owner="ctl-A", now=T0 + 1).number == 1
    with pytest.raises(LeaseLostError):
        store.add_run(sweep.id, {"x": 2}, queue="q", owner="ctl-B", now=T0 + 1)
    with pytest.raises(LeaseLostError):  # expired, even if nobody took it yet
        store.add_run(sweep.id, {"x": 2}, queue="q", owner="ctl-A", now=T0 + 10)
    assert len(store.runs(sweep.id)) == 1


# -- runs -----------------------------------------------------------------------------------------------------


def test_add_run_inserts_run_and_queue_item_together(store: Store) -> None:
    sweep = _sweep(store)
    run = store.add_run(sweep.id, {"lr": 0.1, "opt": "adam"}, queue="gpu", search_info={"band": 1}, now=T0)
    assert run.state is RunState.PENDING and run.number == 1 and run.attempt == 1 and run.queue == "gpu"
    assert run.config == {"lr": 0.1, "opt": "adam"} and run.search_info == {"band": 1} and run.summary == {}
    assert run.queued_at == T0 and run.config_hash == config_hash(run.config)
    [item] = store.queue_items("gpu")
    assert (item.run_id, item.state, item.priority, item.enqueued_at) == (run.id, ItemState.PENDING, 0, T0)
    assert store.get_queue("gpu") is not None  # created on first use
    assert store.add_run(sweep.id, {"lr": 0.2, "opt": "adam"}, queue="gpu").number == 2
    with pytest.raises(NotFoundError):
        store.add_run("missing", {"lr": 1}, queue="gpu")


def test_duplicate_config_refused(store: Store) -> None:
    sweep = _sweep(store)
    first = store.add_run(sweep.id, {"lr": 1.0, "opt": {"name": "sgd", "m": 0.9}}, queue="q")
    reordered = {"opt": {"m": 0.9, "name": "sgd"}, "lr": 1}
    numpy_typed = {"lr": np.float64(1.0), "opt": {"name": "sgd", "m": 0.9}}
    for same in (reordered, numpy_typed):
        with pytest.raises(DuplicateConfigError) as refused:
            store.add_run(sweep.id, same, queue="q")
        assert refused.value.run_id == first.id
    other = _sweep(store, "other")
    assert store.add_run(other.id, {"lr": 1.0, "opt": {"name": "sgd", "m": 0.9}}, queue="q")  # per sweep only
    assert len(store.runs(sweep.id)) == 1 and len(store.queue_items("q")) == 2


def test_numpy_values_are_stored_as_json(store: Store) -> None:
    sweep = _sweep(store)
    run = store.add_run(sweep.id, {"lr": np.float64(0.5), "units": np.int64(64)}, queue="q")
    assert store.get_run(run.id).config == {"lr": 0.5, "units": 64}
    with pytest.raises(StoreError, match="cannot store"):
        store.add_run(sweep.id, {"lr": object()}, queue="q")


def test_run_cap_counts_every_run(store: Store) -> None:
    sweep = _sweep(store, run_cap=2)
    a = store.add_run(sweep.id, {"x": 1}, queue="q")
    store.request_stop(a.id, "pruned")  # an ended run still counts, as on W&B
    store.add_run(sweep.id, {"x": 2}, queue="q")
    with pytest.raises(RunCapReachedError, match="run_cap of 2"):
        store.add_run(sweep.id, {"x": 3}, queue="q")
    assert [r.number for r in store.runs(sweep.id)] == [1, 2]


def test_no_runs_for_paused_or_ended_sweeps(store: Store) -> None:
    sweep = _sweep(store)
    for state in ("paused", "finished"):
        store.set_sweep_state(sweep.id, state)
        with pytest.raises(SweepInactiveError):
            store.add_run(sweep.id, {"x": 1}, queue="q")
    assert store.runs(sweep.id) == []


def test_runs_and_counts(store: Store) -> None:
    sweep = _sweep(store)
    a = _claimed(store, sweep.id, {"x": 1})
    store.mark_run_started(a.run.id, "a1")
    b = store.add_run(sweep.id, {"x": 2}, queue="q")
    c = store.add_run(sweep.id, {"x": 3}, queue="q")
    store.request_stop(c.id, "pruned")
    assert [r.id for r in store.runs(sweep.id)] == [a.run.id, b.id, c.id]
    assert [r.id for r in store.runs(sweep.id, states=["pending", "killed"])] == [b.id, c.id]
    counts = store.counts(sweep.id)
    assert set(counts) == set(RunState)
    assert counts == {**dict.fromkeys(RunState, 0), RunState.RUNNING: 1, RunState.PENDING: 1, RunState.KILLED: 1}
    assert store.counts("missing") == dict.fromkeys(RunState, 0)


def test_start_and_finish(store: Store) -> None:
    store.ensure_queue("q", cost_per_hour=3.6)
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1}, agent="a1")
    assert store.mark_run_started(claim.run.id, "a2", now=T0 + 1) is None  # not a2's claim
    assert store.mark_run_started(claim.run.id, "a1", item_id=claim.item.id + 1) is None  # not that item
    started = store.mark_run_started(claim.run.id, "a1", item_id=claim.item.id, now=T0 + 1)
    assert started.state is RunState.RUNNING and started.started_at == T0 + 1 and started.agent_id == "a1"
    assert store.mark_run_started(claim.run.id, "a1") is None  # already running

    with pytest.raises(StoreError, match="terminal"):
        store.mark_run_finished(claim.run.id, "running")
    done = store.mark_run_finished(
        claim.run.id, "finished", exit_code=0, summary={"loss": 0.1}, item_id=claim.item.id, now=T0 + 11
    )
    assert done.state is RunState.FINISHED and done.exit_code == 0 and done.ended_at == T0 + 11
    assert done.summary == {"loss": 0.1}
    assert done.cost_usd == pytest.approx(3.6 * 10 / 3600)  # queue rate x run time
    assert store.queue_items("q")[0].state is ItemState.DONE
    assert store.mark_run_finished(claim.run.id, "failed", exit_code=1) is None  # the first ending wins
    assert store.get_run(claim.run.id).state is RunState.FINISHED


def test_finish_keeps_summary_and_takes_explicit_cost(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1})
    store.mark_run_started(claim.run.id, "a1")
    store.append_history(claim.run.id, [{"_step": 0, "loss": 1.0}], summary={"loss": 1.0})
    done = store.mark_run_finished(claim.run.id, "failed", exit_code=2, cost_usd=0.25, stop_reason="oom")
    assert done.summary == {"loss": 1.0} and done.cost_usd == 0.25 and done.stop_reason == "oom"


def test_a_claimed_run_can_fail_before_it_starts(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1})
    failed = store.mark_run_finished(claim.run.id, "failed", stop_reason="program not found")
    assert failed.state is RunState.FAILED and failed.started_at is None and failed.cost_usd is None
    assert store.check() == []


def test_request_stop(store: Store) -> None:
    sweep = _sweep(store)
    queued = store.add_run(sweep.id, {"x": 1}, queue="q")
    stopped = store.request_stop(queued.id, "hyperband", now=T0 + 3)
    assert stopped.state is RunState.KILLED and stopped.stop_reason == "hyperband" and stopped.ended_at == T0 + 3
    assert store.queue_items("q")[0].state is ItemState.DONE

    claim = _claimed(store, sweep.id, {"x": 2})
    store.mark_run_started(claim.run.id, "a1")
    asked = store.request_stop(claim.run.id, "hyperband band 1")
    assert asked.state is RunState.RUNNING and asked.stop_requested == "hyperband band 1"
    assert store.request_stop(claim.run.id, "again").stop_requested == "hyperband band 1"
    assert store.heartbeat("a1", [claim.item.id], ttl=30).stop == {claim.item.id: "hyperband band 1"}
    store.mark_run_finished(claim.run.id, "killed", stop_reason="hyperband band 1")
    assert store.request_stop(claim.run.id, "late").state is RunState.KILLED  # ended runs are left alone
    with pytest.raises(NotFoundError):
        store.request_stop("missing", "x")


# -- history --------------------------------------------------------------------------------------------------


def test_append_history_is_idempotent_on_step(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1})
    rows = [{"_step": s, "loss": 1 / (s + 1)} for s in range(5)]
    assert store.append_history(claim.run.id, rows[:3]) == 3
    assert store.append_history(claim.run.id, rows, summary={"loss": 0.2}) == 2  # re-reading from the start
    assert store.append_history(claim.run.id, [{"_step": 1, "loss": 99}]) == 0
    assert store.history(claim.run.id) == rows
    assert store.get_run(claim.run.id).summary == {"loss": 0.2}
    assert store.append_history(claim.run.id, [{"_step": 9, "loss": float("nan")}]) == 1
    assert np.isnan(store.history(claim.run.id)[-1]["loss"])  # a diverged loss is data, not an error
    for bad in ({"loss": 1}, {"_step": "3"}, {"_step": True}, {"_step": 1.0}):
        with pytest.raises(StoreError, match="_step"):
            store.append_history(claim.run.id, [bad])
    with pytest.raises(NotFoundError):
        store.append_history("missing", rows)


def test_append_history_with_a_lost_claim_writes_nothing(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1}, ttl=10)
    store.reap_expired(now=T0 + 11)
    assert store.append_history(claim.run.id, [{"_step": 0}], summary={"a": 1}, item_id=claim.item.id) == 0
    assert store.history(claim.run.id) == [] and store.get_run(claim.run.id).summary == {}


def test_histories_of_a_sweep(store: Store) -> None:
    sweep = _sweep(store)
    a = store.add_run(sweep.id, {"x": 1}, queue="q")
    b = store.add_run(sweep.id, {"x": 2}, queue="q")
    store.add_run(sweep.id, {"x": 3}, queue="q")
    store.append_history(a.id, [{"_step": 1, "v": 2}, {"_step": 0, "v": 1}])
    store.append_history(b.id, [{"_step": 0, "v": 3}])
    expected = {a.id: [{"_step": 0, "v": 1}, {"_step": 1, "v": 2}], b.id: [{"_step": 0, "v": 3}]}
    assert store.histories(sweep.id) == expected


# -- queues and claims ----------------------------------------------------------------------------------------


def test_priority_values() -> None:
    assert [priority_value(p) for p in ("low", "medium", "high", "critical")] == [-10, 0, 10, 20]
    assert PRIORITIES["medium"] == 0
    assert priority_value(" HIGH ") == 10 and priority_value(7) == 7 and priority_value("-3") == -3
    for bad in (True, "urgent", 1.5, None):
        with pytest.raises(StoreError, match="priority"):
            priority_value(bad)  # type: ignore[arg-type]


def test_claim_order_is_priority_then_oldest(store: Store) -> None:
    sweep = _sweep(store)
    plan = [("low", 0), ("medium", 1), (15, 2), ("high", 3), ("high", 4), ("medium", 5), (10, 6)]
    runs = {}
    for i, (priority, age) in enumerate(plan):
        # enqueued_at is out of insertion order on purpose: "oldest" is the time, not the id
        runs[i] = store.add_run(sweep.id, {"i": i}, queue="q", priority=priority, now=T0 + (10 - age)).id
    order = []
    while claim := store.claim_next("q", "a1", lease_ttl=30, now=T0 + 20):
        order.append(claim.run.id)
    # priority 15; then the three 10s oldest first (ages 6, 4, 3); then the 0s (ages 5, 1); then low
    assert order == [runs[i] for i in (2, 6, 4, 3, 5, 1, 0)]
    assert store.claim_next("q", "a1", lease_ttl=30) is None


def test_claim_ties_go_to_the_first_enqueued(store: Store) -> None:
    sweep = _sweep(store)
    ids = [store.add_run(sweep.id, {"i": i}, queue="q", now=T0).id for i in range(5)]
    assert [store.claim_next("q", "a", lease_ttl=1, now=T0).run.id for _ in ids] == ids


def test_claim_sets_the_lease_and_skips_other_queues(store: Store) -> None:
    sweep = _sweep(store)
    store.add_run(sweep.id, {"i": 0}, queue="cpu")
    assert store.claim_next("gpu", "a1", lease_ttl=30) is None
    run = store.add_run(sweep.id, {"i": 1}, queue="gpu", now=T0)
    claim = store.claim_next("gpu", "a1", lease_ttl=30, now=T0 + 1)
    assert claim.run == run
    assert claim.item.state is ItemState.CLAIMED and claim.item.claimed_by == "a1"
    assert claim.item.claimed_at == T0 + 1 and claim.item.lease_expires_at == T0 + 31


def test_paused_sweeps_hand_out_nothing(store: Store) -> None:
    sweep = _sweep(store)
    run = store.add_run(sweep.id, {"i": 0}, queue="q")
    store.set_sweep_state(sweep.id, "paused")
    assert store.claim_next("q", "a1", lease_ttl=30) is None
    store.set_sweep_state(sweep.id, "running")
    assert store.claim_next("q", "a1", lease_ttl=30).run.id == run.id


def test_queue_priority_is_the_default_item_priority(store: Store) -> None:
    store.ensure_queue("urgent", priority="high")
    sweep = _sweep(store)
    store.add_run(sweep.id, {"i": 0}, queue="urgent")
    store.add_run(sweep.id, {"i": 1}, queue="urgent", priority="low")
    assert [i.priority for i in store.queue_items("urgent")] == [10, -10]


def test_ensure_queue_creates_then_updates_given_fields(store: Store) -> None:
    q = store.ensure_queue("gpu", priority=5, cost_per_hour=2.5, resource_args={"gpus": 1}, now=T0)
    assert (q.name, q.priority, q.cost_per_hour, q.resource_args, q.created_at) == ("gpu", 5, 2.5, {"gpus": 1}, T0)
    assert store.ensure_queue("gpu") == q  # nothing given: nothing changed
    q2 = store.ensure_queue("gpu", cost_per_hour=3)
    assert (q2.priority, q2.cost_per_hour, q2.resource_args) == (5, 3.0, {"gpus": 1})
    store.ensure_queue("cpu")
    assert [q.name for q in store.list_queues()] == ["cpu", "gpu"]
    assert store.get_queue("cpu").priority == 0 and store.get_queue("tpu") is None
    with pytest.raises(StoreError):
        store.ensure_queue("")


# -- heartbeats, leases, reaping ------------------------------------------------------------------------------


def test_heartbeat_extends_only_its_own_leases(store: Store) -> None:
    sweep = _sweep(store)
    mine = _claimed(store, sweep.id, {"x": 1}, agent="a1", ttl=10)
    theirs = _claimed(store, sweep.id, {"x": 2}, agent="a2", ttl=10)
    beat = store.heartbeat("a1", [mine.item.id, theirs.item.id, 12345], ttl=10, now=T0 + 8)
    assert beat.lost == {theirs.item.id, 12345} and beat.stop == {}
    leases = {i.id: i.lease_expires_at for i in store.queue_items("q")}
    assert leases == {mine.item.id: T0 + 18, theirs.item.id: T0 + 10}
    assert store.reap_expired(now=T0 + 12) == [theirs.run.id]  # a1's beat kept its own run alive
    assert store.heartbeat("a1", [], ttl=10).lost == frozenset()


def test_reap_expired_marks_runs_crashed(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1}, ttl=10)
    store.mark_run_started(claim.run.id, "a1", now=T0)
    pending = store.add_run(sweep.id, {"x": 2}, queue="q")
    assert store.reap_expired(now=T0 + 10) == []  # expires *after* T0 + 10
    assert store.reap_expired(now=T0 + 10.5) == [claim.run.id]
    crashed = store.get_run(claim.run.id)
    assert crashed.state is RunState.CRASHED and crashed.stop_reason == LEASE_EXPIRED_REASON
    assert crashed.ended_at == T0 + 10.5
    assert store.get_run(pending.id).state is RunState.PENDING  # unclaimed items have no lease
    assert store.reap_expired(now=T0 + 100) == []
    # The agent comes back from the dead: it has lost the item, and its report is ignored.
    assert store.heartbeat("a1", [claim.item.id], ttl=10, now=T0 + 11).lost == {claim.item.id}
    assert store.mark_run_finished(claim.run.id, "finished", exit_code=0, item_id=claim.item.id) is None
    assert store.check() == []


def test_requeue_a_crashed_run(store: Store) -> None:
    store.ensure_queue("q", cost_per_hour=36.0)
    sweep = _sweep(store, run_cap=1)
    first = _claimed(store, sweep.id, {"x": 1}, ttl=10)
    store.mark_run_started(first.run.id, "a1", now=T0)
    store.append_history(first.run.id, [{"_step": 0, "loss": 1}])
    store.reap_expired(now=T0 + 20)
    with pytest.raises(NotFoundError):
        store.requeue_run("missing")
    requeued = store.requeue_run(first.run.id, priority="high", now=T0 + 30)  # same run: run_cap is not hit
    assert requeued.state is RunState.PENDING and requeued.attempt == 2 and requeued.queued_at == T0 + 30
    assert requeued.started_at is None and requeued.stop_reason is None and store.history(first.run.id) == []
    second = store.claim_next("q", "a2", lease_ttl=10, now=T0 + 31)
    assert second.run.id == first.run.id and second.item.id != first.item.id and second.item.priority == 10
    # The first attempt's agent reports late with its old item: it cannot touch the second attempt.
    assert store.mark_run_started(first.run.id, "a1", item_id=first.item.id) is None
    assert store.mark_run_finished(first.run.id, "finished", item_id=first.item.id) is None
    store.mark_run_started(first.run.id, "a2", item_id=second.item.id, now=T0 + 32)
    done = store.mark_run_finished(first.run.id, "finished", item_id=second.item.id, now=T0 + 42)
    assert done.state is RunState.FINISHED
    assert done.cost_usd == pytest.approx(36.0 * 10 / 3600)  # the reaper charged nothing for attempt 1
    with pytest.raises(RunRefusedError, match="only crashed or preempted"):
        store.requeue_run(first.run.id)
    assert len(store.runs(sweep.id)) == 1 and store.check() == []


def test_cost_adds_up_over_attempts(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1})
    store.mark_run_started(claim.run.id, "a1")
    store.mark_run_finished(claim.run.id, "preempted", cost_usd=1.5)
    store.requeue_run(claim.run.id)
    again = store.claim_next("q", "a1", lease_ttl=10)
    store.mark_run_started(again.run.id, "a1")
    assert store.mark_run_finished(again.run.id, "finished", cost_usd=0.5).cost_usd == 2.0


def test_requeue_refused_when_the_sweep_ended(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1}, ttl=1)
    store.reap_expired(now=T0 + 5)
    store.set_sweep_state(sweep.id, "finished")
    with pytest.raises(SweepInactiveError):
        store.requeue_run(claim.run.id)


# -- agents ---------------------------------------------------------------------------------------------------


def test_agents_register_beat_and_go(store: Store) -> None:
    a1 = store.register_agent("q", max_jobs=4, agent_id="a1", now=T0)
    assert (a1.queue, a1.max_jobs, a1.started_at, a1.heartbeat_at, a1.stopped_at) == ("q", 4, T0, T0, None)
    assert a1.pid is not None and a1.host
    a2 = store.register_agent("other", now=T0)
    assert a2.id != a1.id and a2.max_jobs == 1
    assert [a.id for a in store.live_agents("q", now=T0 + 1)] == ["a1"]
    assert {a.id for a in store.live_agents(now=T0 + 1)} == {"a1", a2.id}
    store.heartbeat("a1", ttl=30, now=T0 + 50)
    assert store.get_agent("a1").heartbeat_at == T0 + 50
    assert [a.id for a in store.live_agents(max_age=20, now=T0 + 60)] == ["a1"]  # a2 went quiet
    store.deregister_agent("a1", now=T0 + 61)
    assert store.live_agents(now=T0 + 61) == [] and store.get_agent("a1").stopped_at == T0 + 61
    revived = store.register_agent("q", agent_id="a1", now=T0 + 70)
    assert revived.stopped_at is None and revived.started_at == T0  # same agent, back again
    assert store.get_agent("missing") is None


# -- records and integrity ------------------------------------------------------------------------------------


def test_records_are_frozen_snapshots(store: Store) -> None:
    sweep = _sweep(store)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sweep.state = SweepState.RUNNING  # type: ignore[misc]
    sweep.config["method"] = "grid"
    assert store.get_sweep(sweep.id).config["method"] == "random"


def test_config_hash_is_canonical() -> None:
    assert config_hash({"a": 1, "b": {"c": 2.0}}) == config_hash({"b": {"c": 2}, "a": 1.0})
    assert config_hash({"a": 1}) != config_hash({"a": 1.5}) != config_hash({"a": "1"})
    assert config_hash({"a": [1, 2]}) != config_hash({"a": [2, 1]})


def test_store_errors_are_sweepflow_errors() -> None:
    assert issubclass(StoreError, SweepflowError)
    assert issubclass(DuplicateConfigError, RunRefusedError) and issubclass(RunCapReachedError, RunRefusedError)


def test_check_reports_broken_invariants(store: Store) -> None:
    sweep = _sweep(store, run_cap=5)
    run = store.add_run(sweep.id, {"x": 1}, queue="q")
    store.add_run(sweep.id, {"x": 2}, queue="q")
    assert store.check() == []
    with store._write() as conn:  # simulate a bug writing half a transition
        conn.execute(text("UPDATE runs SET state = 'finished' WHERE id = :id"), {"id": run.id})
        conn.execute(text("UPDATE sweeps SET run_cap = 1"))
    problems = store.check()
    assert any(run.id in p and "1 live" in p for p in problems)
    assert any("above its run_cap" in p for p in problems)


def test_record_exit_marks_a_run_that_ended_on_its_own_until_its_outcome_is_recorded(store: Store) -> None:
    sweep = _sweep(store)
    claim = _claimed(store, sweep.id, {"x": 1}, ttl=10)
    store.mark_run_started(claim.run.id, "a1", now=T0)
    assert store.record_exit(claim.run.id, 0, item_id=claim.item.id)
    run = store.get_run(claim.run.id)
    assert (run.state, run.exit_code) == (RunState.RUNNING, 0)  # still the agent's to record
    assert not store.record_exit(claim.run.id, 0, item_id=claim.item.id + 1)  # another claim's word is ignored


def test_run_changes_reads_every_run_written_since_and_no_other(store: Store) -> None:
    """Each of the store's writes to a run makes it a change, once; a run not written since is never read."""
    sweep = _sweep(store)
    other = _sweep(store, key="other")
    first = store.run_changes(sweep.id, since=None)
    assert first.runs == []
    since = first.since

    def changed() -> list[tuple[str, RunState]]:
        nonlocal since
        got = store.run_changes(sweep.id, since=since)
        since = got.since
        assert store.run_changes(sweep.id, since=since).runs == []  # read once, then not again
        return [(r.id, r.state) for r in got.runs]

    a, b, c = (store.add_run(sweep.id, {"x": i}, queue="q", now=T0) for i in range(3))
    store.add_run(other.id, {"x": 0}, queue="q", now=T0)  # another sweep's run is not this sweep's change
    assert changed() == [(a.id, RunState.PENDING), (b.id, RunState.PENDING), (c.id, RunState.PENDING)]
    claim = store.claim_next("q", "a1", lease_ttl=30, now=T0)
    assert claim is not None and claim.run.id == a.id
    assert changed() == []  # a claim writes the queue item, not the run
    store.mark_run_started(a.id, "a1", item_id=claim.item.id, now=T0)
    assert changed() == [(a.id, RunState.RUNNING)]
    store.append_history(a.id, [{"_step": 0, "loss": 1.0}], item_id=claim.item.id)
    assert changed() == []  # history rows alone leave the run as it was
    store.append_history(a.id, [{"_step": 1, "loss": 0.5}], summary={"loss": 0.5}, item_id=claim.item.id)
    assert changed() == [(a.id, RunState.RUNNING)]
    store.request_stop(a.id, "hyperband", now=T0)
    assert changed() == [(a.id, RunState.RUNNING)]
    store.request_stop(b.id, "not needed", now=T0)  # pending: it ends killed
    assert changed() == [(b.id, RunState.KILLED)]
    store.record_exit(a.id, 0, item_id=claim.item.id)
    assert changed() == [(a.id, RunState.RUNNING)]
    store.mark_run_finished(a.id, "crashed", stop_reason="agent lost", item_id=claim.item.id, now=T0 + 1)
    assert changed() == [(a.id, RunState.CRASHED)]
    store.requeue_run(a.id, now=T0 + 2)
    d = store.add_run(sweep.id, {"x": 3}, queue="q", now=T0)
    store.request_stop(a.id, "not needed", now=T0 + 2)  # written twice between two reads: read once
    assert changed() == [(a.id, RunState.KILLED), (d.id, RunState.PENDING)]
    claim = store.claim_next("q", "a1", lease_ttl=30, now=T0)
    assert claim is not None and claim.run.id == c.id
    store.mark_run_started(c.id, "a1", item_id=claim.item.id, now=T0)
    changed()
    # A cancel asks the running runs to stop and kills the pending ones in one transaction: each is read once.
    store.set_sweep_state(sweep.id, SweepState.CANCELED, now=T0 + 3)
    assert changed() == [(c.id, RunState.RUNNING), (d.id, RunState.KILLED)]
    assert store.get_run(c.id).stop_requested is not None
    assert store.run_changes(other.id, since=None).runs == store.runs(other.id)


def test_the_direct_path_raises_driver_errors_as_sqlalchemy_does(store: Store) -> None:
    # The backend retries SQLAlchemy's OperationalError (a busy database); the direct path must raise the same.
    from sweepflow.store import _direct

    with store._read() as conn, pytest.raises(OperationalError, match="no such table"):
        _direct.execute(conn, "SELECT * FROM nothing_here WHERE id = :id", {"id": 1})


def test_add_run_returns_the_run_exactly_as_a_read_returns_it(store: Store) -> None:
    # add_run builds its answer from what it wrote instead of reading the row back: the two must not differ.
    sweep = _sweep(store)
    config = {"x": np.float64(0.5), "t": (1, 2), "nested": {"a": [1, {"b": None}]}, "s": "é"}
    run = store.add_run(sweep.id, config, queue="q", search_info={"ei": np.float32(0.25)}, now=T0)
    read = store.get_run(run.id)
    assert dataclasses.asdict(run) == dataclasses.asdict(read)
    assert [type(getattr(run, f.name)) for f in dataclasses.fields(run)] == [
        type(getattr(read, f.name)) for f in dataclasses.fields(read)
    ]
    assert run.state is RunState.PENDING and run.config == {
        "x": 0.5,
        "t": [1, 2],
        "nested": {"a": [1, {"b": None}]},
        "s": "é",
    }
