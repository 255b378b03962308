"""The loop that drives one sweep on this machine: its controller, plus an embedded agent pool when no live agent
serves the sweep's queue. A detached ``sweepflow controller ID`` process and ``launch-sweep --wait`` both run it.

The loop is event-driven, so it costs next to nothing while runs train. It sleeps until the first of:

* a run's process exits (the agent waits on the runs' pidfds): the slot is refilled at once;
* another process commits to the store (``PRAGMA data_version``, checked every ``poll_interval``, microseconds
  each): a stop, pause or cancel from the CLI, or an external agent finishing a run;
* a timer: the agent's next metrics report (``report_interval``) or heartbeat, the controller's lease renewal and
  reaping (``lease_ttl * lease_renew_fraction``).

One round (:meth:`Driver.step`) then does only what is due: the agent records exits and claims queued runs first
(a grid or random sweep keeps one run queued ahead, so a freed slot does not wait for a suggestion), and the
controller ticks only when something it decides on may have changed.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Protocol

from sweepflow.local.agent import Agent, OnEvent, StartRun
from sweepflow.local.controller import Controller, ControllerLeaseTaken, ControllerSettings
from sweepflow.local.processes import owner_is_dead, owner_pid, process_gone, wait_for_exit
from sweepflow.local.txlog import load_reader
from sweepflow.settings import DEFAULTS, Settings
from sweepflow.states import SweepState
from sweepflow.store import NotFoundError, Store, Sweep

DEFAULT_QUEUE = "default"


class Backend(Protocol):
    """What the loop needs of the local backend (its façade passes itself)."""

    settings: Settings
    store: Store

    def ensure_standby(self, sweep_id: str) -> bool: ...

    def stop_standby(self, sweep_id: str) -> None: ...


#: How often a loop that keeps a standby checks it is still there (a standby that died is replaced).
STANDBY_CHECK_EVERY = 5.0


class Driver:
    """One sweep's controller and (optionally) an embedded agent, advanced one round at a time.

    ``step(now)`` is the round (tests call it with ``now`` and stand-in run processes); ``wait()`` sleeps until the
    next event; :func:`drive` alternates the two.
    """

    def __init__(
        self,
        store: Store,
        controller: Controller,
        make_agent: Callable[[], Agent],
        *,
        embedded_agents: bool | None = None,
        queue_served: Callable[[], bool] = lambda: False,
        poll_interval: float = DEFAULTS.poll_interval,
        engine_ready: Callable[[], bool] = lambda: True,
    ):
        self.store = store
        self.controller = controller
        self.make_agent = make_agent
        self.embedded_agents = embedded_agents
        self.queue_served = queue_served
        self.poll_interval = poll_interval
        self.engine_ready = engine_ready
        self._owed = False  # a controller round put off while the engine loads
        self.agent: Agent | None = None
        if embedded_agents or (embedded_agents is None and not queue_served()):
            self.agent = make_agent()
        self.active = True  # the controller still drives the sweep
        self.controller_ticks = 0
        self._version: int | None = None  # the store's data_version at the end of our last round
        self._stops_seen = 0
        self._served_checked_at = -math.inf

    def step(self, now: float) -> bool:
        """One round; False once the sweep has ended and no run of ours is in flight.

        Raises :class:`ControllerLeaseTaken` if another live controller holds the sweep.
        """
        agent, controller = self.agent, self.controller
        changed = self._version is None or self.store.data_version() != self._version
        # The agent first: a run that exited frees its slot, and a run queued ahead takes it, before anything else.
        done = agent.tick(now, sync=changed) if agent else None
        # While this process still loads the engine and its agent has runs (a standby that took over before its
        # imports were done), the controller's round waits for it rather than block the loop on the import: the
        # agent's rounds go on, recording exits and starting runs already queued (issue 11: recovery). With no run
        # of its own there is nothing to go on with: the round imports what it needs at once, the quickest way
        # to a stage's first run.
        ready = not (agent and agent.busy) or self.engine_ready()
        wants = (
            self._owed
            or changed
            or now >= controller.next_due
            or (
                done is not None
                and (done.exited or done.finished or done.lost or (ready and done.rows and controller.watches_metrics))
            )
        )
        self._owed = wants and not ready
        wants = wants and ready
        while wants:
            self.active = controller.tick(now)
            self.controller_ticks += 1
            stops = controller.stop_requests != self._stops_seen
            self._stops_seen = controller.stop_requests
            wants = False
            if agent and (stops or agent.running < agent.max_jobs):
                again = agent.tick(now, sync=stops)  # claim what the controller just queued; act on its stops now
                wants = bool(again.exited or again.finished or again.lost)  # the controller decides again
            if agent is None and self.embedded_agents is None and self.active:
                self._serve_if_unserved(now)
        if agent is None and changed:  # agents that register or beat commit: a new server is news
            queue = self.controller.settings.queue
            self.controller.reaper.watch_servers(self.store.live_agents(queue, queue_wide=True))
        self._version = self.store.data_version()  # our own writes of this round are not news
        if agent and agent.quit_reason:  # W&B's agent quits; the sweep waits for `sweep --resume`
            self.store.set_sweep_state(controller.sweep_id, SweepState.PAUSED, f"agent quit: {agent.quit_reason}")
            return False
        return self.active or bool(agent and agent.busy)

    def _serve_if_unserved(self, now: float) -> None:
        if now - self._served_checked_at < self.controller.settings.renew_every:
            return
        self._served_checked_at = now
        if not self.queue_served():
            self.agent = self.make_agent()  # the agents that served the queue are gone: serve it ourselves

    @property
    def next_due(self) -> float:
        """When the next round is due on a timer (events come sooner)."""
        owed = time.time() + self.poll_interval if self._owed else math.inf
        return min(self.controller.next_due, self.agent.next_due if self.agent else math.inf, owed)

    def wait(self, deadline: float | None = None) -> str:
        """Sleep until ``deadline`` (default :attr:`next_due`), a run's exit, an agent's death (one of this machine
        running a run of the sweep), or another process's commit; returns which: ``"timer"``, ``"exit"``,
        ``"agent"`` or ``"store"``."""
        deadline = self.next_due if deadline is None else deadline
        while True:
            left = deadline - time.time()
            if left <= 0:
                return "timer"
            if self.agent is not None:
                if self.agent.wait(min(left, self.poll_interval)):
                    return "exit"
            else:
                time.sleep(min(left, self.poll_interval))
            if self.controller.reaper.agent_died():  # its runs need settling, and its queue may need an agent
                self.controller.reap_now()
                self._served_checked_at = -math.inf
                return "agent"
            if self.store.data_version() != self._version:
                return "store"

    def close(self) -> None:
        """Stop our runs (recorded as stopped), leave the queue, give up the lease."""
        if self.agent:
            self.agent.shutdown()
        self.controller.release()
        self.controller.reaper.close()


def _sweep(store: Store, sweep_id: str) -> Sweep:
    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise NotFoundError(f"no sweep with id {sweep_id!r}.")
    return sweep


def _load(controller: Controller, engine_in: threading.Event) -> None:
    """What a driver loads off its loop: wandb's record type (its reaper's and agent's first read of a run log),
    then the controller's engine (:meth:`Controller.load`). An error loading the engine (a config it refuses) is
    left to the first decision, which raises it as it always has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(Exception):
            load_reader()
        try:
            controller.load()
        except Exception:  # raised again, where it belongs, by the decision that needs it
            pass
        finally:
            engine_in.set()


