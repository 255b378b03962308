"""sweepflow's settings: environment variables with the ``SWEEPFLOW_`` prefix, each with a default.

One place for every knob, so the CLI, the backends and the Prefect tasks read the same values, and tests can
shorten the timeouts (a lease TTL of 30 s is right in production and an eternity in a test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sweepflow.errors import SweepflowError


class SettingsError(SweepflowError):
    """A ``SWEEPFLOW_*`` variable has a value sweepflow cannot use."""


class Settings(BaseSettings):
    """Read from ``SWEEPFLOW_*`` environment variables (e.g. ``SWEEPFLOW_HOME``, ``SWEEPFLOW_LEASE_TTL``)."""

    model_config = SettingsConfigDict(env_prefix="SWEEPFLOW_")

    home: Path = Field(Path("~/.sweepflow"), description="Where the store and run folders live.")
    store_url: str | None = Field(None, description="Database URL of the store (default: SQLite under `home`).")
    lease_ttl: float = Field(30.0, gt=0, description="Seconds a controller's or agent's lease lasts unrenewed.")
    poll_interval: float = Field(
        0.02,
        gt=0,
        description=(
            "Seconds between a waiting loop's checks for changes other processes made to the store (one cheap "
            "`PRAGMA data_version`, no transaction); a run's exit wakes the loop at once, without polling."
        ),
    )
    report_interval: float = Field(
        1.0,
        gt=0,
        description=(
            "Seconds between reads of running runs' metrics into the store (what Hyperband and metric.target "
            "see); wandb brings logged rows to disk about once a second, so reading more often finds nothing new."
        ),
    )
    lease_renew_fraction: float = Field(
        1 / 3,
        gt=0,
        lt=1,
        description=(
            "Renew leases (controller, agent heartbeats) and reap expired ones every `lease_ttl` times this: "
            "a dead agent's run is declared crashed within `lease_ttl * (1 + lease_renew_fraction)`."
        ),
    )
    lookahead: int = Field(
        1,
        ge=0,
        description=(
            "Runs a grid or random sweep keeps queued beyond its `num_workers` (within `run_cap`), so a freed "
            "slot starts the next run without waiting for a suggestion; 0 turns it off. Bayes sweeps never "
            "look ahead: their next suggestion depends on the latest results."
        ),
    )
    stop_grace: float = Field(
        30.0, ge=0, description="Seconds a stopped run has to exit before SIGKILL (W&B's agent: 30)."
    )
    term_grace: float = Field(
        5.0, ge=0, description="Seconds after SIGTERM before SIGKILL, for a run first sent SIGINT to keep its history."
    )
    lost_run_retries: int = Field(
        2,
        ge=0,
        description=(
            "Times a run that died with its agent or controller (not through its script) is queued again with the "
            "same config, so a sweep still delivers `run_cap` runs; a run whose script failed counts, as in W&B."
        ),
    )
    standby: bool = Field(
        True,
        description=(
            "Keep a second controller process per sweep a flow or `launch-sweep --wait` drives, waiting (engine "
            "loaded, on the first one's pidfd) to take over the moment it dies: recovery in milliseconds instead of a "
            "new process's start-up, for one idle process per running sweep (~180 MB, the peak RSS of a process with "
            "the drive loop and W&B's engine imported)."
        ),
    )
    max_consecutive_failures: int = Field(
        0,
        ge=0,
        description="An agent quits after this many failed runs in a row, as wandb.agent(max_consecutive_failed_runs=)"
        " (0: off, W&B's default; W&B's own quitting rules always apply).",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:  # one line naming the variable, not a traceback
            problems = "; ".join(
                f"SWEEPFLOW_{'_'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: "
                + e["msg"].removeprefix("Value error, ").lower()
                for e in exc.errors()
            )
            raise SettingsError(f"bad setting: {problems}. Fix: correct or unset the variable.") from None

    @field_validator("home")
    @classmethod
    def _home_is_a_folder(cls, home: Path) -> Path:
        if home.expanduser().exists() and not home.expanduser().is_dir():
            raise ValueError("is a file, not a folder")
        return home

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def runs_dir(self) -> Path:
        return self.home_dir / "runs"

    @property
    def url(self) -> str:
        return self.store_url or f"sqlite:///{self.home_dir / 'sweepflow.db'}"


#: Every setting at its default, without reading the environment: the one place the loop classes take their
#: default timings from, so a default is written once (in the fields above).
DEFAULTS = Settings.model_construct()
