"""Ready-made campaigns with typed parameters, each a thin use of sweep_pipeline.

- multi_stage_sweep: coarse -> fine. A wide search, then a (bayes) search on the space narrowed around the
  coarse stage's best runs, warm-started with them.
- nested_sweep: architecture -> hyperparameters. Pick the architecture first, then tune the best one.
- warm_start_sweep: a new sweep seeded with an existing sweep's best runs, given its id.
"""

from __future__ import annotations

from prefect import flow
from pydantic import Field

from sweepflow.campaign.results import CampaignResult
from sweepflow.config import Derive, Pipeline, Stage, SweepConfig, WarmStart, iter_leaves, load_sweep_config
from sweepflow.config.base import ConfigModel
from sweepflow.flows.sweep_pipeline import sweep_pipeline

NUMERIC = {
    "uniform",
    "int_uniform",
    "q_uniform",
    "log_uniform_values",
    "inv_log_uniform_values",
    "q_log_uniform_values",
}


class FineStage(ConfigModel):
    """How the fine stage of a coarse -> fine campaign is derived."""

    method: str = Field("bayes", description="Search method of the fine stage.")
    run_cap: int = Field(20, gt=0, description="Runs in the fine stage.")
    top_k: int = Field(5, ge=1, description="Coarse runs that shape the fine space.")
    margin: float = Field(0.25, ge=0, description="Margin around the top-k's range, as a fraction of its span.")
    warm_start: int = Field(5, ge=0, description="Coarse runs carried into the fine sweep as prior runs.")


def _load(config: SweepConfig | str) -> SweepConfig:
    return load_sweep_config(config) if isinstance(config, str) else config


@flow(name="multi-stage-sweep", log_prints=True)
def multi_stage_sweep(
    coarse: SweepConfig | str,
    name: str = "coarse-to-fine",
    key: str | None = None,
    fine: FineStage | None = None,
    backend: str = "local",
) -> CampaignResult:
    """Coarse search, then a fine search narrowed around its best runs (every numeric range narrowed,
    every categorical reduced to the values the best runs used)."""
    coarse_config, fine = _load(coarse), fine or FineStage()
    leaves = {".".join(p): param for p, param in iter_leaves(coarse_config.parameters or {})}
    derive = Derive(
        from_="coarse",
        top_k=fine.top_k,
        margin=fine.margin,
        narrow=[n for n, p in leaves.items() if p.distribution in NUMERIC],
        keep_seen=[n for n, p in leaves.items() if p.distribution == "categorical"],
        warm_start=fine.warm_start,
        method=fine.method,
        run_cap=fine.run_cap,
    )
    stages = {"coarse": Stage(sweep=coarse_config), "fine": Stage(needs=["coarse"], derive=derive)}
    return sweep_pipeline(Pipeline(name=name, backend=backend, stages=stages), key=key)


@flow(name="nested-sweep", log_prints=True)
def nested_sweep(
    architecture: SweepConfig | str,
    hyperparameters: SweepConfig | str,
    fix: list[str],
    name: str = "arch-then-hparams",
    key: str | None = None,
    backend: str = "local",
) -> CampaignResult:
    """Sweep architectures, then sweep hyperparameters with the parameters in ``fix`` set to the best
    architecture's values (they must exist in both configs)."""
    stages = {
        "arch": Stage(sweep=_load(architecture)),
        "hparams": Stage(sweep=_load(hyperparameters), needs=["arch"], derive=Derive(from_="arch", fix=fix)),
    }
    return sweep_pipeline(Pipeline(name=name, backend=backend, stages=stages), key=key)


@flow(name="warm-start-sweep", log_prints=True)
def warm_start_sweep(
    config: SweepConfig | str,
    from_sweep: str,
    top_k: int = 5,
    name: str = "warm-start",
    key: str | None = None,
    backend: str = "local",
) -> CampaignResult:
    """A new sweep seeded with the best ``top_k`` runs of sweep ``from_sweep`` that fit its space."""
    stages = {"main": Stage(sweep=_load(config), warm_start=WarmStart(sweep=from_sweep, top_k=top_k))}
    return sweep_pipeline(Pipeline(name=name, backend=backend, stages=stages), key=key)
