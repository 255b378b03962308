"""Task bodies (``.fn``) and the retry predicate: what Prefect adds must be able to fire."""

from __future__ import annotations

import time

import pytest
from prefect.states import Completed, Failed

from sweepflow.backends import TransientBackendError
from sweepflow.backends.local import LocalBackend
from sweepflow.config import load_sweep_config
from sweepflow.errors import SweepflowError
from sweepflow.tasks._common import retry_transient
from sweepflow.tasks.collect_runs import collect_runs
from sweepflow.tasks.launch_sweep import launch_sweep
from tests.flows_tests.conftest import coarse_sweep


@pytest.mark.parametrize(
    ("state", "retry"),
    [
        (Failed(data=TransientBackendError("the store is busy")), True),
        (Failed(data=SweepflowError("job: 'x' is not in the local job registry")), False),
        (Failed(data=ValueError("a bug")), False),
        (Completed(data=1), False),
    ],
)
def test_only_transient_failures_are_retried(state, retry: bool) -> None:
    assert retry_transient(None, None, state) is retry


def test_launch_is_get_or_create_and_collect_reads_every_run() -> None:
    config = load_sweep_config(coarse_sweep(run_cap=2))
    first = launch_sweep.fn(config, pipeline_key="tasks", stage="coarse")
    again = launch_sweep.fn(config, pipeline_key="tasks", stage="coarse")
    assert first.created and not again.created and again.id == first.id
    backend = LocalBackend()
    deadline = time.monotonic() + 120
    while not backend.status(first.id).done and time.monotonic() < deadline:
        time.sleep(0.2)
    frame = collect_runs.fn(first.id, stage="coarse")
    assert list(frame["run_id"]) == [r.id for r in backend.runs(first.id)] and len(frame) == 2
    assert set(frame["stage"]) == {"coarse"} and frame["state"].tolist() == ["finished", "finished"]
