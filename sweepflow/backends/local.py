"""The embedded backend: W&B's search engine, a queue and agents on this machine, no account, no network.

``launch`` is get-or-create in the store on the stage's key, then makes sure a controller drives the sweep: a
detached ``sweepflow controller ID`` process (its own session, so it outlives the flow or CLI that launched it),
unless a live controller already holds the sweep's lease. That controller also runs an embedded agent pool with
``num_workers`` slots when no live agent serves the queue. :func:`drive` is the loop either runs.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sweepflow.backends.base import Backend, RunRecord, SweepHandle, SweepNotFound, SweepStatus
from sweepflow.config import SweepConfig
from sweepflow.local.drive import DEFAULT_QUEUE
from sweepflow.local.processes import owner_is_dead
from sweepflow.local.registry import resolve_program
from sweepflow.settings import Settings
from sweepflow.store import Run, Store, Sweep, SweepState, get_store

_RESUMABLE = (SweepState.STOPPED, SweepState.FAILED, SweepState.PAUSED)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def run_record(run: Run) -> RunRecord:
    state = {"killed": "stopped", "preempted": "crashed"}.get(run.state.value, run.state.value)
    return RunRecord(
        id=run.id,
        sweep_id=run.sweep_id,
        state=state,
        config=run.config,
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

    def __init__(self, store: Store | str | None = None, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.store = get_store(store if store is not None else self.settings.url)
        self._spawned: dict[str, float] = {}  # sweep id -> when this process last started a controller for it

    # -- Backend --------------------------------------------------------------------------------------------

    def launch(
        self,
        config: SweepConfig,
        *,
        key: str | None = None,
        project: str | None = None,
        queue: str | None = None,
        prior_runs: Sequence[RunRecord] = (),
        config_dir: Path | None = None,
        drive: Literal["process", "none"] = "process",
    ) -> SweepHandle:
        """Get or create the sweep for ``key`` (resuming it if it was stopped), then make sure it is driven.

        The program or job is resolved first, so an unknown job or a missing script is an error before
        anything is created or queued.
        """
        job = resolve_program(config, config_dir or Path.cwd())
        stored = config.to_wandb()
        if job.program is not None:
            stored["program"] = str(job.program)
        if job.command and not config.command:
            stored["command"] = list(job.command)
        stored["queue"] = queue or config.launch_queue or DEFAULT_QUEUE
        self.store.ensure_queue(stored["queue"])
        priors = [{"config": r.config, "summary": r.summary} for r in prior_runs] or None
        sweep, created = self.store.create_sweep(
            key, project or config.project or "sweepflow", stored, run_cap=config.run_cap, prior_runs=priors
        )
        if not created and sweep.state in _RESUMABLE:
            sweep = self.store.set_sweep_state(sweep.id, SweepState.RUNNING, "resumed", expect=_RESUMABLE) or sweep
        if drive == "process":
            self.ensure_controller(sweep.id)
        return SweepHandle(id=sweep.id, key=sweep.key, created=created, state=self._sweep(sweep.id).state.value)

    def status(self, sweep_id: str) -> SweepStatus:
        sweep = self._sweep(sweep_id)
        config = SweepConfig.model_validate(sweep.config)
        runs = self.store.runs(sweep_id)
        best_id, best_value = _best(runs, config)
        return SweepStatus(
            id=sweep.id,
            state=sweep.state.value,
            reason=sweep.state_reason,
            counts={state.value: n for state, n in self.store.counts(sweep_id).items() if n},
            run_cap=sweep.run_cap,
            best_run_id=best_id,
            best_value=best_value,
            metric=config.metric.name if config.metric else None,
            cost_usd=sum(r.cost_usd or 0.0 for r in runs),
        )

    def runs(self, sweep_id: str) -> list[RunRecord]:
        self._sweep(sweep_id)
        return [run_record(r) for r in self.store.runs(sweep_id)]

    def set_state(self, sweep_id: str, action: Literal["pause", "resume", "stop", "cancel"]) -> SweepStatus:
        sweep = self._sweep(sweep_id)
        if action == "resume":
            self.store.set_sweep_state(sweep_id, SweepState.RUNNING, "resumed", expect=_RESUMABLE)
            self.ensure_controller(sweep_id)
        elif not sweep.state.is_terminal:
            state = {"pause": SweepState.PAUSED, "stop": SweepState.STOPPED, "cancel": SweepState.CANCELLED}[action]
            self.store.set_sweep_state(sweep_id, state, f"{action} requested")
        return self.status(sweep_id)

    # -- driving --------------------------------------------------------------------------------------------

    def ensure_driven(self, sweep_id: str) -> None:
        self.ensure_controller(sweep_id)

    def controller_alive(self, sweep_id: str) -> bool:
        """A controller holds a live lease and (if it runs on this host) its process exists."""
        sweep = self._sweep(sweep_id)
        held = sweep.lease_owner is not None and (sweep.lease_expires_at or 0) > time.time()
        return held and not owner_is_dead(sweep.lease_owner)

    def ensure_controller(self, sweep_id: str) -> bool:
        """Start a detached controller process unless the sweep has ended or a live one drives it."""
        sweep = self._sweep(sweep_id)
        if sweep.state.is_terminal or self.controller_alive(sweep_id):
            return False
        if time.time() - self._spawned.get(sweep_id, -math.inf) < 2 * self.settings.lease_ttl:
            return False  # the one we started is still waiting out a dead controller's lease
        self._spawned[sweep_id] = time.time()
        log_dir = self.settings.runs_dir / sweep_id
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "sweepflow", "controller", sweep_id, "--store", self.store.url]
        # `setsid -f` forks and exits at once: the controller is re-parented to init, which reaps it when it
        # dies, so the launching process (a long-lived flow, say) never collects zombies of its controllers.
        setsid = shutil.which("setsid")
        with open(log_dir / "controller.log", "ab") as log:
            launcher = subprocess.Popen(
                [setsid, "-f", *argv] if setsid else argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if setsid:
            launcher.wait(timeout=30)
        return True

    def _sweep(self, sweep_id: str) -> Sweep:
        sweep = self.store.get_sweep(sweep_id)
        if sweep is None:
            raise SweepNotFound(f"no sweep {sweep_id!r} in {self.store.url}; `sweepflow sweeps` lists them.")
        return sweep


def _best(runs: list[Run], config: SweepConfig) -> tuple[str | None, float | None]:
    metric = config.metric
    if metric is None:
        return None, None
    scored = [
        (float(r.summary[metric.name]), r.id)
        for r in runs
        if r.state.value in ("finished", "stopped")
        and isinstance(r.summary.get(metric.name), int | float)
        and math.isfinite(r.summary[metric.name])
    ]
    if not scored:
        return None, None
    value, run_id = (min if metric.goal == "minimize" else max)(scored)
    return run_id, value
