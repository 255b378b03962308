"""The launch agent of the embedded backend: claims queued runs and runs them, like ``wandb launch-agent``.

An agent serves one queue with ``max_jobs`` slots. Each :meth:`Agent.tick` (non-blocking, so tests and the
embedded pool can drive it with ``now`` passed in) records how finished runs ended, claims new work, and, when
they are due, reports metrics of running runs into the store and heartbeats its leases (which also brings stop
requests). An agent that dies takes its run processes with it (parent-death signal), so no orphan keeps training
unobserved; the controller's reaper (:mod:`sweepflow.local.reaper`) settles its runs, at once on this machine, when
its leases expire elsewhere. A re-queued run's earlier attempt keeps its files (``wandb.attempt-N``).

A tick only touches the store for what is due: a heartbeat every ``lease_ttl * renew_fraction``, a metrics report
every ``report_interval``, a claim when a slot is free. A loop sleeps in :meth:`Agent.wait` until
:attr:`Agent.next_due` or until a run's process exits (its pidfd), whichever comes first.

A run whose process has exited frees its slot at once, but its outcome waits for its exit record: wandb-core
writes that from its own process and may land it a moment later (up to ``EXIT_RECORD_WAIT``), and without it a
run that finished would be recorded crashed. The run *settles* meanwhile (its lease held, its exit code already
in the store), so a killed run's replacement starts without waiting for a record that will never come.

An agent quits as W&B's agent does (``wandb/wandb_agent.py``, ``Agent._run_loop``), counting runs whose *process*
exited with a code > 0 (a death by signal does not count): "flapping", 3 such failures within its first 60 s
(off with ``WANDB_AGENT_DISABLE_FLAPPING=true``), or "failing", ``WANDB_AGENT_MAX_INITIAL_FAILURES`` (default 5)
failures or more and no fewer failures than runs ended before them; plus ``max_consecutive_failed_runs``, the
``wandb.agent`` argument (off by default). It then stops its running runs and sets :attr:`Agent.quit_reason`;
the sweep is not failed by it.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sweepflow.config import SweepConfig
from sweepflow.local.command import JobError, ResolvedJob, build_command
from sweepflow.local.outcome import end_state
from sweepflow.local.processes import die_with_parent, uninterrupted
from sweepflow.local.runner import EXIT_RECORD_WAIT, RunProcess, RunSpec
from sweepflow.local.txlog import RunLog
from sweepflow.settings import DEFAULTS
from sweepflow.store import Claim, Store, Sweep


class RunHandle(Protocol):
    """What the agent needs of a started run (:class:`~sweepflow.local.runner.RunProcess`; tests pass a fake)."""

    spec: RunSpec
    started_at: float
    exit_fd: int | None  # readable once the process has exited; None if the platform has no pidfds
    stop_signal: signal.Signals | None  # what a stop sent first (decides finished vs killed, see outcome.py)

    @property
    def summary(self) -> dict[str, Any]: ...
    @property
    def stopping(self) -> bool: ...
    def poll_rows(self) -> list[dict[str, Any]]: ...
    def returncode(self) -> int | None: ...
    def exit_recorded(self) -> bool: ...
    def begin_stop(self, grace: float = ..., term_grace: float = ..., *, now: float | None = ...) -> None: ...
    def advance_stop(self, *, now: float | None = ...) -> None: ...
    def stop(self, grace: float = ..., term_grace: float = ...) -> int: ...
    def close(self) -> None: ...
    def final_log(self, wait: float = ...) -> RunLog | None: ...


#: Starts a run: ``start_run(spec, preexec_fn=...)``; the default is :meth:`RunProcess.start`.
StartRun = Callable[..., RunHandle]
#: Told of what happens to runs: ``on_event(kind, run_id, now)`` with kind ``started`` (process spawned),
#: ``finished`` (outcome recorded, slot free), ``stopping`` (stop begun) or ``lost`` (lease lost, process killed).
OnEvent = Callable[[str, str, float], None]

_SWEEP_CACHE_SIZE = 32  # an agent serving many sweeps keeps the configs of the latest ones
_SETTLE_POLL = 0.05  # seconds between looks at a settling run's log for its exit record


@dataclass
class _Active:
    claim: Claim
    proc: RunHandle
    stop_reason: str | None = None
    rows_seen: int = 0
    code: int | None = None  # the process's exit code once it has exited: the run settles until it is recorded
    settle_by: float = math.inf  # when a settling run is recorded even without its exit record


@dataclass
class AgentTick:
    """What one :meth:`Agent.tick` did (a loop decides from it whether the controller should look now)."""

    finished: int = 0  # runs whose outcome was recorded
    exited: int = 0  # runs whose process exited: their slots are free (their outcome may still be settling)
    started: int = 0
    rows: int = 0  # history rows reported
    lost: int = 0
    stopping: int = 0  # stops begun on request


class Agent:
    """Runs the runs of one queue (or only one sweep's runs on it), ``max_jobs`` at a time."""

    def __init__(
        self,
        store: Store,
        queue: str,
        *,
        runs_dir: Path,
        max_jobs: int = 1,
        lease_ttl: float = DEFAULTS.lease_ttl,
        stop_grace: float = DEFAULTS.stop_grace,
        term_grace: float = DEFAULTS.term_grace,
        agent_id: str | None = None,
        cwd: Path | None = None,
        renew_fraction: float = DEFAULTS.lease_renew_fraction,
        report_interval: float = DEFAULTS.report_interval,
        start_run: StartRun | None = None,
        on_event: OnEvent | None = None,
        max_consecutive_failed_runs: int = DEFAULTS.max_consecutive_failures,
        sweep_id: str | None = None,
    ):
        self.store = store
        self.queue = queue
        self.runs_dir = runs_dir
        self.max_jobs = max_jobs
        self.lease_ttl = lease_ttl
        self.stop_grace, self.term_grace = stop_grace, term_grace
        self.cwd = cwd
        self.beat_every = lease_ttl * renew_fraction
        self.report_interval = report_interval
        self.start_run: StartRun = start_run or RunProcess.start
        self.on_event = on_event
        self.sweep_id = sweep_id  # serve this sweep's runs only (a driver's own agent), else the whole queue
        self.id = store.register_agent(queue, max_jobs=max_jobs, agent_id=agent_id, sweep_id=sweep_id).id
        self.active: dict[int, _Active] = {}
        self.started = 0
        self._beat_at = -math.inf  # the first tick beats
        self._report_at = -math.inf
        self._sweeps: dict[str, tuple[Sweep, SweepConfig]] = {}  # sweep id -> (sweep, validated config)
        # W&B's agent's failure policy (see the module docstring)
        self.started_at: float | None = None  # the first tick's `now`: W&B's flapping rule counts from it
        self.max_consecutive_failed_runs = max_consecutive_failed_runs
        self._ended = self._failed = self._consecutive_failed = 0
        self.quit_reason: str | None = None

    def tick(self, now: float | None = None, *, claim: bool = True, sync: bool = False) -> AgentTick:
        """One round: record ended runs, report and heartbeat when due (or at once with ``sync``, e.g. after
        the store changed), act on stop requests and lost leases, then claim runs for free slots (unless
        ``claim=False``)."""
        now = time.time() if now is None else now
        done = AgentTick()
        if self.started_at is None:
            self.started_at = now
        report = now >= self._report_at
        if report:
            self._report_at = now + self.report_interval
        for item_id, active in list(self.active.items()):
            if report and active.code is None:
                done.rows += self._report(item_id, active)
            with uninterrupted():  # an outcome is recorded and the run let go together
                done.exited += self._exited(item_id, active, now)
                done.finished += self._settled(item_id, active, now)
        if sync or now >= self._beat_at:
            self._beat(now, done)
        while claim and self.quit_reason is None and self.running < self.max_jobs:
            with uninterrupted():  # a run claimed is started and kept, or not claimed: never claimed and dropped
                got = self.store.claim_next(
                    self.queue, self.id, lease_ttl=self.lease_ttl, now=now, sweep_id=self.sweep_id
                )
                if got is None:
                    break
                if self._start(got, now):
                    done.started += 1
                else:
                    done.finished += 1  # it ended without starting (a bad job, or the claim went away)
        return done

    def _beat(self, now: float, done: AgentTick) -> None:
        self._beat_at = now + self.beat_every
        beat = self.store.heartbeat(self.id, list(self.active), ttl=self.lease_ttl, now=now)
        for item_id in beat.lost:
            if item_id in self.active:  # our lease was reaped: the outcome will not be recorded, stop at once
                lost = self.active.pop(item_id)
                if lost.code is None:
                    lost.proc.stop(grace=0.5, term_grace=0.5)
                lost.proc.close()
                done.lost += 1
                self._emit("lost", lost.claim.run.id, now)
        for item_id, reason in beat.stop.items():
            active = self.active.get(item_id)
            if active is not None and active.code is None and not active.proc.stopping:
                active.stop_reason = reason
                active.proc.begin_stop(self.stop_grace, self.term_grace, now=now)
                done.stopping += 1
                self._emit("stopping", active.claim.run.id, now)

    @property
    def next_due(self) -> float:
        """When the agent next has work of its own: a heartbeat, or (with runs in flight) a metrics report,
        which also escalates stops in progress, or a settling run's deadline. A run's exit, and a settling run's
        exit record, come sooner through :meth:`wait`."""
        if not self.active:
            return self._beat_at
        return min(self._beat_at, self._report_at, *(a.settle_by for a in self.active.values()))

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s, waking at once when a run's process exits; True if one did, or if a
        settling run's exit record has landed (looked for every ``_SETTLE_POLL`` s while one settles).

        Runs without a pidfd (not Linux >= 5.3) are polled when the sleep ends, so callers keep ``timeout`` short.
        """
        running = [a for a in self.active.values() if a.code is None]
        settling = [a for a in self.active.values() if a.code is not None]
        if settling:
            timeout = min(timeout, _SETTLE_POLL)
        fds = [a.proc.exit_fd for a in running if a.proc.exit_fd is not None]
        if fds:
            if select.select(fds, [], [], max(0.0, timeout))[0]:
                return True
        else:
            time.sleep(max(0.0, timeout))
        return any(a.proc.exit_fd is None and a.proc.returncode() is not None for a in running) or any(
            a.proc.exit_recorded() for a in settling
        )

    @property
    def busy(self) -> bool:
        return bool(self.active)

    @property
    def running(self) -> int:
        """Slots in use: runs whose process has not exited (a settling run's slot is free)."""
        return sum(a.code is None for a in self.active.values())

    def _emit(self, kind: str, run_id: str, now: float) -> None:
        if self.on_event is not None:
            self.on_event(kind, run_id, now)

    def _report(self, item_id: int, active: _Active) -> int:
        rows = active.proc.poll_rows()
        if rows:
            rows = [r for r in rows if isinstance(r.get("_step"), int)]
            self.store.append_history(active.claim.run.id, rows, summary=active.proc.summary, item_id=item_id)
        return len(rows)

    def _exited(self, item_id: int, active: _Active, now: float) -> bool:
        """Escalate a stop in progress; if the process has exited, start settling the run: True if it just did."""
        if active.code is not None:
            return False
        active.proc.advance_stop(now=now)
        code = active.proc.returncode()
        if code is None:
            return False
        active.code, active.settle_by = code, now + EXIT_RECORD_WAIT
        # Said at once: the controller may fill the slot, and if this agent dies while the exit record is
        # awaited, the reaper knows the run ended on its own.
        self.store.record_exit(active.claim.run.id, code, item_id=item_id)
        self._report(item_id, active)
        return True

    def _settled(self, item_id: int, active: _Active, now: float) -> bool:
        """Record a settling run's outcome once its exit record is in or its time is up: True if it was."""
        if active.code is None or not (active.proc.exit_recorded() or now >= active.settle_by):
            return False
        self._finish(item_id, active, active.code, now)
        return True

    def _finish(self, item_id: int, active: _Active, code: int, now: float) -> None:
        log = active.proc.final_log(wait=0)
        self._report(item_id, active)  # the rows read with the exit record too
        summary = active.proc.summary
        run = active.claim.run
        state = end_state(
            exit_record=log.exit_code if log else None,
            process_code=code,
            stopped=active.stop_reason is not None,
            stop_signal=active.proc.stop_signal,
            preempting=bool(log and log.preempting),
        )
        queue = self.store.get_queue(self.queue)
        runtime = max(0.0, now - active.proc.started_at)
        cost = (queue.cost_per_hour or 0.0) * runtime / 3600.0 if queue else 0.0
        extra = summary.get("gpu_cost_usd")
        if isinstance(extra, int | float):
            cost += float(extra)  # a run may log what its accelerator cost it
        recorded = log.exit_code if log else None
        reason = active.stop_reason
        if reason is None and state.value != "finished":
            reason = f"exit code {code}" + (f", recorded {recorded}" if recorded not in (None, code) else "")
            reason += f"; see {active.proc.spec.run_dir}"
        self.store.mark_run_finished(
            run.id, state, exit_code=code, summary=summary, cost_usd=cost, stop_reason=reason, item_id=item_id, now=now
        )
        del self.active[item_id]
        active.proc.close()
        self._emit("finished", run.id, now)
        self._count_failure(code, now)

    def _count_failure(self, code: int, now: float) -> None:
        """W&B's agent's quitting rules, in its order (``Agent._run_loop``, ``is_flapping``, ``is_failing``)."""
        failed = code > 0
        self._failed += failed
        self._consecutive_failed = self._consecutive_failed + 1 if failed else 0
        ended_before, self._ended = self._ended, self._ended + 1
        if self.quit_reason is not None:
            return
        if self.max_consecutive_failed_runs and self._consecutive_failed >= self.max_consecutive_failed_runs:
            self.quit_reason = f"{self._consecutive_failed} consecutive failed runs"
        elif failed and self._failed >= 3 and _flapping_on() and now < (self.started_at or now) + 60:
            self.quit_reason = (
                f"{self._failed} failed runs in the agent's first 60 s (W&B's agent quits on that; "
                "WANDB_AGENT_DISABLE_FLAPPING=true turns the rule off)"
            )
        elif failed and self._failed >= ended_before and self._failed >= _max_initial():
            self.quit_reason = (
                f"{self._failed} of the {self._ended} runs it ran failed (W&B's agent quits at "
                "WANDB_AGENT_MAX_INITIAL_FAILURES failures, default 5, once they are no fewer than the runs before)"
            )

    def _sweep(self, sweep_id: str) -> tuple[Sweep, SweepConfig]:
        # A sweep's id, project and config never change: read and validate them once per sweep.
        cached = self._sweeps.get(sweep_id)
        if cached is None:
            sweep = self.store.get_sweep(sweep_id)
            assert sweep is not None
            if len(self._sweeps) >= _SWEEP_CACHE_SIZE:
                self._sweeps.pop(next(iter(self._sweeps)))
            cached = self._sweeps[sweep_id] = (sweep, SweepConfig.model_validate(sweep.config))
        return cached

    def _start(self, claim: Claim, now: float) -> bool:
        run = claim.run
        sweep, config = self._sweep(run.sweep_id)
        run_dir = self.runs_dir / sweep.id / run.id
        try:
            job = ResolvedJob(program=Path(config.program) if config.program else None)
            argv = build_command(config, run.config, job=job, work_dir=run_dir)
        except JobError as exc:
            if self.store.mark_run_started(run.id, self.id, item_id=claim.item.id, now=now):
                self.store.mark_run_finished(run.id, "failed", stop_reason=str(exc), item_id=claim.item.id, now=now)
            return False
        if self.store.mark_run_started(run.id, self.id, item_id=claim.item.id, now=now) is None:
            return False  # the claim went away (sweep ended, lease reaped) between claim and start
        if run.attempt > 1:  # a re-queued run: its earlier attempt's log must not pass for this one's
            earlier = run_dir / "wandb"
            with contextlib.suppress(OSError):
                earlier.rename(run_dir / f"wandb.attempt-{run.attempt - 1}")
        argv, preexec = die_with_parent(argv)
        spec = RunSpec(
            run_id=run.id,
            argv=argv,
            params=run.config,
            project=sweep.project,
            run_dir=run_dir,
            sweep_id=sweep.id,
            cwd=self.cwd,
        )
        self.active[claim.item.id] = _Active(claim, self.start_run(spec, preexec_fn=preexec))
        self.started += 1
        self._emit("started", run.id, now)
        return True

    def shutdown(self, reason: str = "agent shut down", *, hurry: Callable[[], bool] | None = None) -> None:
        """Stop every run at once as W&B's agent stops runs, record how each ended, and leave the queue.

        ``hurry`` (e.g. "a second SIGTERM came") skips the remaining grace: the runs are killed.
        """
        for active in self.active.values():
            if active.code is None:
                active.stop_reason = active.stop_reason or reason
                active.proc.begin_stop(self.stop_grace, self.term_grace)
        while self.active:
            now = time.time()
            for item_id, active in list(self.active.items()):
                if hurry is not None and hurry() and active.code is None:
                    active.proc.advance_stop(now=math.inf)
                self._exited(item_id, active, now)
                self._settled(item_id, active, now)
            if self.active:
                self.wait(0.05)
        self.store.deregister_agent(self.id)


def _flapping_on() -> bool:
    return os.environ.get("WANDB_AGENT_DISABLE_FLAPPING") != "true"


def _max_initial() -> int:
    # As wandb.env.get_agent_max_initial_failures: an unparsable value means the default.
    try:
        return int(os.environ.get("WANDB_AGENT_MAX_INITIAL_FAILURES", "5"))
    except ValueError:
        return 5
