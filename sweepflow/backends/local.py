"""The embedded backend: W&B's search engine, a queue and agents on this machine, no account, no network.

``launch`` is get-or-create in the store on the stage's key, then makes sure a controller drives the sweep: a
detached ``sweepflow controller ID`` process (its own session, so it outlives the flow or CLI that launched it),
unless a live controller already holds the sweep's lease. That controller also runs an embedded agent pool with
``num_workers`` slots when no live agent serves the queue. :func:`drive` is the loop either runs.
"""

from __future__ import annotations

import functools
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, ParamSpec, TypeVar

from sqlalchemy.exc import OperationalError

from sweepflow.backends.base import (
    Backend,
    PriorRun,
    RunRecord,
    SweepAction,
    SweepHandle,
    SweepNotFound,
    SweepStatus,
    TransientBackendError,
)
from sweepflow.config import SweepConfig
from sweepflow.errors import Issue, SweepflowError
from sweepflow.local.command import JobError, ResolvedJob
from sweepflow.local.drive import DEFAULT_QUEUE
from sweepflow.local.processes import owner_is_dead, uninterrupted
from sweepflow.local.registry import resolve_program
from sweepflow.local.search import engine_problems
from sweepflow.local.tally import RunTally
from sweepflow.local.txlog import RunLog, TransactionLogError, find_run_file
from sweepflow.private import private_dir
from sweepflow.settings import Settings
from sweepflow.states import RunState, SweepState
from sweepflow.store import Run, Store, Sweep, get_store

#: States a re-launch or ``--resume`` moves back to running (W&B resumes any sweep; an ended one simply ends
#: again at once if its cap is reached or its space is used up).
_RESUMABLE = (SweepState.PAUSED, SweepState.FAILED, SweepState.FINISHED, SweepState.CANCELED)
#: States a re-launch of the same key resumes by itself: a paused sweep, or one that failed (its runs kept
#: failing) and is launched again after a fix. A finished or canceled one is returned as it is.
_RELAUNCH_RESUMES = (SweepState.PAUSED, SweepState.FAILED)

#: The controllers this process started for each (store, sweep) and that may still live, shared by every backend
#: object of the process (a flow's launch and wait tasks each open their own).
_SPAWNED: dict[tuple[str, str], list[subprocess.Popen[bytes]]] = {}
_SPAWN_LOCK = threading.Lock()

P = ParamSpec("P")
R = TypeVar("R")


