"""analyze: best run, every run, top-k, parameter importance and cost of a stage, as data and as artifacts.

Artifacts are keyed per campaign (``<campaign key>-<stage>-...``), so one campaign never overwrites another's
history, and land on the flow run the user opened (the deployed flows run the campaign in their own run).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from sweepflow.campaign.analysis import SUMMARY, best_run, config_of, cost_summary, importance, top_k
from sweepflow.campaign.report import fmt, importance_markdown, markdown_table, runs_table
from sweepflow.config import Metric
from sweepflow.tasks._common import artifact_key


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    # JSON-able records (NaN is not JSON), for the returned result.
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


@task(name="analyze", task_run_name="analyze[{stage}]", cache_policy=NO_CACHE)
def analyze(
    frame: pd.DataFrame, *, stage: str, metric: Metric | None, k: int = 5, campaign: str | None = None
) -> dict[str, Any]:
    """Best run, top-k, importance and cost; published as a stage summary (markdown) and an all-runs table."""
    costs = cost_summary(frame)
    prefix = (campaign,) if campaign else ()
    result: dict[str, Any] = {"stage": stage, "cost": costs, "best": None, "top_k": [], "importance": []}
    states = ", ".join(f"{n} {state}" for state, n in costs["states"].items())
    lines = [f"## Stage `{stage}`", "", f"{costs['runs']} runs ({states}), {costs['runtime_s']:.0f} s of run time,"
             f" ${costs['cost_usd']:.4f}."]  # fmt: skip
    if metric is not None:
        best = best_run(frame, metric)
        top = top_k(frame, metric, k)
        table = importance(frame, metric)
        result |= {
            "best": None
            if best is None
            else {"run_id": best["run_id"], "value": float(best[SUMMARY + metric.name]), "config": config_of(best)},
            "top_k": _records(top),
            "importance": _records(table),
        }
        if best is not None:
            goal = "lowest" if metric.goal == "minimize" else "highest"
            value = fmt(best[SUMMARY + metric.name])
            lines += ["", f"**Best run** `{best['run_id']}`: {metric.name} = {value} ({goal} is best)"]
            lines += ["", "### Top runs", "", markdown_table(runs_table(frame, metric, k))]
        lines += ["", "### Parameter importance", "", importance_markdown(table)]
    rows = runs_table(frame, metric)
    if rows:
        create_table_artifact(
            rows,
            key=artifact_key(*prefix, stage, "runs"),
            description=f"stage {stage}: all {len(rows)} runs, best first (★ = best)",
        )
    create_markdown_artifact(
        "\n".join(lines), key=artifact_key(*prefix, stage, "summary"), description=f"stage {stage}: summary"
    )
    return result
