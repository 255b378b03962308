"""The one interface every backend implements: the embedded engine on this machine, and W&B Launch.

Flows depend on this module only, so a campaign runs unchanged on either backend. The contract:

- ``launch`` is get-or-create on an idempotency key: calling it twice, from two processes, or again after a
  crash between "created" and "recorded" returns the same sweep and never starts a second one. A stopped or
  crashed sweep with that key is resumed (its scheduler settings may change, its search space may not).
- ``status`` and ``runs`` are cheap reads, safe to poll.
- Errors a user can cause derive from :class:`~sweepflow.errors.SweepflowError`; :class:`TransientBackendError`
  marks those worth retrying (a busy database, a network blip).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from sweepflow.config import SweepConfig
from sweepflow.errors import SweepflowError

SweepState = Literal["pending", "running", "paused", "finished", "stopped", "cancelled", "failed"]
RunState = Literal["queued", "running", "finished", "failed", "crashed", "stopped"]
TERMINAL_SWEEP_STATES: frozenset[str] = frozenset({"finished", "stopped", "cancelled", "failed"})


class TransientBackendError(SweepflowError):
    """A failure worth retrying as is (the backend was busy or briefly unreachable)."""


class SweepNotFound(SweepflowError):
    """No sweep with that id."""


class RunRecord(BaseModel):
    """One run of a sweep, as every backend reports it."""

    id: str
    sweep_id: str
    state: RunState
    config: dict[str, Any] = Field(description="Parameter -> value (nested parameters stay nested).")
    summary: dict[str, Any] = Field(default_factory=dict, description="Metric -> last/summary value.")
    exit_code: int | None = None
    stop_reason: str | None = Field(None, description="Why the run was stopped early (e.g. Hyperband), if it was.")
    queued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    cost_usd: float = 0.0

    @property
    def runtime_s(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None


class SweepStatus(BaseModel):
    """A sweep's state at one instant: what a progress bar or a sensor needs."""

    id: str
    state: SweepState
    reason: str | None = Field(None, description="Why the sweep is in this state (cap reached, stopped, ...).")
    counts: dict[str, int] = Field(default_factory=dict, description="Runs per state.")
    run_cap: int | None = None
    best_run_id: str | None = None
    best_value: float | None = None
    metric: str | None = None
    cost_usd: float = 0.0

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_SWEEP_STATES

    @property
    def total_runs(self) -> int:
        return sum(self.counts.values())


class SweepHandle(BaseModel):
    """What ``launch`` returns: the sweep's id, and whether this call created it."""

    id: str
    key: str | None = None
    created: bool
    state: SweepState


class Backend(ABC):
    """Create, drive and read sweeps. See the module docstring for the contract."""

    @abstractmethod
    def launch(
        self,
        config: SweepConfig,
        *,
        key: str | None = None,
        project: str | None = None,
        queue: str | None = None,
        prior_runs: Sequence[RunRecord] = (),
    ) -> SweepHandle:
        """Create the sweep for ``key`` or return (and resume) the existing one, and make sure it is driven."""

    @abstractmethod
    def status(self, sweep_id: str) -> SweepStatus:
        """The sweep's state, run counts, best run and cost."""

    @abstractmethod
    def runs(self, sweep_id: str) -> list[RunRecord]:
        """Every run of the sweep, oldest first."""

    def ensure_driven(self, sweep_id: str) -> None:  # noqa: B027  a no-op where the backend drives itself
        """Make sure something drives the sweep (a sensor calls this while it waits); W&B's cloud needs nothing."""

    @abstractmethod
    def set_state(self, sweep_id: str, action: Literal["pause", "resume", "stop", "cancel"]) -> SweepStatus:
        """Pause (no new runs), resume, stop (let running runs finish) or cancel (kill running runs)."""
