"""What became of the runs of an agent that is gone, read from each run's own log.

An agent records how its runs end. When it dies (``kill -9``, or its controller's process, which hosts the
embedded agent, killed), its claims stay held and nobody records them. Two facts tell that it is gone:

* on this machine its process no longer exists: known at once, through a pidfd the :class:`Reaper` watches for
  each agent of this machine running one of the sweep's runs, and checked by pid at every reaping;
* anywhere, its lease expired (``lease_ttl``): the cross-machine case.

A run may have ended before its agent (completed or failed) with only the recording lost. Its exit record,
history and summary are in its transaction log, so the reaper records it as the agent would have
(:func:`sweepflow.local.outcome.end_state`): a completed run stays finished, with its result. A run without an
exit record died with its agent (the parent-death signal kills it), through no fault of its script: it ends
``crashed`` with a reason starting with :data:`AGENT_LOST`, and its controller queues it again with the same
config (:func:`lost_with_agent`), a bounded number of times, so the sweep still delivers ``run_cap`` runs.
"""

from __future__ import annotations

import math
import os
import select
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from sweepflow.local.outcome import end_state
from sweepflow.local.processes import process_gone
from sweepflow.local.runner import EXIT_RECORD_WAIT
from sweepflow.local.txlog import RunLog, TransactionLogError, find_run_file
from sweepflow.states import RunState
from sweepflow.store import LEASE_EXPIRED_REASON, Agent, Claim, Run, Store

#: How the reason of a run that died with its agent begins (the lease-expired reason is one of them).
AGENT_LOST = "agent lost"
assert LEASE_EXPIRED_REASON.startswith(AGENT_LOST)


def lost_with_agent(run: Run) -> bool:
    """Whether ``run`` crashed because its agent died, not because of its script (then it may run again)."""
    return run.state is RunState.CRASHED and (run.stop_reason or "").startswith(AGENT_LOST)


