"""A controller's incremental copy of its runs, and the tally behind a sweep's status, say what a full read says,
after any sequence of what agents, the reaper and the controller itself do to the runs (issue 13: neither reads
every run any more)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from sweepflow.config import Metric
from sweepflow.local.runview import RunView, trial_of
from sweepflow.local.tally import RunTally
from sweepflow.ranking import best
from sweepflow.store import RunState, Store, get_store

T0 = 1_800_000_000.0


def random_writes(store: Store, sweep_id: str, seed: int, steps: int = 300) -> Iterator[None]:
    """What agents, the reaper and a controller do to a sweep's runs, in a random order; yields now and then
    (where a reader would look), and at the end after the sweep is canceled."""
    rng = random.Random(seed)
    claims: dict[str, int] = {}  # run id -> item id, for the runs an agent holds
    now, added = T0, 0
    sweep = store.get_sweep(sweep_id)
    assert sweep is not None
    for step in range(steps):
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
            value = rng.choice([0.1, 0.2, 0.3])  # ties too: the first run added wins one
            store.append_history(
                run.id, [{"_step": step, "loss": value}], summary={"loss": value}, item_id=claims[run.id]
            )
        elif roll < 0.8 and running:
            run = rng.choice(running)
            state = rng.choice(["finished", "failed", "crashed", "killed"])
            cost = rng.choice([None, 0.25, 0.1])
            store.mark_run_finished(
                run.id, state, stop_reason="agent lost", cost_usd=cost, item_id=claims.pop(run.id), now=now
            )
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
        elif roll < 0.97 and running:  # the process exited; its agent records how it ended next
            run = rng.choice(running)
            store.record_exit(run.id, rng.choice([0, 1]), item_id=claims[run.id])
        elif ended := store.runs(sweep.id, states=["finished", "killed"]):  # a summary rewritten after the end
            value = rng.choice([0.05, 0.1, 0.9])
            store.append_history(rng.choice(ended).id, [], summary={"loss": value})
        if rng.random() < 0.5:  # a reader does not look after every change
            yield
    assert any(r.attempt > 1 for r in store.runs(sweep.id))  # the sequence did queue a run again
    assert sum(r.state is RunState.FINISHED for r in store.runs(sweep.id)) >= 2
    store.add_run(sweep.id, {"x": "last"}, queue="q", now=now)
    while (claim := store.claim_next("q", "agent", lease_ttl=30, now=now)) is not None:
        store.mark_run_started(claim.run.id, "agent", item_id=claim.item.id, now=now)
    store.add_run(sweep.id, {"x": "never started"}, queue="q", now=now)
    yield
    store.set_sweep_state(sweep.id, "canceled", now=now)  # pending runs killed, running ones asked to stop
    runs = store.runs(sweep.id)
    assert runs[-2].stop_requested == "sweep canceled" and runs[-1].state is RunState.KILLED
    yield


@pytest.mark.parametrize("seed", range(3))
def test_a_view_refreshed_by_changes_equals_a_full_read_at_every_step(seed: int) -> None:
    store: Store = get_store("sqlite://")
    sweep, _ = store.create_sweep(None, "p", {"method": "random"}, now=T0)
    view = RunView(store, sweep.id)
    for _ in random_writes(store, sweep.id, seed):
        assert_same(view, store, sweep.id)


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


@pytest.mark.parametrize(("seed", "goal"), [(0, "minimize"), (1, "maximize"), (2, "minimize")])
def test_a_tally_says_what_a_walk_over_every_run_says(seed: int, goal: str) -> None:
    store: Store = get_store("sqlite://")
    sweep, _ = store.create_sweep(None, "p", {"method": "random"}, now=T0)
    metric = Metric(name="loss", goal=goal)
    tally = RunTally(store, sweep.id, metric)
    bests = set()
    for _ in random_writes(store, sweep.id, seed):
        tally.refresh()
        runs = store.runs(sweep.id)
        found = best(runs, metric, state=lambda r: r.state, summary=lambda r: r.summary)
        assert tally.best == (None if found is None else (found[0].id, found[1]))
        assert +tally.counts == {state: n for state, n in store.counts(sweep.id).items() if n}
        assert tally.cost_usd == pytest.approx(sum(r.cost_usd or 0.0 for r in runs))
        bests.add(tally.best)
    assert len(bests) > 2  # the best did change along the way
