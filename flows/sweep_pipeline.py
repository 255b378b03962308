"""sweep_pipeline: a campaign of sweeps as one durable DAG.

Stages run level by level (``Pipeline.levels``); the stages of a level run concurrently (task futures). Each stage
is planned first (``plan_stage``: skipped with its reason when an upstream did not finish or its ``when`` is
false; its space derived from the upstream's runs; warm-start runs carried), then launched, waited on, collected
and analyzed. Re-running the flow with the same pipeline key resumes: each stage's sweep is keyed on (pipeline
key, stage), so finished stages return their results at once and running ones are re-attached, never re-created.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from sweepflow.campaign.analysis import runs_frame
from sweepflow.campaign.plan import Outcome, Skip
from sweepflow.campaign.results import CampaignResult, StageResult, stage_result
from sweepflow.config import Pipeline, load_pipeline
from sweepflow.config.pipeline import check_campaign_key
from sweepflow.errors import SweepflowError
from sweepflow.settings import Settings
from tasks.analyze import analyze
from tasks.collect_runs import collect_runs
from tasks.launch_sweep import launch_sweep
from tasks.plan_stage import plan_stage
from tasks.report import report
from tasks.wait_for_sweep import wait_for_sweep


@flow(name="sweep-pipeline", log_prints=True)
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
    spec = load_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    try:
        key = check_campaign_key(key or spec.pipeline_key)
    except ValueError as exc:
        raise SweepflowError(f"key: {exc}. Fix: pass another key.") from None
    common = {"backend": backend or spec.backend, "store": store}
    result = CampaignResult(pipeline=spec.name, key=key)
    done: dict[str, Outcome] = {}

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
        launched = {
            name: launch_sweep.submit(
                plan.config,
                pipeline_key=key,
                stage=name,
                project=spec.project or spec.name,
                prior_runs=plan.prior_runs,
                **common,
            )
            for name, plan in plans.items()
        }
        waited = {n: wait_for_sweep.submit(launched[n], stage=n, timeout_s=timeout_s, **common) for n in plans}
        for name, plan in plans.items():
            status = waited[name].result()
            metric = plan.config.metric
            frame = collect_runs(status.id, stage=name, **common)
            analyze(frame, stage=name, metric=metric)
            stage = stage_result(name, status.id, status.state, status.reason, frame, metric)
            result.stages[name], done[name] = stage, Outcome(stage, frame, metric)
            logger.info(
                "stage %s: %s, %d runs, best %s = %s", name, status.state, stage.runs, stage.metric, stage.best_value
            )

    result.pick_best()
    out = report_dir or str(Settings().home_dir / "reports" / key.replace("/", "_"))
    ran = {name: outcome for name, outcome in done.items() if outcome.result.sweep_id}
    report(result, {n: o.frame for n, o in ran.items()}, {n: o.metric for n, o in ran.items()}, out)
    result.report_dir = out
    return result
