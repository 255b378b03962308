"""report: parallel-coordinates plots per stage and for the whole campaign, and the campaign summary.

The plots are written under ``out_dir`` (HTML and PNG) and also embedded in markdown artifacts as PNG data URIs,
so the Prefect UI shows them in the browser (a ``file://`` link does nothing there).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from sweepflow.campaign.report import parallel_coordinates, png_markdown, summary_markdown
from sweepflow.campaign.results import CampaignResult
from sweepflow.config import Metric
from sweepflow.private import private_dir
from sweepflow.tasks._common import artifact_key


@task(name="report", task_run_name="report[{result.key}]", cache_policy=NO_CACHE)
def report(
    result: CampaignResult, frames: dict[str, pd.DataFrame], metrics: dict[str, Metric | None], out_dir: str
) -> str:
    """Write plots and summary under ``out_dir``; publish them as artifacts. Returns the summary's path."""
    out = Path(out_dir)
    private_dir(out)
    for stage, frame in frames.items():
        metric = metrics.get(stage)
        if metric is not None and (paths := parallel_coordinates(frame, metric, out / stage, f"stage {stage}")):
            create_markdown_artifact(
                f"## Stage `{stage}`: parallel coordinates\n\n{png_markdown(paths[1], f'{stage} plot')}\n\n"
                f"Interactive version: `{paths[0]}` on the worker.",
                key=artifact_key(result.key, stage, "plot"),
                description=f"stage {stage}: parallel coordinates",
            )
    text = summary_markdown(result)
    plot = ""
    final = next((m for m in reversed(list(metrics.values())) if m is not None), None)
    if final is not None and frames:
        together = pd.concat(
            [f for s, f in frames.items() if (m := metrics.get(s)) and m.name == final.name], ignore_index=True
        )
        if paths := parallel_coordinates(together, final, out / "campaign", f"campaign {result.pipeline}"):
            plot = f"\n## All runs, every stage\n\n{png_markdown(paths[1], 'campaign plot')}\n"
    summary = out / "summary.md"
    summary.write_text(text)
    create_markdown_artifact(
        text + plot + f"\nFiles: `{out}` on the worker.\n",
        key=artifact_key(result.key, "campaign"),
        description=f"campaign {result.pipeline}, key {result.key}",
    )
    return str(summary)
