"""sweep_stage: one sweep as a flow: launch -> wait -> collect -> analyze."""

from __future__ import annotations

from prefect import flow

from sweepflow.campaign.results import StageResult, stage_result
from sweepflow.config import SweepConfig, load_sweep_config
from sweepflow.tasks.analyze import analyze
from sweepflow.tasks.collect_runs import collect_runs
from sweepflow.tasks.launch_sweep import launch_sweep
from sweepflow.tasks.wait_for_sweep import wait_for_sweep


@flow(name="sweep-stage", log_prints=True)
def sweep_stage(
    config: SweepConfig | str,
    stage: str = "main",
    pipeline_key: str = "adhoc",
    backend: str = "local",
    store: str | None = None,
    timeout_s: float = 6 * 3600,
) -> StageResult:
    """Run one sweep config (or the path of one) to the end and summarize it; same key and stage, same sweep."""
    sweep = load_sweep_config(config) if isinstance(config, str) else config
    common = {"backend": backend, "store": store}
    handle = launch_sweep(sweep, pipeline_key=pipeline_key, stage=stage, **common)
    status = wait_for_sweep(handle, stage=stage, timeout_s=timeout_s, **common)
    frame = collect_runs(status.id, stage=stage, **common)
    analyze(frame, stage=stage, metric=sweep.metric)
    return stage_result(stage, status.id, status.state, status.reason, frame, sweep.metric)
