"""sweepflow's settings: environment variables with the ``SWEEPFLOW_`` prefix, each with a default.

One place for every knob, so the CLI, the backends and the Prefect tasks read the same values, and tests can
shorten the timeouts (a lease TTL of 30 s is right in production and an eternity in a test).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Read from ``SWEEPFLOW_*`` environment variables (e.g. ``SWEEPFLOW_HOME``, ``SWEEPFLOW_LEASE_TTL``)."""

    model_config = SettingsConfigDict(env_prefix="SWEEPFLOW_")

    home: Path = Field(Path("~/.sweepflow"), description="Where the store and run folders live.")
    store_url: str | None = Field(None, description="Database URL of the store (default: SQLite under `home`).")
    lease_ttl: float = Field(30.0, gt=0, description="Seconds a controller's or agent's lease lasts unrenewed.")
    poll_interval: float = Field(0.02, gt=0, description="Seconds between controller/agent rounds.")
    stop_grace: float = Field(
        30.0, ge=0, description="Seconds a stopped run has to exit before SIGKILL (W&B's agent: 30)."
    )
    term_grace: float = Field(
        5.0, ge=0, description="Seconds after SIGTERM before SIGKILL, for a run first sent SIGINT to keep its history."
    )
    max_consecutive_failures: int = Field(
        0,
        ge=0,
        description="An agent quits after this many failed runs in a row, as wandb.agent(max_consecutive_failed_runs=)"
        " (0: off, W&B's default; W&B's own quitting rules always apply).",
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def runs_dir(self) -> Path:
        return self.home_dir / "runs"

    @property
    def url(self) -> str:
        return self.store_url or f"sqlite:///{self.home_dir / 'sweepflow.db'}"