class Reaper:
    """Settles the claims of agents that are gone; watches the agents of this machine so their death is news."""

    def __init__(self, store: Store, runs_dir: Path | None = None):
        self.store = store
        self.runs_dir = runs_dir
        self._agents: dict[str, Agent | None] = {}  # agent id -> its record (None: unknown to the store)
        self._fds: dict[str, int] = {}  # agent id -> pidfd, for live agents of this machine but our own process
        self._servers: dict[str, int] = {}  # agent id -> pidfd, for agents of this machine serving the queue
        self.retry_at = math.inf  # when a claim whose settling had to wait is due again

    def watch(self, runs: Iterable[Run]) -> None:
        """Watch the agents running ``runs`` (those not watched yet: one read per new agent)."""
        for run in runs:
            if run.state is RunState.RUNNING and run.agent_id and run.agent_id not in self._agents:
                agent = self._agents[run.agent_id] = self.store.get_agent(run.agent_id)
                if agent is not None and (fd := _pidfd(agent)) is not None:
                    self._fds[run.agent_id] = fd

    def watch_servers(self, agents: Iterable[Agent]) -> None:
        """Watch the agents of this machine that serve the sweep's queue, also between runs: the death of one that
        runs nothing loses no run but leaves the queue unserved, which the drive loop must know at once (it then
        serves the queue itself) rather than when the agent's replacement starts."""
        for agent in agents:
            if agent.id not in self._servers and (fd := _pidfd(agent)) is not None:
                self._servers[agent.id] = fd

    def agent_died(self) -> bool:
        """Whether a watched agent's process has exited since it was watched (no wait); a dead server is
        reported once."""
        dead = [i for i, fd in self._servers.items() if select.select([fd], [], [], 0)[0]]
        for agent_id in dead:
            os.close(self._servers.pop(agent_id))
        fds = list(self._fds.values())
        return bool(dead) or bool(fds and select.select(fds, [], [], 0)[0])

    def reap(self, now: float) -> list[str]:
        """Settle every claim whose lease expired or whose agent's process is gone; returns the run ids settled."""
        claims = self.store.claims()
        holders = {c.item.claimed_by for c in claims if c.item.claimed_by}
        for agent_id in holders - self._agents.keys():
            self._agents[agent_id] = self.store.get_agent(agent_id)
        dead = {a for a in holders if (agent := self._agents.get(a)) and process_gone(agent.host, agent.pid)}
        settled, self.retry_at = [], math.inf
        for claim in claims:
            lost = claim.item.claimed_by in dead
            if lost or (claim.item.lease_expires_at or 0) < now:
                if self._settle(claim, dead=lost, now=now):
                    settled.append(claim.run.id)
                elif lost:
                    self.retry_at = now + EXIT_RECORD_WAIT
        for agent_id in list(self._agents):
            if agent_id not in holders:
                self._forget(agent_id)  # holds nothing now
            elif agent_id in dead:
                self._close(agent_id)  # its pidfd stays readable: stop waking on it
        return settled

    def close(self) -> None:
        for agent_id in list(self._agents):
            self._forget(agent_id)
        for fd in self._servers.values():
            os.close(fd)
        self._servers.clear()

    def _forget(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)
        self._close(agent_id)

    def _close(self, agent_id: str) -> None:
        fd = self._fds.pop(agent_id, None)
        if fd is not None:
            os.close(fd)

    def _settle(self, claim: Claim, *, dead: bool, now: float) -> bool:
        """Record how the claimed run ended, from its log; False if it must wait or someone else recorded it."""
        run, item_id = claim.run, claim.item.id
        run_dir = self.runs_dir / run.sweep_id / run.id if self.runs_dir else None
        log = _read_log(run_dir, run.id)
        record = log.exit_code if log is not None else None
        ended = run.exit_code is not None  # its agent saw its process exit on its own (Store.record_exit)
        finishing = ended or (log is not None and log.finishing)  # it ended on its own, or was ending
        if finishing and record is None and log is not None and _written_within(log.path, EXIT_RECORD_WAIT):
            return False  # wandb-core may still be writing its exit record (a run killed in wandb's finish)
        stopped = run.stop_requested is not None
        if record is not None or ended:  # it ended on its own: record it as its agent would have
            code = run.exit_code if ended else record
            state = end_state(
                exit_record=record, process_code=code, stopped=stopped, preempting=bool(log and log.preempting)
            )
            if log is not None:
                rows = [r for r in log.history if type(r.get("_step")) is int]
                self.store.append_history(run.id, rows, item_id=item_id)
            reason = None
            if state is not RunState.FINISHED:
                reason = run.stop_requested or f"exit code {code}; see {run_dir}"
                reason += " (recorded by the reaper: its agent ended first)"
            summary = log.summary if log is not None else None
        else:  # it died with its agent (the parent-death signal): through no fault of its own
            agent = self._agents.get(claim.item.claimed_by or "")
            lost = f"{AGENT_LOST} (its process {agent.pid} ended)" if dead and agent else LEASE_EXPIRED_REASON
            state = RunState.KILLED if stopped else RunState.CRASHED
            reason = f"{run.stop_requested}; {lost}" if stopped else lost
            summary = None
        recorded = self.store.mark_run_finished(
            run.id,
            state,
            exit_code=run.exit_code if run.exit_code is not None else record,
            summary=summary,
            stop_reason=reason,
            cost_usd=0.0,  # how long it ran is unknown
            item_id=item_id,
            now=now,
        )
        return recorded is not None


def _pidfd(agent: Agent) -> int | None:
    """A pidfd on ``agent``'s process if it is another process of this machine; None otherwise, or without pidfds,
    or when it is already gone (the reaper's pid check at its next reaping finds it)."""
    if agent.host != socket.gethostname() or agent.pid in (None, os.getpid()):
        return None
    try:
        return os.pidfd_open(agent.pid)
    except (AttributeError, OSError):
        return None


def _read_log(run_dir: Path | None, run_id: str) -> RunLog | None:
    path = find_run_file(run_dir, run_id) if run_dir is not None else None
    if path is None:
        return None
    try:
        return RunLog.read(path)
    except (OSError, TransactionLogError):
        return None


def _written_within(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False
