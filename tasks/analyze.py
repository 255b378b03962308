"""analyze: best run, top-k, parameter importance and cost of a stage, as data and as Prefect artifacts."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from sweepflow.campaign.analysis import SUMMARY, best_run, config_of, cost_summary, importance, top_k
from sweepflow.config import Metric
from tasks._common import artifact_key


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    # create_table_artifact wants JSON-able records, not a DataFrame (NaN is not JSON).
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


@task(name="analyze", cache_policy=NO_CACHE)
def analyze(frame: pd.DataFrame, *, stage: str, metric: Metric | None, k: int = 5) -> dict[str, Any]:
    """Best run, top-k table, importance table and cost summary; published as artifacts of the flow run."""
    costs = cost_summary(frame)
    result: dict[str, Any] = {"stage": stage, "cost": costs, "best": None, "top_k": [], "importance": []}
    lines = [f"## Stage `{stage}`", "", f"{costs['runs']} runs {costs['states']}, ${costs['cost_usd']:.4f}."]
    if metric is not None:
        best = best_run(frame, metric)
        top = top_k(frame, metric, k)
        table = importance(frame, metric)
        result |= {
            "best": None
            if best is None
            else {
                "run_id": best["run_id"],
                "value": float(best[SUMMARY + metric.name]),
                "config": config_of(best),
            },
            "top_k": _records(top),
            "importance": _records(table),
        }
        if not top.empty:
            create_table_artifact(
                _records(top), key=artifact_key(stage, "top-k"), description=f"stage {stage}: top {k}"
            )
        if best is not None:
            lines += ["", f"Best: run `{best['run_id']}`, {metric.name} = {best[SUMMARY + metric.name]:.6g}"]
            lines += [f"- `{key}`: {value}" for key, value in config_of(best).items()]
        if not table.empty:
            lines += ["", "| parameter | importance | correlation |", "|---|---|---|"]
            for r in table.itertuples():
                corr = "" if r.correlation is None else f"{r.correlation:.3f}"
                lines.append(f"| {r.parameter} | {r.importance:.3f} | {corr} |")
    create_markdown_artifact("\n".join(lines), key=artifact_key(stage, "summary"), description=f"stage {stage}")
    return result