def _transient(method: Callable[P, R]) -> Callable[P, R]:
    """SQLite busy / locked at the seam is a :class:`TransientBackendError`: the caller may retry it as is."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except OperationalError as exc:
            text = str(exc.orig or exc).lower()
            if "locked" in text or "busy" in text:
                raise TransientBackendError(f"the store is busy ({exc.orig}); try again.") from exc
            raise

    return wrapper


def check_local(config: SweepConfig) -> list[Issue]:
    """What stops the local backend from running ``config``: a method it has no engine for, a program or job
    it cannot find. Reads files only (the job registry), so ``sweepflow validate`` can call it too."""
    return _inspect(config)[0]


def _inspect(config: SweepConfig) -> tuple[list[Issue], ResolvedJob | None]:
    """The problems of ``config`` for this backend, and what its runs execute (when that could be resolved)."""
    problems = engine_problems(config)
    try:
        job = resolve_program(config, config.folder)
    except JobError as exc:
        return [*problems, Issue("", str(exc))], None
    return problems, job


#: What a sweep searches: fixed for its lifetime, as in W&B (a changed space under the same key is an error).
SEARCH_FIELDS = ("method", "metric", "parameters", "early_terminate")


def _leaves(prefix: str, value: object) -> dict[str, object]:
    if isinstance(value, dict) and value:
        out: dict[str, object] = {}
        for key, item in value.items():
            out |= _leaves(f"{prefix}.{key}" if prefix else str(key), item)
        return out
    return {prefix: value}


def search_changes(before: dict, after: dict) -> list[str]:
    """The search fields that differ between two stored configs, as ``path (old -> new)``."""
    changes = []
    for field in SEARCH_FIELDS:
        old, new = _leaves(field, before.get(field)), _leaves(field, after.get(field))
        for path in sorted(set(old) | set(new)):
            if old.get(path) != new.get(path):
                changes.append(f"{path} ({old.get(path, 'unset')!r} -> {new.get(path, 'unset')!r})")
    return changes


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def run_record(run: Run, wandb_config: dict | None = None) -> RunRecord:
    return RunRecord(
        id=run.id,
        sweep_id=run.sweep_id,
        state=run.state,
        config=run.config,
        wandb_config=wandb_config,
        summary=run.summary,
        exit_code=run.exit_code,
        stop_reason=run.stop_reason,
        queued_at=_time(run.queued_at),
        started_at=_time(run.started_at),
        ended_at=_time(run.ended_at),
        cost_usd=run.cost_usd or 0.0,
    )


class LocalBackend(Backend):
    """Sweeps run by the embedded engine, state kept in the store (``$SWEEPFLOW_HOME/sweepflow.db``)."""

    name = "local"

    def __init__(self, store: Store | str | None = None, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.store = get_store(store if store is not None else self.settings.url)
        self._tallies: dict[str, RunTally] = {}  # status() of each sweep asked about

    # -- Backend --------------------------------------------------------------------------------------------

    def check(self, config: SweepConfig) -> None:
        self._checked_job(config)

    def _checked_job(self, config: SweepConfig) -> ResolvedJob:
        problems, job = _inspect(config)
        if problems or job is None:
            raise SweepflowError("the local backend cannot run this sweep: " + "; ".join(map(str, problems)))
        return job

    @_transient
    def launch(
        self,
        config: SweepConfig,
        *,
        key: str | None = None,
        project: str | None = None,
        queue: str | None = None,
        prior_runs: Sequence[PriorRun] = (),
        drive: Literal["process", "none"] = "process",
    ) -> SweepHandle:
        """Check, get or create the sweep for ``key`` (resuming a paused or failed one), then make sure it is
        driven (``drive="none"``: the caller drives it, as ``launch-sweep --wait`` does).

        The program or job is resolved first, so an unknown job or a missing script is an error before
        anything is created or queued.
        """
        job = self._checked_job(config)
        stored = config.to_wandb()
        if job.program is not None:
            stored["program"] = str(job.program)
        if job.command and not config.command:
            stored["command"] = list(job.command)
        stored["queue"] = queue or config.launch_queue or DEFAULT_QUEUE
        # The search seed is recorded with the sweep, so every controller that ever drives it draws the same.
        stored["seed"] = config.search_seed if config.search_seed is not None else secrets.randbits(32)
        self.store.ensure_queue(stored["queue"])
        priors = [p.model_dump(mode="json") for p in prior_runs] or None
        sweep, created = self.store.create_sweep(
            key, project or config.project or "sweepflow", stored, run_cap=config.run_cap, prior_runs=priors
        )
        if not created:
            sweep = self._relaunch(sweep, stored, config.run_cap)
        if not created and sweep.state in _RELAUNCH_RESUMES:
            resumed = self.store.set_sweep_state(sweep.id, SweepState.RUNNING, "resumed", expect=_RELAUNCH_RESUMES)
            sweep = resumed or sweep
        if drive == "process":
            self.ensure_controller(sweep.id)
        return SweepHandle(id=sweep.id, key=sweep.key, created=created, state=self._sweep(sweep.id).state)

    def _relaunch(self, sweep: Sweep, stored: dict, run_cap: int | None) -> Sweep:
        """W&B's resume rules for a launch under an existing key: the search (:data:`SEARCH_FIELDS`) must be
        what the sweep was launched with; scheduler settings (run cap, parallelism, queue) may change and take
        effect: the run cap at the controller's next tick (a sweep that ended on its cap resumes when the cap
        grows), parallelism and queue when its controller next starts."""
        changed = search_changes(sweep.config, stored)
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            raise SweepflowError(
                f"the sweep of key {sweep.key!r} ({sweep.id}) was launched with a different search space: {shown}. "
                "Fix: use a new campaign key to search a new space (run_cap, num_workers and queue may change "
                "under the same key)."
            )
        if stored == sweep.config and run_cap == sweep.run_cap:
            return sweep
        grew = run_cap is None or (sweep.run_cap is not None and run_cap > sweep.run_cap)
        sweep = self.store.update_sweep(sweep.id, stored, run_cap=run_cap)
        if grew and sweep.state is SweepState.FINISHED and (sweep.state_reason or "").startswith("run_cap"):
            sweep = (
                self.store.set_sweep_state(
                    sweep.id, SweepState.RUNNING, f"resumed: run_cap {run_cap}", expect=[SweepState.FINISHED]
                )
                or sweep
            )
        return sweep

    @_transient
    def status(self, sweep_id: str) -> SweepStatus:
        sweep = self._sweep(sweep_id)
        metric = SweepConfig.model_validate(sweep.config).metric
        # Polled for as long as the sweep runs: a tally kept per sweep reads only the runs written since.
        tally = self._tallies.get(sweep_id)
        if tally is None or tally.metric != metric:  # a resume may have changed the metric: count again
            tally = self._tallies[sweep_id] = RunTally(self.store, sweep_id, metric)
        tally.refresh()
        found = tally.best
        return SweepStatus(
            id=sweep.id,
            state=sweep.state,
            reason=sweep.state_reason,
            counts={state: tally.counts[state] for state in RunState if tally.counts[state]},
            run_cap=sweep.run_cap,
            best_run_id=found[0] if found else None,
            best_value=found[1] if found else None,
            metric=metric.name if metric else None,
            cost_usd=tally.cost_usd,
        )

    @_transient
    def runs(self, sweep_id: str) -> list[RunRecord]:
        """Every run, with the config it recorded read from its own run log (as W&B's API reports it)."""
        self._sweep(sweep_id)
        return [run_record(r, self._recorded_config(r)) for r in self.store.runs(sweep_id)]

    def _recorded_config(self, run: Run) -> dict | None:
        path = find_run_file(self.settings.runs_dir / run.sweep_id / run.id, run.id)
        if path is None or run.state.in_flight:
            return None
        try:
            return RunLog.read(path).config or None
        except (OSError, TransactionLogError):
            return None

    @_transient
    def set_state(self, sweep_id: str, action: SweepAction) -> SweepStatus:
        """As ``wandb sweep``: pause and stop/cancel need a live sweep; resume works on any but a running one."""
        sweep = self._sweep(sweep_id)
        if action == "resume":
            self.resume(sweep_id)
        elif sweep.state.is_terminal:
            raise SweepflowError(f"sweep {sweep_id} is already {sweep.state}; `--resume` it first.")
        elif action == "pause" and sweep.state is SweepState.PAUSED:
            raise SweepflowError(f"sweep {sweep_id} is already paused.")
        else:
            state = {"pause": SweepState.PAUSED, "stop": SweepState.FINISHED, "cancel": SweepState.CANCELED}[action]
            self.store.set_sweep_state(sweep_id, state, f"{action} requested")
        return self.status(sweep_id)

    def resume(self, sweep_id: str, *, drive: Literal["process", "none"] = "process") -> None:
        """Resume any sweep but a running one, as W&B does (an ended one ends again at once if nothing is left).

        A running sweep whose controller died (``kill -9`` of ``launch-sweep --wait`` or of its controller: the
        lease names a dead process, or lapsed) is not running: it is driven again, from where it stopped.
        """
        sweep = self._sweep(sweep_id)
        if sweep.state in (SweepState.RUNNING, SweepState.PENDING):
            if sweep.lease_owner is None or self.controller_alive(sweep_id):
                raise SweepflowError(f"cannot resume sweep {sweep_id}: it is already running.")
            if drive == "process":
                self.ensure_controller(sweep_id)
            return
        self.store.set_sweep_state(sweep_id, SweepState.RUNNING, "resumed", expect=_RESUMABLE)
        if drive == "process":
            self.ensure_controller(sweep_id)

    # -- driving --------------------------------------------------------------------------------------------

    @_transient
    def ensure_driven(self, sweep_id: str) -> None:
        self.ensure_controller(sweep_id)

    def controller_alive(self, sweep_id: str) -> bool:
        """A controller holds a live lease and (if it runs on this host) its process exists."""
        sweep = self._sweep(sweep_id)
        held = sweep.lease_owner is not None and (sweep.lease_expires_at or 0) > time.time()
        return held and not owner_is_dead(sweep.lease_owner)

    def ensure_controller(self, sweep_id: str) -> bool:
        """Start a detached controller process unless the sweep has ended or one is there already: a live one
        drives it (with its own standby, see :meth:`ensure_standby`), or the one this process started is still
        alive (starting up: it takes the lease within seconds, from a dead holder at once)."""
        sweep = self._sweep(sweep_id)
        if sweep.state.is_terminal:
            return False
        with _SPAWN_LOCK:
            ours = self._spawned(sweep_id)
            if ours or self.controller_alive(sweep_id):
                return False
            ours.append(self._spawn_controller(sweep_id, standby=False))
        return True

    def ensure_standby(self, sweep_id: str) -> bool:
        """Start a controller that stands by for the one driving ``sweep_id`` in this process (``sweepflow
        controller`` waits on its pidfd, loading the engine, and takes over the moment it dies), unless the one this
        process started is still alive. The driving loop calls it (see :func:`sweepflow.local.drive.drive`), so a
        standby that took over starts its own at once."""
        with _SPAWN_LOCK, uninterrupted():  # a Ctrl-C right after the start must not leave a standby unknown
            ours = self._spawned(sweep_id)
            if ours:
                return False
            ours.append(self._spawn_controller(sweep_id, standby=True))
        return True

    def _spawned(self, sweep_id: str) -> list[subprocess.Popen[bytes]]:
        """The live controllers this process started for ``sweep_id`` (call under the lock); ended ones of any
        sweep are reaped here, so no zombie outlives the next call."""
        for key in list(_SPAWNED):
            _SPAWNED[key] = [p for p in _SPAWNED[key] if p.poll() is None]
        return _SPAWNED.setdefault((self.store.url, sweep_id), [])

    def _spawn_controller(self, sweep_id: str, *, standby: bool) -> subprocess.Popen[bytes]:
        log_dir = self.settings.runs_dir / sweep_id
        private_dir(log_dir)
        argv = [sys.executable, "-m", "sweepflow", "controller", sweep_id, "--store", self.store.url]
        argv += ["--standby"] if standby else []
        with open(log_dir / "controller.log", "ab") as log:
            # Its own session: it outlives the flow, CLI or controller that started it. It stays that process's
            # child, so a dead one is known at once and replaced without waiting.
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop_standby(self, sweep_id: str) -> None:
        """Stop the controllers this process started for ``sweep_id`` (the standby of a foreground loop that is
        letting the sweep go on purpose) and wait for them: none may take the sweep over afterwards."""
        with _SPAWN_LOCK:
            ours = _SPAWNED.pop((self.store.url, sweep_id), [])
        for proc in ours:
            proc.terminate()
        for proc in ours:
            try:
                proc.wait(timeout=self.settings.term_grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _sweep(self, sweep_id: str) -> Sweep:
        sweep = self.store.get_sweep(sweep_id)
        if sweep is None:
            raise SweepNotFound(f"no sweep {sweep_id!r} in {self.store.url}; `sweepflow sweeps` lists them.")
        return sweep
