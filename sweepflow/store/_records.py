"""What the store hands out: states, priorities and one frozen record per concept, never a raw row.

Records are snapshots: each call returns fresh objects (their dicts included), so a caller mutating a
``config`` dict changes nothing in the store and nothing another caller holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sweepflow.states import REQUEUEABLE, RunState, SweepState
from sweepflow.store._errors import StoreError

__all__ = ["REQUEUEABLE", "RunState", "SweepState"]  # the vocabulary, re-exported for the store's users


class ItemState(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"


#: Named priorities, spaced so that any integer also has a place (higher is served first; medium is 0,
#: so the default sits in the middle and a user's ``5`` means "a bit above normal").
PRIORITIES: dict[str, int] = {"low": -10, "medium": 0, "high": 10, "critical": 20}


def priority_value(priority: int | str) -> int:
    """``low``/``medium``/``high``/``critical`` or any integer (also as a string, e.g. from the CLI) → an int."""
    if isinstance(priority, bool):  # bool is an int subclass; True as a priority is a bug, not 1
        raise StoreError(f"priority must be one of {', '.join(PRIORITIES)} or an integer, not {priority!r}.")
    if isinstance(priority, int):
        return priority
    if isinstance(priority, str):
        name = priority.strip().lower()
        if name in PRIORITIES:
            return PRIORITIES[name]
        try:
            return int(name)
        except ValueError:
            pass
    raise StoreError(f"priority must be one of {', '.join(PRIORITIES)} or an integer, not {priority!r}.")


@dataclass(frozen=True, slots=True)
class Sweep:
    """One sweep. ``key`` is the caller's idempotency key (stage identity); timestamps are Unix seconds."""

    id: str
    key: str | None
    project: str
    config: dict[str, Any]
    state: SweepState
    state_reason: str | None
    run_cap: int | None
    created_at: float
    updated_at: float
    lease_owner: str | None
    lease_expires_at: float | None
    prior_runs: list[Any] | None


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a sweep. ``number`` counts the sweep's runs from 1 (the order they were added in).

    ``stop_requested`` holds the reason a stop was asked for while the run was running (the agent acts on
    it); ``stop_reason`` is why it actually ended, when it did not end on its own.
    """

    id: str
    sweep_id: str
    number: int
    queue: str
    config: dict[str, Any]
    config_hash: str
    state: RunState
    attempt: int
    exit_code: int | None
    summary: dict[str, Any]
    stop_reason: str | None
    stop_requested: str | None
    agent_id: str | None
    queued_at: float
    started_at: float | None
    ended_at: float | None
    cost_usd: float | None
    search_info: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One entry in a queue: a run waiting (pending), leased to an agent (claimed), or done."""

    id: int
    queue: str
    run_id: str
    priority: int
    enqueued_at: float
    state: ItemState
    claimed_by: str | None
    claimed_at: float | None
    lease_expires_at: float | None


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    priority: int
    cost_per_hour: float | None
    resource_args: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    queue: str
    pid: int | None
    host: str | None
    max_jobs: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    sweep_id: str | None  # it serves this sweep's runs only (a driver's embedded agent); None: its whole queue


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`Store.claim_next` hands an agent: the leased item and the run to start."""

    item: QueueItem
    run: Run


@dataclass(frozen=True, slots=True)
class RunChanges:
    """What :meth:`Store.run_changes` hands a reader keeping its own copy of a sweep's runs.

    ``runs``: every run new or changed since the reader's last call, by number. ``since``: what the reader passes
    back next time (the highest change counter seen).
    """

    runs: list[Run]
    since: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The answer to an agent's heartbeat, keyed by the item ids it sent.

    ``lost``: items no longer leased to this agent (the lease expired and was reaped, or the item ended):
    the agent must kill those runs, their outcome will not be recorded. ``stop``: items whose run the
    controller asked to stop, with the reason.
    """

    lost: frozenset[int] = frozenset()
    stop: dict[int, str] = field(default_factory=dict)
