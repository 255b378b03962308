"""Launch mode: the sweep is created as `wandb launch-sweep CONFIG --queue Q` creates it, W&B's scheduler (played by
the stub) pushes the runs onto the queue, and resume follows `--resume_id`: a running sweep is left alone, a paused
one is resumed with the new scheduler settings."""

from __future__ import annotations

import json
import time

import pytest

from sweepflow.backends.wandb import WandbBackend
from sweepflow.errors import SweepflowError
from tests.backend_tests.conftest import sweep
from tests.wandb_stub.server import StubServer


def launch_config(**top) -> dict:
    return {
        "job": "stub-team/sweepflow-tests/train-digits:latest",
        "queue": "gpu-queue",
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "run_cap": 4,
        "scheduler": {"num_workers": 2},
        "parameters": {"quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 3}},
        **top,
    }


def _scheduler(stub: StubServer, index: int = -1) -> tuple[dict, dict]:
    """The ``launchScheduler`` of an UpsertSweep the stub received, and its run spec."""
    variables = [r.variables for r in stub.ops("UpsertSweep") if r.variables.get("launchScheduler")][index]
    payload = json.loads(variables["launchScheduler"])
    return payload, json.loads(payload["run_spec"])


def test_a_launch_sweep_carries_its_queue_and_num_workers_and_runs_on_the_queue(
    stub: StubServer, wandb_backend: WandbBackend
) -> None:
    handle = wandb_backend.launch(sweep(launch_config()), key="camp/coarse")
    payload, spec = _scheduler(stub)
    assert payload["queue"] == "gpu-queue" and payload["run_queue_project"] == "model-registry"
    assert spec["overrides"]["run_config"]["scheduler"] == {"num_workers": 2}
    assert spec["resource"] == "local-process" and spec["run_id"] == "WANDB_SWEEP_ID"
    assert "--queue" in spec["overrides"]["args"] and "'gpu-queue'" in spec["overrides"]["args"]
    (upsert,) = [r.variables for r in stub.ops("UpsertSweep")]
    assert upsert["state"] == "PENDING"  # W&B starts the scheduler on the queue
    assert wandb_backend.agents.live(handle.id) == []  # nothing runs on this machine in Launch mode

    deadline = time.time() + 30
    while not wandb_backend.status(handle.id).done:
        assert time.time() < deadline
        time.sleep(0.2)
    status = wandb_backend.status(handle.id)
    assert status.state == "finished" and status.counts == {"finished": 4}
    pushed = [item for item in stub.state.queue_items if item["queue"] == "gpu-queue"]
    assert [i["kind"] for i in pushed].count("scheduler") == 1 and [i["kind"] for i in pushed].count("run") == 4
    best = min(wandb_backend.runs(handle.id), key=lambda r: r.summary["loss"])
    assert status.best_run_id == best.id


def test_resume_leaves_a_running_sweep_alone_and_resumes_a_paused_one_with_new_settings(
    stub: StubServer, wandb_backend: WandbBackend
) -> None:
    stub.state.launch_run_s = 60.0  # the runs stay in flight
    handle = wandb_backend.launch(sweep(launch_config(run_cap=20)), key="camp/coarse", drive="none")
    again = wandb_backend.launch(sweep(launch_config(run_cap=20)), key="camp/coarse", drive="none")
    assert (again.id, again.created) == (handle.id, False) and len(stub.ops("UpsertSweep")) == 1

    wandb_backend.set_state(handle.id, "pause")
    gid = stub.state.sweeps[handle.id.rsplit("/", 1)[1]].id
    resumed = wandb_backend.launch(
        sweep(launch_config(run_cap=20, scheduler={"num_workers": 3})), key="camp/coarse", drive="none"
    )
    assert (resumed.id, resumed.state) == (handle.id, "running")
    last = stub.ops("UpsertSweep")[-1].variables
    assert last["id"] == gid and last["state"] == "PENDING"  # names the existing sweep, as --resume_id does
    assert _scheduler(stub)[1]["overrides"]["run_config"]["scheduler"] == {"num_workers": 3}
    with pytest.raises(SweepflowError, match="different search space"):
        wandb_backend.launch(sweep(launch_config(run_cap=20, method="bayes")), key="camp/coarse", drive="none")


def test_stop_and_cancel_set_the_sweeps_state_on_w_and_b(stub: StubServer, wandb_backend: WandbBackend) -> None:
    first = wandb_backend.launch(sweep(launch_config(run_cap=20)), key="camp/a", drive="none")
    second = wandb_backend.launch(sweep(launch_config(run_cap=20)), key="camp/b", drive="none")
    assert wandb_backend.set_state(first.id, "stop").state == "finished"
    assert wandb_backend.set_state(second.id, "cancel").state == "canceled"
    states = [(r.variables["id"], r.variables["state"]) for r in stub.ops("UpsertSweep") if "config" not in r.variables]
    by_name = {s.id: s.name for s in stub.state.sweeps.values()}
    assert [(by_name[gid], state) for gid, state in states] == [
        (first.id.rsplit("/", 1)[1], "FINISHED"),
        (second.id.rsplit("/", 1)[1], "CANCELED"),
    ]


def test_a_launch_sweep_without_a_queue_is_refused_before_anything_is_sent(
    stub: StubServer, wandb_backend: WandbBackend
) -> None:
    config = {k: v for k, v in launch_config().items() if k != "queue"}
    with pytest.raises(SweepflowError, match=r"queue: a Launch sweep needs a run queue\. Fix: add `queue: <name>`"):
        wandb_backend.launch(sweep(config), key="camp/a")
    assert stub.log == []


def test_the_stub_takes_run_queue_pushes_as_w_and_bs_scheduler_sends_them(
    stub: StubServer, wandb_backend: WandbBackend
) -> None:
    # W&B's scheduler pushes each training run with LaunchApi.push_to_run_queue_by_name: the same client call here.
    spec = {"job": "stub-team/sweepflow-tests/train-digits:latest", "overrides": {"run_config": {"quality": 0.7}}}
    pushed = wandb_backend.api().push_to_run_queue_by_name(
        "stub-team", "sweepflow-tests", "gpu-queue", json.dumps(spec), None
    )
    assert pushed is not None and pushed["runSpec"] == spec
    assert stub.state.queue_items == [{"queue": "gpu-queue", "kind": "pushed", "run_spec": spec}]
