"""A controller's incremental copy of its runs says what a full read says, after any sequence of what agents,
the reaper and the controller itself do to the runs (issue 13: the controller no longer reads every run)."""

from __future__ import annotations

import random

import pytest

from sweepflow.local.runview import RunView, trial_of
from sweepflow.store import RunState, Store, get_store

T0 = 1_800_000_000.0


@pytest.mark.parametrize("seed", range(3))
def test_a_view_refreshed_by_changes_equals_a_full_read_at_every_step(seed: int) -> None:
    rng = random.Random(seed)
    store: Store = get_store("sqlite://")
    sweep, _ = store.create_sweep(None, "p", {"method": "random"}, now=T0)
    view = RunView(store, sweep.id)
    claims: dict[str, int] = {}  # run id -> item id, for the runs an agent holds
    now, added = T0, 0
    for step in range(300):
        now += rng.choice([0.0, 0.5, 1.0])  # equal end times too: the last one ended is then the highest number
        roll = rng.random()
        running = [r for r in store.runs(sweep.id, states=["running"]) if r.id in claims]
        if roll < 0.25:
            store.add_run(sweep.id, {"x": added}, queue="q", now=now)
            added += 1
        elif roll < 0.4:
            claim = store.claim_next("q", "agent", lease_ttl=30, now=now)
            if claim is not None and store.mark_run_started(claim.run.id, "agent", item_id=claim.item.id, now=now):
                claims[claim.run.id] = claim.item.id
        elif roll < 0.6 and running:
            run = rng.choice(running)
            value = rng.random()
            store.append_history(
                run.id, [{"_step": step, "loss": value}], summary={"loss": value}, item_id=claims[run.id]
            )
        elif roll < 0.8 and running:
            run = rng.choice(running)
            state = rng.choice(["finished", "failed", "crashed", "killed"])
            store.mark_run_finished(run.id, state, stop_reason="agent lost", item_id=claims.pop(run.id), now=now)
        elif roll < 0.85:
            pending = store.runs(sweep.id, states=["pending"])
            if pending:
                store.request_stop(rng.choice(pending).id, "hyperband", now=now)
        elif roll < 0.9 and running:
            store.request_stop(rng.choice(running).id, "hyperband", now=now)
        elif roll < 0.95:
            crashed = store.runs(sweep.id, states=["crashed"])
            if crashed:
                store.requeue_run(rng.choice(crashed).id, now=now)
        elif running:  # the process exited; its agent records how it ended next
            run = rng.choice(running)
            store.record_exit(run.id, rng.choice([0, 1]), item_id=claims[run.id])
        if rng.random() < 0.5:  # the controller does not tick after every change
            continue
        assert_same(view, store, sweep.id)
    assert any(r.attempt > 1 for r in store.runs(sweep.id))  # the sequence did queue a run again
    assert sum(r.state is RunState.FINISHED for r in store.runs(sweep.id)) >= 2
    store.add_run(sweep.id, {"x": "last"}, queue="q", now=now)
    while (claim := store.claim_next("q", "agent", lease_ttl=30, now=now)) is not None:
        store.mark_run_started(claim.run.id, "agent", item_id=claim.item.id, now=now)
    store.add_run(sweep.id, {"x": "never started"}, queue="q", now=now)
    assert_same(view, store, sweep.id)
    store.set_sweep_state(sweep.id, "canceled", now=now)  # pending runs killed, running ones asked to stop
    assert_same(view, store, sweep.id)
    assert view.runs[-2].stop_requested == "sweep canceled" and view.runs[-1].state is RunState.KILLED


def assert_same(view: RunView, store: Store, sweep_id: str) -> None:
    """The view, refreshed, is what a full read says."""
    view.refresh()
    everything = store.runs(sweep_id)
    assert view.runs == everything
    assert view.trials == [trial_of(r) for r in everything]
    assert view.in_flight == {r.id: r for r in everything if not r.state.is_terminal}
    ended = [r for r in everything if r.state.is_terminal]
    expected = max(ended, key=lambda r: (r.ended_at or 0, r.number)) if ended else None
    assert view.last_ended() == expected
