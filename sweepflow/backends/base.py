"""The one interface every backend implements: the embedded engine on this machine, and (next) W&B.

Flows depend on this module only, so a campaign runs unchanged on either backend. The contract:

- ``check`` says, before anything is created, whether this backend can drive a config (a method it has no
  engine for, a job it cannot find): :class:`~sweepflow.errors.SweepflowError` with the field and the fix.
- ``launch`` is the whole contract of starting a sweep: it checks, then gets or creates on an idempotency key.
  Calling it twice, from two processes, or again after a crash between "created" and "recorded" returns the
  same sweep and never starts a second one. An ended sweep with that key is returned as it is; a paused one is
  resumed. Everything a run needs travels in the config (its folder included, see ``SweepConfig.source_dir``).
- ``status`` and ``runs`` are cheap reads, safe to poll.
- Errors a user can cause derive from :class:`~sweepflow.errors.SweepflowError`; :class:`TransientBackendError`
  marks those worth retrying as is (a busy database, a network blip).

States are W&B's own (:mod:`sweepflow.states`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sweepflow.config import SweepConfig
from sweepflow.errors import SweepflowError
from sweepflow.states import RunState, SweepState
from sweepflow.warm_start import PriorRun

__all__ = ["Backend", "PriorRun", "RunRecord", "SweepHandle", "SweepNotFound", "SweepStatus", "TransientBackendError"]

SweepAction = Literal["pause", "resume", "stop", "cancel"]


class TransientBackendError(SweepflowError):
    """A failure worth retrying as is (the backend was busy or briefly unreachable)."""


class SweepNotFound(SweepflowError):
    """No sweep with that id."""


class RunRecord(BaseModel):
    """One run of a sweep, as every backend reports it."""

    # A config or metric may be inf or NaN; JSON output writes them as Python and W&B do (Infinity, NaN), not null.
    model_config = ConfigDict(ser_json_inf_nan="constants")

    id: str
    sweep_id: str
    state: RunState
    config: dict[str, Any] = Field(description="Parameter -> value (nested parameters stay nested).")
    wandb_config: dict[str, Any] | None = Field(
        None,
        description="The config the run recorded (its whole `wandb.config`: the script's own keys and the sweep's "
        "parameters), as W&B's API reports `run.config`; None before the run wrote one.",
    )
    summary: dict[str, Any] = Field(default_factory=dict, description="Metric -> last/summary value.")
    exit_code: int | None = None
    stop_reason: str | None = Field(None, description="Why the run was stopped (e.g. Hyperband) or failed.")
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
    """A sweep's state at one instant: what a progress bar or a sensor needs, counted once here."""

    id: str
    state: SweepState
    reason: str | None = Field(None, description="Why the sweep is in this state (cap reached, stopped, ...).")
    counts: dict[RunState, int] = Field(default_factory=dict, description="Runs per state (states with runs).")
    run_cap: int | None = None
    best_run_id: str | None = None
    best_value: float | None = None
    metric: str | None = None
    cost_usd: float = 0.0

    @property
    def done(self) -> bool:
        return self.state.is_terminal

    @property
    def total_runs(self) -> int:
        return sum(self.counts.values())

    @property
    def in_flight(self) -> int:
        """Runs pending or running."""
        return sum(n for state, n in self.counts.items() if state.in_flight)

    @property
    def ended(self) -> int:
        """Runs that reached a terminal state."""
        return self.total_runs - self.in_flight


class SweepHandle(BaseModel):
    """What ``launch`` returns: the sweep's id, and whether this call created it."""

    id: str
    key: str | None = None
    created: bool
    state: SweepState


class Backend(ABC):
    """Create, drive and read sweeps. See the module docstring for the contract."""

    name: str

    @abstractmethod
    def check(self, config: SweepConfig) -> None:
        """Raise :class:`~sweepflow.errors.SweepflowError` (field and fix) if this backend cannot drive ``config``."""

    @abstractmethod
    def launch(
        self,
        config: SweepConfig,
        *,
        key: str | None = None,
        project: str | None = None,
        queue: str | None = None,
        prior_runs: Sequence[PriorRun] = (),
    ) -> SweepHandle:
        """Check, then create the sweep for ``key`` or return the existing one, and make sure it is driven."""

    @abstractmethod
    def status(self, sweep_id: str) -> SweepStatus:
        """The sweep's state, run counts, best run and cost."""

    @abstractmethod
    def runs(self, sweep_id: str) -> list[RunRecord]:
        """Every run of the sweep, oldest first."""

    def ensure_driven(self, sweep_id: str) -> None:  # noqa: B027  a no-op where the backend drives itself
        """Make sure something drives the sweep (a sensor calls this while it waits); W&B's cloud needs nothing."""

    @abstractmethod
    def set_state(self, sweep_id: str, action: SweepAction) -> SweepStatus:
        """As ``wandb sweep --pause/--resume/--stop/--cancel``: pause (no new runs), resume, stop (no new runs,
        running runs finish; ends ``finished``) or cancel (running runs are killed; ends ``canceled``)."""
