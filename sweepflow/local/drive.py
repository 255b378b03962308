"""The loop that drives one sweep on this machine: its controller, plus an embedded agent pool when no live agent
serves the sweep's queue. A detached ``sweepflow controller ID`` process and ``launch-sweep --wait`` both run it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sweepflow.local.agent import Agent
from sweepflow.local.controller import Controller, ControllerLeaseTaken, ControllerSettings
from sweepflow.local.processes import owner_is_dead, process_gone
from sweepflow.states import SweepState
from sweepflow.store import Sweep

if TYPE_CHECKING:
    from sweepflow.backends.local import LocalBackend

DEFAULT_QUEUE = "default"


def drive(
    backend: LocalBackend,
    sweep_id: str,
    *,
    embedded_agents: bool | None = None,
    on_tick: Callable[[], None] | None = None,
) -> Sweep:
    """Run the controller (and, if no live agent serves the queue, an agent pool) until the sweep ends.

    Raises :class:`ControllerLeaseTaken` if another live controller drives the sweep.
    """
    s = backend.settings
    store = backend.store
    sweep = backend._sweep(sweep_id)
    queue = sweep.config.get("queue") or DEFAULT_QUEUE
    launch = sweep.config.get("launch") if isinstance(sweep.config.get("launch"), dict) else {}
    controller = Controller(
        store,
        sweep_id,
        settings=ControllerSettings(
            lease_ttl=s.lease_ttl,
            queue=queue,
            priority=launch.get("priority"),  # Launch's own key: a run's place in its queue
        ),
    )

    def make_agent() -> Agent:
        return Agent(
            store,
            queue,
            runs_dir=s.runs_dir,
            max_jobs=controller.config.num_workers,
            lease_ttl=s.lease_ttl,
            stop_grace=s.stop_grace,
            term_grace=s.term_grace,
            max_consecutive_failed_runs=s.max_consecutive_failures,
        )

    def queue_served() -> bool:
        live = store.live_agents(queue, max_age=s.lease_ttl)
        return any(not process_gone(a.host, a.pid) for a in live)

    agent = make_agent() if embedded_agents or (embedded_agents is None and not queue_served()) else None
    try:
        while True:
            if agent:
                agent.tick(claim=False)  # record ended runs first, so their slots are free this round
            try:
                active = controller.tick()
            except ControllerLeaseTaken:
                # A crashed controller's lease outlives it by up to lease_ttl: wait that out, but never
                # compete with a live one.
                if not owner_is_dead(backend._sweep(sweep_id).lease_owner):
                    raise
                time.sleep(s.poll_interval * 10)
                continue
            if agent is None and embedded_agents is None and active and not queue_served():
                agent = make_agent()  # the agents that served the queue are gone: serve it ourselves
            if agent:
                agent.tick()
                if agent.quit_reason:  # W&B's agent quits; the sweep waits for `sweep --resume`
                    store.set_sweep_state(sweep_id, SweepState.PAUSED, f"agent quit: {agent.quit_reason}")
                    break
            if on_tick:
                on_tick()
            if not active and not (agent and agent.busy):
                break
            if agent:
                agent.wait(s.poll_interval)  # wakes as soon as a run exits
            else:
                time.sleep(s.poll_interval)
    finally:
        if agent:
            agent.shutdown()
        controller.release()
    return backend._sweep(sweep_id)
