"""Warm starts: runs of an earlier sweep that a new sweep's search engine learns from before its first run.

One model travels the whole way: derive picks the runs, ``Backend.launch`` takes them, the store keeps them (as
JSON), and the local controller hands them to W&B's engine (the W&B backend sends them as W&B's ``prior_runs``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PriorRun(BaseModel):
    """A finished run carried into a new sweep as a warm start (W&B's ``prior_runs``): the engine learns from it."""

    config: dict[str, Any] = Field(description="Parameter -> value (nested parameters stay nested).")
    summary: dict[str, Any] = Field(default_factory=dict, description="Metric -> value the run reached.")
    source_run_id: str | None = Field(None, description="The run it came from, for the audit trail.")
