"""report: parallel-coordinates plots per stage and for the whole campaign, and the campaign summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from sweepflow.campaign.report import parallel_coordinates, summary_markdown
from sweepflow.campaign.results import CampaignResult
from sweepflow.config import Metric
from sweepflow.private import private_dir
from tasks._common import artifact_key


@task(name="report", cache_policy=NO_CACHE)
def report(
    result: CampaignResult, frames: dict[str, pd.DataFrame], metrics: dict[str, Metric | None], out_dir: str
) -> str:
    """Write plots and summary under ``out_dir``; link them as artifacts. Returns the summary's path."""
    out = Path(out_dir)
    private_dir(out)
    for stage, frame in frames.items():
        metric = metrics.get(stage)
        if metric is not None and (paths := parallel_coordinates(frame, metric, out / stage, f"stage {stage}")):
            create_link_artifact(
                paths[0].resolve().as_uri(),
                link_text=f"{stage}: parallel coordinates",
                key=artifact_key(stage, "parallel-coordinates"),
            )
    final = next((m for m in reversed(list(metrics.values())) if m is not None), None)
    if final is not None and frames:
        together = pd.concat(
            [f for s, f in frames.items() if (m := metrics.get(s)) and m.name == final.name], ignore_index=True
        )
        if paths := parallel_coordinates(together, final, out / "campaign", f"campaign {result.pipeline}"):
            create_link_artifact(
                paths[0].resolve().as_uri(),
                link_text="campaign: parallel coordinates",
                key=artifact_key(result.pipeline, "campaign-plot"),
            )
    text = summary_markdown(result)
    summary = out / "summary.md"
    summary.write_text(text)
    create_markdown_artifact(text, key=artifact_key(result.pipeline, "campaign"), description="campaign summary")
    return str(summary)
