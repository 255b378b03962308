"""The launch agent of the embedded backend: claims queued runs and runs them, like ``wandb launch-agent``.

An agent serves one queue with ``max_jobs`` slots. Each :meth:`Agent.tick` (non-blocking, so tests and the
embedded pool can drive it) reports metrics of running runs into the store, heartbeats its leases, acts on stop
requests, records how finished runs ended, and claims new work. An agent that dies stops heartbeating; its leases
expire and the store marks its runs crashed, and the kernel kills its run processes with it (parent-death signal)
so no orphan keeps training unobserved.

An agent quits as W&B's agent does (``wandb/wandb_agent.py``, ``Agent._run_loop``), counting runs whose *process*
exited with a code > 0 (a death by signal does not count): "flapping", 3 such failures within its first 60 s
(off with ``WANDB_AGENT_DISABLE_FLAPPING=true``), or "failing", ``WANDB_AGENT_MAX_INITIAL_FAILURES`` (default 5)
failures or more and no fewer failures than runs ended before them; plus ``max_consecutive_failed_runs``, the
``wandb.agent`` argument (off by default). It then stops its running runs and sets :attr:`Agent.quit_reason`;
the sweep is not failed by it.
"""

from __future__ import annotations

import math
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sweepflow.config import SweepConfig
from sweepflow.local.command import JobError, ResolvedJob, build_command
from sweepflow.local.outcome import end_state
from sweepflow.local.processes import die_with_parent
from sweepflow.local.runner import RunProcess, RunSpec
from sweepflow.store import Claim, Store


@dataclass
class _Active:
    claim: Claim
    proc: RunProcess
    stop_reason: str | None = None
    rows_seen: int = 0


class Agent:
    """Runs the runs of one queue, ``max_jobs`` at a time."""

    def __init__(
        self,
        store: Store,
        queue: str,
        *,
        runs_dir: Path,
        max_jobs: int = 1,
        lease_ttl: float = 30.0,
        stop_grace: float = 30.0,
        term_grace: float = 5.0,
        agent_id: str | None = None,
        cwd: Path | None = None,
        max_consecutive_failed_runs: int = 0,
    ):
        self.store = store
        self.queue = queue
        self.runs_dir = runs_dir
        self.max_jobs = max_jobs
        self.lease_ttl = lease_ttl
        self.stop_grace, self.term_grace = stop_grace, term_grace
        self.cwd = cwd
        self.id = store.register_agent(queue, max_jobs=max_jobs, agent_id=agent_id).id
        self.active: dict[int, _Active] = {}
        self.started = 0
        self.dispatch_latencies: list[float] = []  # slot freed -> next run started, seconds (for bench/)
        self._slots_freed_at: list[float] = []  # one entry per freed slot, oldest first
        # W&B's agent's failure policy (see the module docstring)
        self.started_at = time.time()
        self.max_consecutive_failed_runs = max_consecutive_failed_runs
        self._ended = self._failed = self._consecutive_failed = 0
        self.quit_reason: str | None = None

    def tick(self, now: float | None = None, *, claim: bool = True) -> None:
        """One round: report, heartbeat, stop, reap finished processes, claim new runs (unless ``claim=False``)."""
        now = time.time() if now is None else now
        for item_id, active in list(self.active.items()):
            self._report(item_id, active)
            active.proc.advance_stop(now=now)
            code = active.proc.returncode()
            if code is not None:
                self._finish(item_id, active, code, now)
        beat = self.store.heartbeat(self.id, list(self.active), ttl=self.lease_ttl, now=now)
        for item_id in beat.lost:
            if item_id in self.active:  # our lease was reaped: the outcome will not be recorded, stop at once
                lost = self.active.pop(item_id).proc
                lost.stop(grace=0.5, term_grace=0.5)
                lost.close()
        for item_id, reason in beat.stop.items():
            active = self.active.get(item_id)
            if active is not None and not active.proc.stopping:
                active.stop_reason = reason
                active.proc.begin_stop(self.stop_grace, self.term_grace, now=now)
        while claim and self.quit_reason is None and len(self.active) < self.max_jobs:
            got = self.store.claim_next(self.queue, self.id, lease_ttl=self.lease_ttl, now=now)
            if got is None:
                break
            self._start(got, now)

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s, waking at once when a run's process exits (so its slot is refilled now)."""
        fds = [a.proc.exit_fd for a in self.active.values() if a.proc.exit_fd is not None]
        if fds:
            select.select(fds, [], [], timeout)
        else:
            time.sleep(timeout)

    @property
    def busy(self) -> bool:
        return bool(self.active)

    def _report(self, item_id: int, active: _Active) -> None:
        rows = active.proc.poll_rows()
        if rows:
            rows = [r for r in rows if isinstance(r.get("_step"), int)]
            self.store.append_history(active.claim.run.id, rows, summary=active.proc.summary, item_id=item_id)

    def _finish(self, item_id: int, active: _Active, code: int, now: float) -> None:
        self._report(item_id, active)
        log = active.proc.final_log()
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
        self._slots_freed_at.append(time.perf_counter())
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
        elif failed and self._failed >= 3 and _flapping_on() and now < self.started_at + 60:
            self.quit_reason = (
                f"{self._failed} failed runs in the agent's first 60 s (W&B's agent quits on that; "
                "WANDB_AGENT_DISABLE_FLAPPING=true turns the rule off)"
            )
        elif failed and self._failed >= ended_before and self._failed >= _max_initial():
            self.quit_reason = (
                f"{self._failed} of the {self._ended} runs it ran failed (W&B's agent quits at "
                "WANDB_AGENT_MAX_INITIAL_FAILURES failures, default 5, once they are no fewer than the runs before)"
            )

    def _start(self, claim: Claim, now: float) -> None:
        run = claim.run
        sweep = self.store.get_sweep(run.sweep_id)
        assert sweep is not None
        config = SweepConfig.model_validate(sweep.config)
        run_dir = self.runs_dir / sweep.id / run.id
        try:
            job = ResolvedJob(program=Path(config.program) if config.program else None)
            argv = build_command(config, run.config, job=job, work_dir=run_dir)
        except JobError as exc:
            if self.store.mark_run_started(run.id, self.id, item_id=claim.item.id, now=now):
                self.store.mark_run_finished(run.id, "failed", stop_reason=str(exc), item_id=claim.item.id, now=now)
            return
        if self.store.mark_run_started(run.id, self.id, item_id=claim.item.id, now=now) is None:
            return  # the claim went away (sweep ended, lease reaped) between claim and start
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
        self.active[claim.item.id] = _Active(claim, RunProcess.start(spec, preexec_fn=preexec))
        self.started += 1
        if self._slots_freed_at:
            self.dispatch_latencies.append(time.perf_counter() - self._slots_freed_at.pop(0))

    def shutdown(self, reason: str = "agent shut down", *, hurry: Callable[[], bool] | None = None) -> None:
        """Stop every run at once as W&B's agent stops runs, record how each ended, and leave the queue.

        ``hurry`` (e.g. "a second SIGTERM came") skips the remaining grace: the runs are killed.
        """
        for active in self.active.values():
            active.stop_reason = active.stop_reason or reason
            active.proc.begin_stop(self.stop_grace, self.term_grace)
        while self.active:
            now = time.time()
            for item_id, active in list(self.active.items()):
                if hurry is not None and hurry():
                    active.proc.advance_stop(now=math.inf)
                active.proc.advance_stop(now=now)
                code = active.proc.returncode()
                if code is not None:
                    self._finish(item_id, active, code, now)
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
