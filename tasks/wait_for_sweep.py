"""wait_for_sweep: the completion sensor. Polls with a deadline and backoff, shows progress, re-attaches.

Each poll also asks the backend to keep the sweep driven, so a flow re-run after a crash re-attaches to a sweep
whose controller died with the old flow, instead of waiting forever on a sweep nobody drives.
"""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from sweepflow.backends import SweepHandle, SweepStatus
from sweepflow.errors import SweepflowError
from sweepflow.tasks._common import artifact_key, backend_for, retry_transient


class SweepTimeout(SweepflowError):
    """The sweep did not end before the deadline (it keeps running; a re-run re-attaches to it)."""


def _progress(status: SweepStatus) -> tuple[float, str]:
    total = status.run_cap or max(status.total_runs, 1)
    best = f"best {status.metric} {status.best_value:.6g}" if status.best_value is not None else "no result yet"
    text = f"{status.ended}/{status.run_cap or '?'} runs ended, {status.in_flight} in flight, {best}"
    return (100.0 if status.done else min(99.0, 100.0 * status.ended / total)), text


@task(
    name="wait-for-sweep",
    task_run_name="wait-for-sweep[{stage}]",
    cache_policy=NO_CACHE,
    retries=2,  # safe: a retry re-attaches to the same sweep (and restarts its controller if it died)
    retry_delay_seconds=5,
    retry_condition_fn=retry_transient,
)
def wait_for_sweep(
    handle: SweepHandle,
    *,
    stage: str,
    backend: str = "local",
    store: str | None = None,
    timeout_s: float = 6 * 3600,
    poll_s: float = 0.5,
    max_poll_s: float = 2.0,  # each poll also restarts a dead controller: a longer backoff delays the recovery
    campaign: str | None = None,
) -> SweepStatus:
    """Block until the sweep ends; raise :class:`SweepTimeout` after ``timeout_s`` seconds."""
    logger = get_run_logger()
    client = backend_for(backend, store)
    deadline = time.monotonic() + timeout_s
    artifact_id = create_progress_artifact(
        0.0,
        key=artifact_key(*((campaign,) if campaign else ("sweep",)), stage, "progress"),
        description=f"stage {stage}: sweep {handle.id}",
    )
    last: tuple[str, int] | None = None
    delay = poll_s
    while True:
        client.ensure_driven(handle.id)
        status = client.status(handle.id)
        percent, text = _progress(status)
        seen = (status.state, status.ended)
        if seen != last:
            logger.info("stage %s, sweep %s: %s; %s", stage, handle.id, status.state, text)
            update_progress_artifact(artifact_id, percent, description=f"stage {stage}: {text}")
            last, delay = seen, poll_s
        else:
            delay = min(max_poll_s, delay * 1.5)
        if status.done:
            return status
        if time.monotonic() > deadline:
            raise SweepTimeout(
                f"stage {stage}: sweep {handle.id} is still {status.state} after {timeout_s:g} s ({text}). "
                "It keeps running; re-run the flow to re-attach, or raise timeout_s."
            )
        time.sleep(delay)