_LOADING: weakref.WeakKeyDictionary[Controller, threading.Event] = weakref.WeakKeyDictionary()


def _load_in_background(controller: Controller) -> Callable[[], bool]:
    """Start :func:`_load` in a thread, once per controller; returns whether the engine is in. The driving loop
    does not wait for it: runs already queued (the ones lost with a dead controller, the one queued ahead) are
    claimed meanwhile, and the controller's rounds are put off until then (``Driver(engine_ready=...)``)."""
    engine_in = _LOADING.get(controller)
    if engine_in is None:
        engine_in = _LOADING[controller] = threading.Event()
        threading.Thread(target=_load, args=(controller, engine_in), name="load", daemon=True).start()
    return engine_in.is_set


def _take_over(store: Store, controller: Controller, *, stand_by: bool) -> bool:
    """Take the sweep (:meth:`Controller.recover`); False if it ended meanwhile.

    With ``stand_by``, while a live controller of this machine drives it, wait for that process to end (its pidfd),
    loading the engine meanwhile, and take over the moment it does: a dead controller is replaced in milliseconds,
    not in a new process's start-up (seconds on a busy box). Otherwise, or for a controller elsewhere, raise
    :class:`ControllerLeaseTaken`.
    """
    while True:
        owner = _sweep(store, controller.sweep_id).lease_owner
        holder = owner_pid(owner)
        if not (stand_by and holder is not None and not owner_is_dead(owner)):
            try:
                controller.recover()
                return True
            except ControllerLeaseTaken:
                if not stand_by or owner_pid(_sweep(store, controller.sweep_id).lease_owner) is None:
                    raise
                continue  # a live controller of this machine took it meanwhile: stand by for it
        # Never take the sweep from a live controller of this machine, even if its lease lapsed (a busy box can
        # stall its renewal past a short TTL): only its death hands the sweep over.
        _load_in_background(controller)  # a driver that dies meanwhile is taken over at once, not after the imports
        wait_for_exit(holder, controller.settings.renew_every)
        if _sweep(store, controller.sweep_id).state.is_terminal:
            return False


