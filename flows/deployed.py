"""The campaign flows that prefect.yaml deploys: nightly, manual (typed parameters), and after a data refresh.

Each is a few lines over sweep_pipeline; what differs is where the campaign key comes from, because the key is
the campaign's identity (same key, same sweeps):
- nightly: one campaign per night (a re-run the same night resumes it);
- manual: the key the person gives, else a new one per run;
- after a refresh: the upstream flow run's id, so each refresh gets its own campaign and a re-delivered
  completion event re-attaches to that campaign instead of starting a second one.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.data_refresh import data_dir_for
from flows.sweep_pipeline import sweep_pipeline
from sweepflow.campaign.results import CampaignResult
from sweepflow.config import Pipeline, load_pipeline
from sweepflow.config.overrides import CampaignOverrides, apply_overrides

DEFAULT_SPEC = "deployments/digits-campaign.yaml"


@flow(name="nightly-retune", log_prints=True)
def nightly_retune(pipeline: str = DEFAULT_SPEC) -> CampaignResult:
    """Re-tune the campaign in ``pipeline`` (a spec path); one campaign per night."""
    spec = load_pipeline(pipeline)
    return sweep_pipeline(spec, key=f"{spec.name}-nightly-{dt.date.today().isoformat()}")


@flow(name="tune", log_prints=True)
def tune(
    pipeline: str = DEFAULT_SPEC, overrides: CampaignOverrides | None = None, key: str | None = None
) -> CampaignResult:
    """Run a campaign by hand: a spec path, plus run caps, parallelism, backend or queue to change."""
    spec = apply_overrides(load_pipeline(pipeline), overrides or CampaignOverrides())
    key = key or f"{spec.name}-manual-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}"
    return sweep_pipeline(spec, key=key)


@flow(name="retune-after-refresh", log_prints=True)
def retune_after_refresh(upstream_flow_run_id: str, pipeline: str = DEFAULT_SPEC) -> CampaignResult:
    """The campaign for one data refresh: trains on that refresh's data, keyed on its flow run id."""
    version = upstream_flow_run_id.removeprefix("prefect.flow-run.")
    spec = load_pipeline(pipeline)
    data_dir = str(data_dir_for(version))
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for stage in data["stages"].values():
        if "sweep" in stage:
            stage["sweep"]["parameters"]["data_dir"] = {"value": data_dir}
    return sweep_pipeline(Pipeline.model_validate(data), key=f"{spec.name}-refresh-{version}")
