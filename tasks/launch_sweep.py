"""launch_sweep: create the stage's sweep, or get the one that already exists, exactly once.

Identity is (pipeline key, stage name), never the flow run: a retried flow, a brand-new flow run after a crash,
and two racing runs all get the same sweep. Two layers make that hold: a persisted Prefect cache keyed on the
identity (so a finished launch is not even re-attempted), and the backend's own get-or-create on the same key
(so a crash between "sweep created" and "cache written" still cannot create a second sweep).
"""

from __future__ import annotations

import hashlib
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from sweepflow.backends import PriorRun, SweepHandle
from sweepflow.config import SweepConfig
from sweepflow.settings import Settings
from tasks._common import backend_for, retry_transient


def stage_key(pipeline_key: str, stage: str) -> str:
    """The backend idempotency key of a stage's sweep."""
    return f"{pipeline_key}/{stage}"


def _identity(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    store = parameters.get("store") or Settings().url  # a different store is a different world of sweeps
    raw = "|".join(
        [parameters.get("backend", "local"), store, stage_key(parameters["pipeline_key"], parameters["stage"])]
    )
    return "sweepflow-launch-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@task(
    name="launch-sweep",
    task_run_name="launch-sweep[{stage}]",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_transient,
    cache_key_fn=_identity,
    persist_result=True,
)
def launch_sweep(
    config: SweepConfig,
    *,
    pipeline_key: str,
    stage: str,
    backend: str = "local",
    store: str | None = None,
    project: str | None = None,
    prior_runs: list[PriorRun] | None = None,
) -> SweepHandle:
    """Get or create the stage's sweep and make sure it is driven."""
    return backend_for(backend, store).launch(
        config, key=stage_key(pipeline_key, stage), project=project, prior_runs=prior_runs or []
    )
