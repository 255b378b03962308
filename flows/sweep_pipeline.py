"""sweep_pipeline: a campaign of sweeps as one durable DAG.

Stages run level by level (``Pipeline.levels``); the stages of a level run concurrently (task futures). Each stage
is planned first (``plan_stage``: skipped with its reason when an upstream did not finish or its ``when`` is
false; its space derived from the upstream's runs; warm-start runs carried), then launched, waited on, collected
and analyzed. Re-running the flow with the same pipeline key resumes: each stage's sweep is keyed on (pipeline
key, stage), so finished stages return their results at once and running ones are re-attached, never re-created.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run

from sweepflow.campaign.analysis import runs_frame
from sweepflow.campaign.plan import Outcome, Skip
from sweepflow.campaign.preflight import load_campaign
from sweepflow.campaign.results import CampaignResult, StageResult, stage_result
from sweepflow.config import Pipeline
from sweepflow.config.pipeline import check_campaign_key
from sweepflow.errors import SweepflowError
from sweepflow.settings import Settings
from sweepflow.tasks._common import artifact_key
from sweepflow.tasks.analyze import analyze
from sweepflow.tasks.check_campaign import check_campaign
from sweepflow.tasks.collect_runs import collect_runs
from sweepflow.tasks.launch_sweep import launch_stage, launch_sweep
from sweepflow.tasks.plan_stage import plan_stage
from sweepflow.tasks.report import report
from sweepflow.tasks.wait_for_sweep import wait_for_sweep


def campaign_run_name() -> str:
    """``campaign <pipeline>/<key>``, so the run list reads without clicking (the key once it is known)."""
    params = flow_run.parameters
    pipeline, key = params.get("pipeline"), params.get("key")
    if isinstance(pipeline, Pipeline):
        name = pipeline.name
    elif isinstance(pipeline, dict):
        name = str(pipeline.get("name", "campaign"))
    else:
        name = Path(str(pipeline or flow_run.flow_name)).stem
    return f"campaign {name}/{key or (pipeline.pipeline_key if isinstance(pipeline, Pipeline) else name)}"


@flow(name="sweep-pipeline", flow_run_name=campaign_run_name, log_prints=True)
def sweep_pipeline(
    pipeline: Pipeline | str,
    key: str | None = None,
    backend: str | None = None,
    store: str | None = None,
    timeout_s: float = 6 * 3600,
    report_dir: str | None = None,
) -> CampaignResult:
    """Run a pipeline spec (a YAML path or the model) and return the best config overall and per stage.

    Args:
        pipeline: the spec, or the path of its YAML file (stage sweep paths are relative to it).
        key: the campaign's identity; the same key resumes the same sweeps (default: the spec's key or name).
        backend: override the spec's backend.
        store: the local backend's store URL (default: `$SWEEPFLOW_STORE_URL`, else `$SWEEPFLOW_HOME`).
        timeout_s: how long to wait for each stage's sweep.
        report_dir: where plots and the summary go (default: `$SWEEPFLOW_HOME/reports/<key>`).
    """
    logger = get_run_logger()
    spec = load_campaign(pipeline) if isinstance(pipeline, str) else pipeline
    try:
        key = check_campaign_key(key or spec.pipeline_key)
    except ValueError as exc:
        raise SweepflowError(f"key: {exc}. Fix: pass another key.") from None
    common = {"backend": backend or spec.backend, "store": store}
    check_campaign(spec, backend=common["backend"])  # before any sweep exists
    result = CampaignResult(pipeline=spec.name, key=key)
    done: dict[str, Outcome] = {}

    # Every task run of the campaign carries these tags: a tag concurrency limit on `campaign-<name>` caps how
    # many of its stages run at once, across all its flow runs (see README, "Concurrency").
    with tags("sweepflow", artifact_key("campaign", spec.name)):
        _run_levels(spec, key, common, result, done, timeout_s, logger)

    result.pick_best()
    out = report_dir or str(Settings().home_dir / "reports" / key.replace("/", "_"))
    ran = {name: outcome for name, outcome in done.items() if outcome.result.sweep_id}
    report(result, {n: o.frame for n, o in ran.items()}, {n: o.metric for n, o in ran.items()}, out)
    result.report_dir = out
    return result


def _run_levels(
    spec: Pipeline, key: str, common: dict, result: CampaignResult, done: dict[str, Outcome], timeout_s: float, logger
) -> None:
    """Plan, launch, wait for, collect and analyze every stage, level by level."""
    for level in spec.levels():
        plans = {}
        for name in level:
            decided = plan_stage(spec, name, done, key=key, **common)
            if isinstance(decided, Skip):
                skipped = StageResult(name=name, state="skipped", reason=decided.reason)
                result.stages[name] = skipped
                done[name] = Outcome(skipped, runs_frame([], stage=name), None)
            else:
                plans[name] = decided
        params = {
            name: {
                "config": plan.config,
                "pipeline_key": key,
                "stage": name,
                "project": spec.project or spec.name,
                "prior_runs": plan.prior_runs,
                **common,
            }
            for name, plan in plans.items()
        }
        launched = {name: launch_sweep.submit(**params[name]) for name in plans}
        # Resolve every launch before waiting: a launch failure fails the run with its own message (not as an
        # unfinished upstream of a wait), and a cached handle whose sweep is gone is relaunched.
        handles = {name: launch_stage(launched[name], **params[name]) for name in plans}
        waited = {
            n: wait_for_sweep.submit(handles[n], stage=n, timeout_s=timeout_s, campaign=key, **common) for n in plans
        }
        for name, plan in plans.items():
            status = waited[name].result()
            metric = plan.config.metric
            frame = collect_runs(status.id, stage=name, **common)
            analyze(frame, stage=name, metric=metric, campaign=key)
            stage = stage_result(name, status.id, status.state, status.reason, frame, metric)
            result.stages[name], done[name] = stage, Outcome(stage, frame, metric)
            logger.info(
                "stage %s: %s, %d runs, best %s = %s", name, status.state, stage.runs, stage.metric, stage.best_value
            )
