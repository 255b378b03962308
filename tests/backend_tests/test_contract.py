"""The seam's contract, one suite over every backend (as Optuna runs one storage suite over every storage): the
embedded ``local`` backend and the ``wandb`` backend on the stub W&B server, where real ``wandb agent`` processes
run the same training script online.

Get-or-create on a key, W&B's resume rules, the sweep verbs, the best run, runs as a DataFrame, warm start.
"""

from __future__ import annotations

import time

import pytest

from sweepflow.backends import Backend, PriorRun, SweepHandle, SweepNotFound
from sweepflow.backends.local import LocalBackend
from sweepflow.campaign.analysis import runs_frame
from sweepflow.errors import SweepflowError
from sweepflow.local.drive import drive
from tests.backend_tests.conftest import curve_config, sweep

BACKENDS = ["local", "wandb"]


@pytest.fixture(params=BACKENDS)
def any_backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue("backend" if request.param == "local" else "wandb_backend")


def finish(backend: Backend, handle: SweepHandle, timeout: float = 120) -> None:
    """Run the sweep to its end the backend's own way: the local engine in this process, or W&B agents."""
    if isinstance(backend, LocalBackend):
        drive(backend, handle.id)
        return
    deadline = time.time() + timeout
    while not backend.status(handle.id).done:
        assert time.time() < deadline, f"sweep {handle.id} did not end in {timeout} s: {backend.status(handle.id)}"
        backend.ensure_driven(handle.id)  # what the flow's sensor does while it waits
        time.sleep(0.5)


def test_launch_is_get_or_create_on_its_key(any_backend: Backend) -> None:
    first = any_backend.launch(sweep(curve_config(run_cap=2)), key="camp/a", drive="none")
    again = any_backend.launch(sweep(curve_config(run_cap=2)), key="camp/a", drive="none")
    other = any_backend.launch(sweep(curve_config(run_cap=2)), key="camp/b", drive="none")
    assert (first.created, again.created, other.created) == (True, False, True)
    assert first.id == again.id != other.id
    assert any_backend.status(first.id).state.is_active  # pending until something drives it, or running


def test_a_new_search_space_under_a_key_is_refused_and_the_run_cap_may_change(any_backend: Backend) -> None:
    handle = any_backend.launch(sweep(curve_config(run_cap=2)), key="camp/a", drive="none")
    narrowed = curve_config(run_cap=2, parameters={"quality": {"min": 0.5, "max": 1.0}, "epochs": {"value": 3},
                                                   "sleep": {"value": 0.0}})  # fmt: skip
    with pytest.raises(SweepflowError, match=r"different search space: parameters\.quality\.max \(2\.0 -> 1\.0\)"):
        any_backend.launch(sweep(narrowed), key="camp/a", drive="none")
    again = any_backend.launch(sweep(curve_config(run_cap=5)), key="camp/a", drive="none")
    assert again.id == handle.id and any_backend.status(handle.id).run_cap == 5


def test_sweep_verbs_follow_wandb_sweep(any_backend: Backend) -> None:
    sweep_id = any_backend.launch(sweep(curve_config(run_cap=1)), key="camp/a", drive="none").id
    with pytest.raises(SweepflowError, match="already running"):
        any_backend.set_state(sweep_id, "resume")
    assert any_backend.set_state(sweep_id, "pause").state == "paused"
    with pytest.raises(SweepflowError, match="already paused"):
        any_backend.set_state(sweep_id, "pause")
    assert any_backend.launch(sweep(curve_config(run_cap=1)), key="camp/a", drive="none").state == "running"
    assert any_backend.set_state(sweep_id, "stop").state == "finished"  # `wandb sweep --stop` ends FINISHED
    with pytest.raises(SweepflowError, match="already finished"):
        any_backend.set_state(sweep_id, "cancel")
    assert any_backend.launch(sweep(curve_config(run_cap=1)), key="camp/a", drive="none").state == "finished"
    other = any_backend.launch(sweep(curve_config(run_cap=1)), key="camp/b", drive="none").id
    assert any_backend.set_state(other, "cancel").state == "canceled"


def test_an_unknown_sweep_is_not_found(any_backend: Backend) -> None:
    any_backend.launch(sweep(curve_config(run_cap=1)), key="camp/a", drive="none")  # the project exists
    missing = "nosuch12" if isinstance(any_backend, LocalBackend) else "stub-team/sweepflow-tests/nosuch12"
    with pytest.raises(SweepNotFound):
        any_backend.status(missing)


def test_best_run_runs_as_a_dataframe_and_warm_start(any_backend: Backend, request: pytest.FixtureRequest) -> None:
    config = curve_config(
        method="grid",
        scheduler={"num_workers": 3},
        parameters={"quality": {"values": [0.5, 1.0, 1.5]}, "epochs": {"value": 2}, "sleep": {"value": 0.0}},
    )
    handle = any_backend.launch(sweep(config), key="camp/coarse", drive="none")
    finish(any_backend, handle)

    status = any_backend.status(handle.id)
    assert status.state == "finished" and status.counts == {"finished": 3}
    assert status.best_value == pytest.approx(0.5 * (1 + 1 / 2)) and status.metric == "loss"
    runs = any_backend.runs(handle.id)
    assert [r.id for r in runs if r.config["quality"] == 0.5] == [status.best_run_id]
    assert all(r.wandb_config and r.wandb_config["quality"] == r.config["quality"] for r in runs)
    if not isinstance(any_backend, LocalBackend):  # the metric's history, as Hyperband and learning curves read it
        assert any_backend.history(handle.id, status.best_run_id, "loss") == pytest.approx([1.0, 0.75])
    frame = runs_frame(runs, stage="coarse")
    assert sorted(frame["config.quality"]) == [0.5, 1.0, 1.5]
    assert set(frame["state"]) == {"finished"} and frame["summary.loss"].min() == pytest.approx(0.75)

    priors = [PriorRun(config=r.config, summary=r.summary, source_run_id=r.id) for r in runs]
    space = {"quality": {"min": 0.4, "max": 1.6}, "epochs": {"value": 2}, "sleep": {"value": 0.0}}
    fine = curve_config(method="bayes", run_cap=1, parameters=space)
    warm = any_backend.launch(sweep(fine), key="camp/fine", prior_runs=priors, drive="none")
    assert warm.created
    learned = _prior_run_ids(any_backend, warm.id, request)
    assert learned == {r.id for r in runs}


def _prior_run_ids(backend: Backend, sweep_id: str, request: pytest.FixtureRequest) -> set[str]:
    """Which runs the new sweep's search engine learns from, read where each backend keeps them (the local store;
    the W&B server, which resolved the sweep's ``priorRunsFilters`` to runs)."""
    if isinstance(backend, LocalBackend):
        return {p["source_run_id"] for p in backend.store.get_sweep(sweep_id).prior_runs}
    stub = request.getfixturevalue("stub")
    return {r.name for r in stub.state.prior[sweep_id.rsplit("/", 1)[1]]}
