"""collect_runs: every run of a sweep as a pandas DataFrame (columns: see sweepflow.campaign.analysis)."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from sweepflow.campaign.analysis import runs_frame
from sweepflow.tasks._common import backend_for, retry_transient


@task(
    name="collect-runs",
    task_run_name="collect-runs[{stage}]",
    retries=3,
    retry_delay_seconds=2,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def collect_runs(sweep_id: str, *, stage: str, backend: str = "local", store: str | None = None) -> pd.DataFrame:
    """One row per run: id, stage, state, config.<param>, summary.<metric>, runtime, cost, stopped-early flag."""
    return runs_frame(backend_for(backend, store).runs(sweep_id), stage=stage)
