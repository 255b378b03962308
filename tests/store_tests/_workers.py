"""Process bodies for the multi-process tests. They live in a module (not the test file) so ``spawn`` children
import only this and the store, and each child opens the database itself through ``get_store``, as a real
controller or agent does."""

from __future__ import annotations

import random
import time
from typing import Any

from sweepflow.store import DuplicateConfigError, RunCapReachedError, get_store

CHURN_KEY = "churn"
CHURN_QUEUE = "churn-q"


def create_same_sweep(url: str, barrier: Any, out: Any) -> None:
    barrier.wait()  # open together: the schema is created by one of us, on a fresh file
    store = get_store(url)
    barrier.wait()
    sweep, created = store.create_sweep("race/stage", "proj", {"method": "grid"})
    out.put((sweep.id, created))


def claim_all(url: str, queue: str, barrier: Any, out: Any) -> None:
    store = get_store(url)
    agent = f"agent-{random.getrandbits(32):x}"
    barrier.wait()
    got = []
    while claim := store.claim_next(queue, agent, lease_ttl=600):
        got.append((claim.item.id, claim.run.id, agent))
    out.put(got)


def add_until_capped(url: str, sweep_id: str, n_configs: int, barrier: Any, out: Any) -> None:
    """Every process proposes the same configs (each in its own order), as racing controllers would."""
    store = get_store(url)
    order = list(range(n_configs))
    random.shuffle(order)
    barrier.wait()
    added, duplicates = [], 0
    for j in order:
        # A real controller thinks between proposals. Without a pause the first process to get the write lock
        # keeps re-taking it: SQLite's busy handler polls with backoff, it does not queue waiters fairly.
        time.sleep(random.uniform(0, 0.004))
        try:
            added.append(store.add_run(sweep_id, {"j": j}, queue="cap-q").id)
        except DuplicateConfigError:
            duplicates += 1
        except RunCapReachedError:
            break
    out.put((added, duplicates))


def churn(url: str, seed: int, ready: Any) -> None:
    """Loop the agent / controller transactions until killed: add, claim, start, log, finish, stop, reap."""
    rng = random.Random(seed)
    store = get_store(url)
    sweep, _ = store.create_sweep(CHURN_KEY, "proj", {"method": "random"})
    store.set_sweep_state(sweep.id, "running")
    store.ensure_queue(CHURN_QUEUE, cost_per_hour=1.0)
    agent = f"churn-{seed}"
    store.register_agent(CHURN_QUEUE, agent_id=agent, max_jobs=1)
    ready.set()
    while True:
        try:
            config = {"x": rng.random(), "k": rng.randrange(4)}
            store.add_run(sweep.id, config, queue=CHURN_QUEUE, priority=rng.randrange(3))
        except DuplicateConfigError:
            pass
        claim = store.claim_next(CHURN_QUEUE, agent, lease_ttl=0.5 if rng.random() < 0.1 else 600)
        if claim is None:
            continue
        run = store.mark_run_started(claim.run.id, agent, item_id=claim.item.id)
        if run is None:
            continue
        rows = [{"_step": s, "loss": rng.random()} for s in range(rng.randrange(1, 6))]
        store.append_history(run.id, rows, summary=rows[-1], item_id=claim.item.id)
        store.heartbeat(agent, [claim.item.id], ttl=600)
        roll = rng.random()
        if roll < 0.1:
            store.request_stop(run.id, "pruned")
        if roll < 0.2:
            store.reap_expired()
        state = rng.choice(["finished", "finished", "failed", "killed"])
        store.mark_run_finished(run.id, state, exit_code=0, item_id=claim.item.id)
