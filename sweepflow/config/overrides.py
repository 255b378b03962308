"""Overrides a person sets when starting a campaign by hand (Prefect's UI renders this model as a form).

They change how much and where a campaign runs, never what it searches: run caps, parallelism, backend,
queue. Applied to every stage (or the listed ones), including stages derived from others.

Unlike a sweep config, an explicit ``null`` here means "not overridden": Prefect's "Custom run" form sends every
field it renders, the untouched ones as ``null``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from sweepflow.config.base import ConfigModel
from sweepflow.config.pipeline import Pipeline
from sweepflow.errors import SweepflowError


class CampaignOverrides(ConfigModel):
    """Run-time knobs for a campaign; every field is optional and leaves the spec's value when unset or null."""

    nullable: ClassVar[frozenset[str]] = frozenset({"run_cap", "num_workers", "backend", "queue", "stages"})

    run_cap: int | None = Field(None, gt=0, le=100_000, description="Run cap of each stage.")
    num_workers: int | None = Field(None, gt=0, le=512, description="Runs in flight at once in each stage.")
    backend: Literal["local", "wandb"] | None = Field(
        None, description="Where the sweeps run (`local`: this machine; `wandb`: W&B sweeps)."
    )
    queue: str | None = Field(None, min_length=1, description="Queue the runs go to.")
    stages: list[str] | None = Field(None, description="Apply only to these stages (default: all).")


def apply_overrides(pipeline: Pipeline, overrides: CampaignOverrides) -> Pipeline:
    """A new pipeline with ``overrides`` applied (validated again, so a bad combination is still refused)."""
    data: dict[str, Any] = pipeline.model_dump(mode="json", by_alias=True, exclude_none=True)
    if overrides.backend:
        data["backend"] = overrides.backend
    unknown = set(overrides.stages or []) - set(data["stages"])
    if unknown:
        raise SweepflowError(
            f"overrides.stages: unknown stage(s) {', '.join(sorted(unknown))}. "
            f"Fix: name stages of pipeline {pipeline.name!r}: {', '.join(sorted(data['stages']))}."
        )
    for name, stage in data["stages"].items():
        if overrides.stages is not None and name not in overrides.stages:
            continue
        if "sweep" in stage:
            sweep = stage["sweep"]
            if overrides.run_cap:
                sweep["run_cap"] = overrides.run_cap
            if overrides.queue:
                sweep["queue"] = overrides.queue
            if overrides.num_workers:
                scheduler = sweep.get("scheduler") if isinstance(sweep.get("scheduler"), dict) else {}
                sweep["scheduler"] = {**scheduler, "num_workers": overrides.num_workers}
        if "derive" in stage:
            for field in ("run_cap", "num_workers", "queue"):
                if getattr(overrides, field):
                    stage["derive"][field] = getattr(overrides, field)
    return Pipeline.model_validate(data)
