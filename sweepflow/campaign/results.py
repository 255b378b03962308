"""What a campaign produces, stage by stage, and the decisions between stages that need no Prefect.

The flows call these; they live here so they are testable without a Prefect server: evaluating a ``when``
condition on upstream results, and the result records a campaign returns.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from sweepflow.campaign.analysis import SUMMARY, best_run, config_of, ranked
from sweepflow.config import Metric, When
from sweepflow.states import SweepState


class StageResult(BaseModel):
    """One stage's outcome: its sweep, its best run, or why it was skipped."""

    name: str
    state: Literal["finished", "canceled", "failed", "skipped"] = Field(
        description="The sweep's end state (W&B's), or `skipped` with the reason."
    )
    sweep_id: str | None = None
    reason: str | None = None
    metric: str | None = None
    goal: Literal["minimize", "maximize"] | None = None
    best_run_id: str | None = None
    best_value: float | None = None
    best_config: dict[str, Any] | None = None
    runs: int = 0
    cost_usd: float = 0.0
    runtime_s: float = 0.0


class CampaignResult(BaseModel):
    """The whole campaign: every stage, and the best config overall."""

    pipeline: str
    key: str
    stages: dict[str, StageResult] = Field(default_factory=dict)
    best_stage: str | None = None
    best_config: dict[str, Any] | None = None
    best_value: float | None = None
    report_dir: str | None = None

    def pick_best(self) -> None:
        """The best stage by its metric, among finished stages optimizing the same metric as the last one."""
        done = [s for s in self.stages.values() if s.best_value is not None]
        if not done:
            return
        final = done[-1]
        same = [s for s in done if s.metric == final.metric and s.goal == final.goal]
        best = (min if final.goal == "minimize" else max)(same, key=lambda s: s.best_value)
        self.best_stage, self.best_config, self.best_value = best.name, best.best_config, best.best_value


def stage_result(
    name: str, sweep_id: str, state: SweepState, reason: str | None, frame: pd.DataFrame, metric: Metric | None
) -> StageResult:
    """Summarize an ended stage's runs."""
    result = StageResult(
        name=name,
        state=state.value if state.is_terminal else "finished",
        sweep_id=sweep_id,
        reason=reason,
        runs=len(frame),
        cost_usd=float(frame["cost_usd"].fillna(0).sum()) if len(frame) else 0.0,
        runtime_s=float(frame["runtime_s"].fillna(0).sum()) if len(frame) else 0.0,
    )
    if metric is not None:
        result.metric, result.goal = metric.name, metric.goal
        best = best_run(frame, metric)
        if best is not None:
            result.best_run_id = str(best["run_id"])
            result.best_value = float(best[SUMMARY + metric.name])
            result.best_config = config_of(best)
    return result


def evaluate_when(when: When, frame: pd.DataFrame, metric: Metric | None) -> tuple[bool, str]:
    """Whether a stage's ``when`` holds on its upstream's runs, and a sentence saying why (shown when skipped)."""
    goal = metric.goal if metric is not None and metric.name == when.metric else "maximize"
    usable = ranked(frame, Metric(name=when.metric, goal=goal))
    if usable.empty:
        return False, f"{when}: stage {when.stage} has no finished run with {when.metric!r}"
    values = usable[SUMMARY + when.metric].astype(float)
    observed = {"best": values.iloc[0], "worst": values.iloc[-1], "mean": values.mean()}[when.of]
    verdict = when.holds(float(observed))
    return verdict, f"{when}: observed {observed:.6g}, so the condition is {'true' if verdict else 'false'}"
