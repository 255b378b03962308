"""Issue 10 on a real Prefect harness: what a campaign started from the UI meets, each a bug before the fix.

Null-filled overrides, keys stable across retries, launch failures in one line, W&B's resume rules under an
existing key, a cached launch whose sweep is gone, inputs refused before any sweep, artifacts on the run the
user opens.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from sweepflow.backends.local import LocalBackend
from sweepflow.config import Pipeline, load_pipeline
from sweepflow.config.overrides import CampaignOverrides, apply_overrides
from sweepflow.flows.deployed import tune
from sweepflow.flows.sweep_pipeline import sweep_pipeline
from tests.flows_tests.conftest import coarse_sweep

#: Exactly what Prefect's "Custom run" form sends when only the run cap was filled in.
FORM_OVERRIDES = {"run_cap": 2, "num_workers": None, "backend": None, "queue": None, "stages": None}


def _spec_file(tmp_path: Path, **sweep) -> Path:
    path = tmp_path / "camp.yaml"
    path.write_text(yaml.safe_dump({"name": "camp", "stages": {"coarse": {"sweep": coarse_sweep(**sweep)}}}))
    return path


def _message(state) -> str:
    return state.message or ""


def test_the_forms_null_filled_overrides_mean_not_overridden(tmp_path: Path) -> None:
    overrides = CampaignOverrides.model_validate(FORM_OVERRIDES)
    spec = apply_overrides(load_pipeline(_spec_file(tmp_path, run_cap=6)), overrides)
    sweep = spec.stages["coarse"].sweep
    assert sweep.run_cap == 2 and sweep.num_workers == 2 and spec.backend == "local"


def test_default_manual_key_is_the_flow_runs_and_survives_a_retry(collect_fails_once, tmp_path: Path) -> None:
    calls = collect_fails_once
    path = _spec_file(tmp_path, run_cap=2)
    state = tune.with_options(retries=1, retry_delay_seconds=0)(pipeline=str(path), return_state=True)
    assert state.is_completed(), _message(state)
    run_id = str(state.state_details.flow_run_id).replace("-", "")[:8]
    sweeps = LocalBackend().store.list_sweeps()
    assert len(calls) >= 2  # the flow did run twice
    assert [s.key for s in sweeps] == [f"camp-manual-{run_id}/coarse"]  # one campaign, keyed on the flow run
    assert len(LocalBackend().runs(sweeps[0].id)) == 2


def test_a_launch_failure_is_the_flow_runs_state_message(monkeypatch, tmp_path: Path) -> None:
    from sweepflow.errors import SweepflowError

    def refuse(self, config, **kwargs):
        raise SweepflowError("queue 'gpu': no agent can serve it.\nFix: start one with `sweepflow launch-agent`.")

    monkeypatch.setattr(LocalBackend, "launch", refuse)
    state = sweep_pipeline(str(_spec_file(tmp_path)), key="fails", return_state=True)
    assert state.is_failed()
    message = _message(state)
    assert "stage coarse: queue 'gpu': no agent can serve it. Fix: start one" in message, message
    assert "\n" not in message and "UnfinishedRun" not in message and "PENDING" not in message


def test_inputs_that_can_never_work_fail_before_any_sweep(tmp_path: Path) -> None:
    from sweepflow.cli import _check

    missing = tune(pipeline=str(tmp_path / "nope.yaml"), return_state=True)
    assert missing.is_failed() and "pipeline: no such file" in _message(missing) and "nope.yaml" in _message(missing)

    spec = _spec_file(tmp_path)
    unknown = tune(pipeline=str(spec), overrides=CampaignOverrides(stages=["coarse", "fien"]), return_state=True)
    assert unknown.is_failed() and "overrides.stages: unknown stage(s) fien" in _message(unknown)

    wrong_backend = sweep_pipeline(str(spec), backend="sagemaker", return_state=True)
    assert wrong_backend.is_failed() and "backend: 'sagemaker' is not available" in _message(wrong_backend)

    no_job = tmp_path / "nojob.yaml"
    data = yaml.safe_load(spec.read_text())
    del data["stages"]["coarse"]["sweep"]["program"]
    data["stages"]["coarse"]["sweep"]["job"] = "camp/no-such-job:latest"
    no_job.write_text(yaml.safe_dump(data))
    bad_job = tune(pipeline=str(no_job), return_state=True)
    validate_lines = [str(issue) for issue in _check(no_job).errors]  # what `sweepflow validate` prints
    assert bad_job.is_failed() and validate_lines, validate_lines
    assert all(line in _message(bad_job) for line in validate_lines), (validate_lines, _message(bad_job))
    assert LocalBackend().store.list_sweeps() == []


def test_same_key_new_run_cap_takes_effect_new_space_is_refused(tmp_path: Path) -> None:
    def spec(**sweep) -> Pipeline:
        return Pipeline.model_validate({"name": "camp", "stages": {"coarse": {"sweep": coarse_sweep(**sweep)}}})

    first = sweep_pipeline(spec(run_cap=2), key="resume", report_dir=str(tmp_path))
    sweep_id = first.stages["coarse"].sweep_id
    more = sweep_pipeline(spec(run_cap=3), key="resume", report_dir=str(tmp_path))
    assert more.stages["coarse"].sweep_id == sweep_id and more.stages["coarse"].runs == 3  # the new cap took effect
    assert LocalBackend().store.get_sweep(sweep_id).run_cap == 3

    wider = coarse_sweep(run_cap=3)
    wider["parameters"]["quality"] = {"min": 0.5, "max": 9.0}
    state = sweep_pipeline(spec(**wider), key="resume", report_dir=str(tmp_path), return_state=True)
    message = _message(state)
    assert state.is_failed() and "stage coarse" in message and "parameters.quality.max (3.0 -> 9.0)" in message
    assert "new campaign key" in message and "\n" not in message
    assert [s.id for s in LocalBackend().store.list_sweeps()] == [sweep_id]  # nothing launched


def test_a_cached_launch_whose_sweep_is_gone_is_relaunched(sweepflow_home: Path, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    spec = Pipeline.model_validate({"name": "camp", "stages": {"coarse": {"sweep": coarse_sweep(run_cap=2)}}})
    first = sweep_pipeline(spec, key="gone", report_dir=str(tmp_path))
    for file in sweepflow_home.glob("sweepflow.db*"):
        file.unlink()  # the store is deleted; Prefect's persisted launch cache still holds the old handle
    state = sweep_pipeline(spec, key="gone", report_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), _message(state)
    again = state.result()
    [sweep] = LocalBackend().store.list_sweeps()
    assert again.stages["coarse"].sweep_id == sweep.id != first.stages["coarse"].sweep_id
    assert again.stages["coarse"].runs == 2

    async def logs() -> str:
        async with get_client() as client:
            run_id = state.state_details.flow_run_id
            found = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            return "\n".join(log.message for log in found)

    assert "no longer exists" in asyncio.run(logs())


def test_the_deployed_flow_run_holds_the_campaigns_artifacts(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    state = tune(pipeline=str(_spec_file(tmp_path, run_cap=4)), key="arts", return_state=True)
    assert state.is_completed(), _message(state)

    async def artifacts():
        async with get_client() as client:
            run_id = state.state_details.flow_run_id
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            return {a.key: a for a in found if a.key}, await client.read_flow_run(run_id)

    by_key, run = asyncio.run(artifacts())
    assert {"arts-coarse-runs", "arts-coarse-summary", "arts-coarse-plot", "arts-campaign"} <= set(by_key)
    assert "data:image/png;base64," in by_key["arts-campaign"].data  # the plot is in the artifact, not a file link
    rows = by_key["arts-coarse-runs"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert len(rows) == 4 and rows[0]["rank"] == "★ 1" and {"run", "state", "loss", "quality"} <= set(rows[0])
    assert not any(isinstance(v, dict) for row in rows for v in row.values())  # flat columns, no Python dicts
    assert run.name == "campaign camp/arts"


@pytest.mark.parametrize("field", sorted(CampaignOverrides.model_fields))
def test_every_override_field_may_be_null(field: str) -> None:
    assert getattr(CampaignOverrides.model_validate({field: None}), field) is None
