"""The campaign flows that prefect.yaml deploys: nightly, manual (typed parameters), and after a data refresh.

Each runs the campaign in its own flow run (``sweep_pipeline.fn``, not a subflow), so the run a person opens
from the deployment shows the task runs, the artifacts and the plots. What differs between them is where the
campaign key comes from, because the key is the campaign's identity (same key, same sweeps), and it must not
change when Prefect retries the same flow run (a Retry from the UI after a crash resumes, never restarts):

- nightly: the date of the run's *scheduled* start (one campaign per night; a retry the next morning resumes it);
- manual: the key the person gives, else one derived from the flow run's id;
- after a refresh: the upstream flow run's id, so each refresh gets its own campaign and a re-delivered
  completion event re-attaches to that campaign instead of starting a second one.

Inputs that can never work (a missing spec, an override naming an unknown stage, an unavailable backend, a job
the backend cannot find) fail the run at once, before any sweep is created, with one line naming the field.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from sweepflow.campaign.preflight import load_campaign
from sweepflow.campaign.results import CampaignResult
from sweepflow.config import Pipeline
from sweepflow.config.overrides import CampaignOverrides, apply_overrides
from sweepflow.flows.data_refresh import data_dir_for
from sweepflow.flows.sweep_pipeline import sweep_pipeline

DEFAULT_SPEC = "deployments/digits-campaign.yaml"


def _run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def manual_key(spec_name: str) -> str:
    """``<spec>-manual-<first 8 hex of the flow run id>``: the same for every retry of one flow run."""
    run_id = _run_id()
    suffix = run_id.replace("-", "")[:8] if run_id else dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{spec_name}-manual-{suffix}"


def nightly_key(spec_name: str) -> str:
    """``<spec>-nightly-<date of the scheduled start, UTC>``: a retry after midnight still resumes that night."""
    scheduled = flow_run.get_scheduled_start_time() if _run_id() else dt.datetime.now(dt.UTC)
    return f"{spec_name}-nightly-{scheduled.astimezone(dt.UTC).date().isoformat()}"


def _name(kind: str) -> str:
    params = flow_run.parameters
    stem = Path(str(params.get("pipeline") or DEFAULT_SPEC)).stem
    run_id = (_run_id() or "").replace("-", "")[:8]
    if kind == "manual":
        return f"campaign {stem}/{params.get('key') or f'manual-{run_id}'}"
    if kind == "refresh":
        return f"campaign {stem}/refresh-{str(params.get('upstream_flow_run_id', '')).rsplit('.', 1)[-1][:8]}"
    return f"campaign {stem}/nightly-{flow_run.get_scheduled_start_time().date().isoformat()}"


@flow(name="nightly-retune", flow_run_name=lambda: _name("nightly"), log_prints=True)
def nightly_retune(pipeline: str = DEFAULT_SPEC) -> CampaignResult:
    """Re-tune a campaign once a night; re-runs and retries of the same night resume the same sweeps.

    Args:
        pipeline: Path of the campaign's spec (YAML), relative to the deployment's working directory.
    """
    spec = load_campaign(pipeline)
    return sweep_pipeline.fn(spec, key=nightly_key(spec.name))


@flow(name="tune", flow_run_name=lambda: _name("manual"), log_prints=True)
def tune(
    pipeline: str = DEFAULT_SPEC, overrides: CampaignOverrides | None = None, key: str | None = None
) -> CampaignResult:
    """Run a campaign by hand, with run caps, parallelism, backend or queue changed for this run.

    Args:
        pipeline: Path of the campaign's spec (YAML), relative to the deployment's working directory,
            e.g. deployments/digits-refresh.yaml.
        overrides: Run caps, parallelism, backend or queue for this run; fields left empty keep the spec's.
            Under an existing key these may change (they take effect); the search space may not.
        key: The campaign's identity: the same key resumes the same sweeps. Leave empty for a new campaign
            (its key comes from this flow run's id, so Retry resumes it instead of starting another).
    """
    spec = apply_overrides(load_campaign(pipeline), overrides or CampaignOverrides())
    return sweep_pipeline.fn(spec, key=key or manual_key(spec.name))


@flow(name="retune-after-refresh", flow_run_name=lambda: _name("refresh"), log_prints=True)
def retune_after_refresh(upstream_flow_run_id: str, pipeline: str = DEFAULT_SPEC) -> CampaignResult:
    """The campaign for one data refresh: trains on that refresh's data, keyed on its flow run id.

    Args:
        upstream_flow_run_id: The data-refresh flow run (``prefect.flow-run.<id>`` from its completion event,
            or the bare id); its id is the data version and the campaign key.
        pipeline: Path of the campaign's spec (YAML), relative to the deployment's working directory.
    """
    version = upstream_flow_run_id.removeprefix("prefect.flow-run.")
    spec = load_campaign(pipeline)
    data_dir = str(data_dir_for(version))
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for stage in data["stages"].values():
        if "sweep" in stage:
            stage["sweep"]["parameters"]["data_dir"] = {"value": data_dir}
    return sweep_pipeline.fn(Pipeline.model_validate(data), key=f"{spec.name}-refresh-{version}")
