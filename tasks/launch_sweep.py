"""launch_sweep: create the stage's sweep, or get the one that already exists, exactly once.

Identity is (pipeline key, stage name), never the flow run: a retried flow, a brand-new flow run after a crash,
and two racing runs all get the same sweep. Two layers make that hold: a persisted Prefect cache keyed on the
identity and the stage's config (so a finished launch of the same config is not even re-attempted), and the
backend's own get-or-create on the identity (so a crash between "sweep created" and "cache written" still cannot
create a second sweep). A changed config misses the cache and reaches the backend, which applies W&B's resume
rules: new scheduler settings take effect, a new search space is refused. A cached handle is never trusted
blindly: :func:`launch_stage` relaunches (with a warning) when its sweep no longer exists, e.g. after the store
file was deleted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from sweepflow.backends import PriorRun, SweepHandle, SweepNotFound, TransientBackendError
from sweepflow.config import SweepConfig
from sweepflow.errors import SweepflowError
from sweepflow.settings import Settings
from sweepflow.tasks._common import backend_for, retry_transient


class StageLaunchError(SweepflowError):
    """A stage's sweep could not be launched; the message names the stage, the problem and the fix."""


def stage_key(pipeline_key: str, stage: str) -> str:
    """The backend idempotency key of a stage's sweep."""
    return f"{pipeline_key}/{stage}"


def _identity(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    store = parameters.get("store") or Settings().url  # a different store is a different world of sweeps
    config = parameters["config"]
    spec = json.dumps(config.to_wandb() if isinstance(config, SweepConfig) else config, sort_keys=True, default=str)
    raw = "|".join(
        [parameters.get("backend", "local"), store, stage_key(parameters["pipeline_key"], parameters["stage"]), spec]
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
    """Get or create the stage's sweep and make sure it is driven; a failure names the stage."""
    try:
        return backend_for(backend, store).launch(
            config, key=stage_key(pipeline_key, stage), project=project, prior_runs=prior_runs or []
        )
    except TransientBackendError:
        raise
    except SweepflowError as exc:
        raise StageLaunchError(f"stage {stage}: {' '.join(str(exc).split())}") from None


@task(name="check-launch", task_run_name="check-launch[{stage}]", cache_policy=NO_CACHE)
def sweep_exists(handle: SweepHandle, *, stage: str, backend: str = "local", store: str | None = None) -> bool:
    """Whether the sweep a (possibly cached) launch returned still exists on the backend."""
    try:
        backend_for(backend, store).status(handle.id)
    except SweepNotFound:
        return False
    return True


def launch_stage(launched: Any, **parameters: Any) -> SweepHandle:
    """The handle of a submitted :func:`launch_sweep`, relaunched (cache refreshed) when its sweep is gone."""
    handle = launched.result()
    common = {"backend": parameters.get("backend", "local"), "store": parameters.get("store")}
    if sweep_exists(handle, stage=parameters["stage"], **common):
        return handle
    get_run_logger().warning(
        "stage %s: the cached launch points at sweep %s, which no longer exists on the %s backend (store deleted "
        "or replaced?); launching the stage again.",
        parameters["stage"],
        handle.id,
        common["backend"],
    )
    return launch_sweep.with_options(refresh_cache=True)(**parameters)
