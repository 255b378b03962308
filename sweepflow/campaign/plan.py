"""What a campaign stage will run, decided before anything is launched, without Prefect.

:func:`plan_stage` turns the pipeline spec and the outcomes of the stages already done into either a
:class:`Plan` (the stage's sweep config and its warm-start runs) or a :class:`Skip` with the reason: an upstream
that did not finish, a ``when`` that is false. ``derive`` builds the space from the upstream's runs; ``warm_start``
carries another sweep's best runs that fit the space. The flows, the CLI and tests share this one decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from sweepflow.campaign.derive import Derived, derive_config, warm_start_runs
from sweepflow.campaign.results import StageResult, evaluate_when
from sweepflow.config import Metric, Pipeline, SweepConfig
from sweepflow.warm_start import PriorRun


@dataclass(frozen=True)
class Outcome:
    """A stage that ran: its result, its runs (see :func:`sweepflow.campaign.analysis.runs_frame`), its metric."""

    result: StageResult
    frame: pd.DataFrame
    metric: Metric | None


@dataclass(frozen=True)
class Plan:
    """Launch this config, warm-started with ``prior_runs``; ``derived`` tells how its space was made, if it was."""

    stage: str
    config: SweepConfig
    prior_runs: list[PriorRun] = field(default_factory=list)
    derived: Derived | None = None


@dataclass(frozen=True)
class Skip:
    stage: str
    reason: str


def plan_stage(
    spec: Pipeline, name: str, done: Mapping[str, Outcome], runs_of: Callable[[str], pd.DataFrame]
) -> Plan | Skip:
    """The plan of stage ``name`` given the stages in ``done``; ``runs_of(sweep_id)`` reads a warm-start source."""
    stage = spec.stages[name]
    for upstream in stage.needs:
        if done[upstream].result.state != "finished":
            return Skip(name, f"upstream stage {upstream} {done[upstream].result.state}")
    if stage.when is not None:
        source = done[stage.when.stage]
        holds, why = evaluate_when(stage.when, source.frame, source.metric)
        if not holds:
            return Skip(name, why)
    config, priors, derived = spec.base_config(name), [], None
    if stage.derive is not None:
        upstream = stage.derive.from_
        derived = derive_config(config, stage.derive, done[upstream].frame, stage=upstream)
        config, priors = derived.config, list(derived.warm_start)
    if stage.warm_start is not None and config.metric is not None:
        source_runs = runs_of(stage.warm_start.sweep)
        priors += warm_start_runs(config, source_runs, config.metric, stage.warm_start.top_k)
    return Plan(name, config, priors, derived)