def drive(
    backend: Backend,
    sweep_id: str,
    *,
    embedded_agents: bool | None = None,
    on_tick: Callable[[], None] | None = None,
    on_event: OnEvent | None = None,
    start_run: StartRun | None = None,
    stand_by: bool = False,
    keep_standby: bool = False,
) -> Sweep:
    """Run the controller (and, if no live agent serves the queue, an agent pool) until the sweep ends.

    ``on_tick()`` is called after every round; ``on_event(kind, run_id, now)`` and ``start_run`` go to the
    embedded agent (see :class:`Agent`). Raises :class:`ControllerLeaseTaken` if another live controller drives
    the sweep, unless ``stand_by`` (see :func:`_take_over`).

    With ``keep_standby`` (and the ``standby`` setting), the loop keeps one detached controller standing by while it
    drives (``sweepflow controller`` and ``launch-sweep --wait`` ask for it), so a ``kill -9`` of this process costs
    the sweep milliseconds, not a new process's start-up; a standby that takes over starts its own. The standby is
    stopped before this loop lets the sweep go, so a clean stop (Ctrl-C, SIGTERM) is not undone by it.
    """
    s = backend.settings
    store = backend.store
    sweep = _sweep(store, sweep_id)
    queue = sweep.config.get("queue") or DEFAULT_QUEUE
    launch = sweep.config.get("launch") if isinstance(sweep.config.get("launch"), dict) else {}
    controller = Controller(
        store,
        sweep_id,
        settings=ControllerSettings(
            lease_ttl=s.lease_ttl,
            queue=queue,
            priority=launch.get("priority"),  # Launch's own key: a run's place in its queue
            renew_fraction=s.lease_renew_fraction,
            lookahead=s.lookahead,
            runs_dir=s.runs_dir,
            lost_run_retries=s.lost_run_retries,
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
            renew_fraction=s.lease_renew_fraction,
            report_interval=s.report_interval,
            start_run=start_run,
            on_event=on_event,
            max_consecutive_failed_runs=s.max_consecutive_failures,
            sweep_id=sweep_id,  # sized by this sweep's num_workers: other sweeps of the queue get their own
        )

    def queue_served() -> bool:  # by an agent of the whole queue (`launch-agent`), not another sweep's own
        live = store.live_agents(queue, max_age=s.lease_ttl, queue_wide=True)
        return any(not process_gone(a.host, a.pid) for a in live)

    if sweep.state.is_terminal or not _take_over(store, controller, stand_by=stand_by):
        return _sweep(store, sweep_id)
    driver = Driver(
        store,
        controller,
        make_agent,
        embedded_agents=embedded_agents,
        queue_served=queue_served,
        poll_interval=s.poll_interval,
    )
    standby = keep_standby and s.standby
    try:
        # Runs lost with a dead controller start again before the engine's imports (seconds on a busy box): they
        # were re-queued as the sweep was taken over, and are claimed first; then the standby starts, the sooner
        # to be ready for the next fault.
        if driver.agent:
            driver.agent.tick(time.time())
        if standby:
            backend.ensure_standby(sweep_id)
        standby_checked = time.time()
        driver.engine_ready = _load_in_background(controller)
        while True:
            now = time.time()
            if standby and now - standby_checked >= STANDBY_CHECK_EVERY:
                backend.ensure_standby(sweep_id)  # replaces one that died
                standby_checked = now
            going = driver.step(now)
            if on_tick:
                on_tick()
            if not going:
                break
            driver.wait()
    finally:
        if standby:
            backend.stop_standby(sweep_id)
        driver.close()
    return _sweep(store, sweep_id)
