"""Real processes (``spawn``, each opening the file via ``get_store``) racing on one database, and ``kill -9``.

These are the guarantees the controller and the agents build on: one sweep per key, one agent per item, never
more than ``run_cap`` runs, and a consistent store whatever instant a process dies at.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sweepflow.store import ItemState, RunState, Store, get_store
from tests.store_tests import _workers

SPAWN = mp.get_context("spawn")
TIMEOUT_S = 60


def _race(target: Callable[..., None], n: int, *args: Any) -> list[Any]:
    """Run ``target(*args, barrier, out)`` in ``n`` processes released together; return what each put."""
    barrier, out = SPAWN.Barrier(n), SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*args, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=TIMEOUT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=TIMEOUT_S)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    return results


def test_get_or_create_race_creates_one_sweep(db_url: str) -> None:
    # The file is brand new: the processes also race to create the schema, and one does.
    results = _race(_workers.create_same_sweep, 3, db_url)
    assert len({sweep_id for sweep_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, True]
    store = get_store(db_url)
    assert len(store.list_sweeps()) == 1 and store.check() == []


def test_claim_race_hands_each_item_out_once(db_url: str) -> None:
    store = get_store(db_url)
    sweep, _ = store.create_sweep("claims", "proj", {})
    items = 240
    run_ids = {store.add_run(sweep.id, {"i": i}, queue="shared").id for i in range(items)}

    claims = [c for got in _race(_workers.claim_all, 3, db_url, "shared") for c in got]

    assert len(claims) == items
    assert Counter(item_id for item_id, _, _ in claims).most_common(1)[0][1] == 1
    assert {run_id for _, run_id, _ in claims} == run_ids
    stored = {i.id: i for i in store.queue_items("shared")}
    for item_id, _, agent in claims:
        assert stored[item_id].state is ItemState.CLAIMED and stored[item_id].claimed_by == agent
    assert store.check() == []


def test_racing_controllers_never_exceed_run_cap(db_url: str) -> None:
    store = get_store(db_url)
    cap = 200
    sweep, _ = store.create_sweep("capped", "proj", {"run_cap": cap})

    results = _race(_workers.add_until_capped, 3, db_url, sweep.id, 2 * cap)

    added = [run_id for ids, _ in results for run_id in ids]
    runs = store.runs(sweep.id)
    assert len(added) == len(set(added)) == len(runs) == cap
    assert [r.number for r in runs] == list(range(1, cap + 1))
    assert len({r.config_hash for r in runs}) == cap  # the same config was never queued twice
    assert store.check() == []


def test_kill_9_at_random_instants_leaves_a_consistent_store(db_url: str) -> None:
    rng = random.Random(7)
    store = get_store(db_url)
    seen_runs = 0
    for round_ in range(4):
        # Two processes churn through transactions; each dies by SIGKILL at its own random instant.
        readies = [SPAWN.Event() for _ in range(2)]
        procs = [
            SPAWN.Process(target=_workers.churn, args=(db_url, 10 * round_ + i, ready), daemon=True)
            for i, ready in enumerate(readies)
        ]
        for p in procs:
            p.start()
        for ready in readies:
            assert ready.wait(TIMEOUT_S)
        for p in procs:
            time.sleep(rng.uniform(0.05, 0.4))
            p.kill()
            p.join(TIMEOUT_S)
            assert p.exitcode == -9

        fresh = get_store(db_url)  # a new engine: what the next process would see
        assert fresh.check() == []
        # A dead writer holds no lock: with a short busy timeout, a held lock would raise "database is locked".
        with Store(db_url, busy_timeout_s=1.0) as impatient:
            impatient.ensure_queue("after-kill")
        [sweep] = fresh.list_sweeps()
        runs = fresh.runs(sweep.id)
        assert len({r.id for r in runs}) == len(runs) == sum(fresh.counts(sweep.id).values())
        assert len({r.config_hash for r in runs}) == len(runs)
        run_ids = {r.id for r in runs}
        assert {i.run_id for i in fresh.queue_items()} <= run_ids
        assert len(runs) > seen_runs  # the children did work this round
        seen_runs = len(runs)
        fresh.close()

    # What the dead agents held is reaped as crashed; everything ends up accounted for exactly once.
    lost = store.reap_expired(now=time.time() + 3600)
    [sweep] = store.list_sweeps()
    assert all(store.get_run(run_id).state is RunState.CRASHED for run_id in lost)
    assert store.queue_items(states=["claimed"]) == []
    assert store.check() == []
    counts = store.counts(sweep.id)
    assert counts[RunState.RUNNING] == 0 and sum(counts.values()) == len(store.runs(sweep.id))
