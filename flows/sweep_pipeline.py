"""sweep_pipeline: a campaign of sweeps as one durable DAG.

Stages run level by level (``Pipeline.levels``); the stages of a level run concurrently (task futures). Before a
stage starts, its ``when`` is evaluated on its upstream's runs (a false one skips the stage, and everything that
needs it, with the reason) and its ``derive`` rule builds its space from the upstream's results. Re-running the
flow with the same pipeline key resumes: each stage's sweep is keyed on (pipeline key, stage), so finished stages
return their results at once and running ones are re-attached, never re-created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from sweepflow.backends import RunRecord
from sweepflow.campaign.derive import warm_start_runs
from sweepflow.campaign.results import CampaignResult, StageResult, evaluate_when, stage_result
from sweepflow.config import Metric, Pipeline, SweepConfig, load_pipeline
from sweepflow.settings import Settings
from tasks.analyze import analyze
from tasks.collect_runs import collect_runs
from tasks.derive_stage import derive_stage
from tasks.launch_sweep import launch_sweep
from tasks.report import report
from tasks.wait_for_sweep import wait_for_sweep


def _priors(runs: list[dict[str, Any]], sweep_id: str) -> list[RunRecord]:
    return [
        RunRecord(id=str(r["run_id"]), sweep_id=sweep_id, state="finished", config=r["config"], summary=r["summary"])
        for r in runs
    ]


@flow(name="sweep-pipeline", log_prints=True)
def sweep_pipeline(
    pipeline: Pipeline | str,
    key: str | None = None,
    backend: str | None = None,
    store: str | None = None,
    timeout_s: float = 6 * 3600,
    report_dir: str | None = None,
    config_dir: str | None = None,
) -> CampaignResult:
    """Run a pipeline spec (a YAML path or the model) and return the best config overall and per stage.

    Args:
        pipeline: the spec, or the path of its YAML file (stage sweep paths are relative to it).
        key: the campaign's identity; the same key resumes the same sweeps (default: the spec's key or name).
        backend: override the spec's backend (`local` or `wandb`).
        store: the local backend's store URL (default: `$SWEEPFLOW_HOME`).
        timeout_s: how long to wait for each stage's sweep.
        report_dir: where plots and the summary go (default: `$SWEEPFLOW_HOME/reports/<key>`).
        config_dir: where relative programs and the job registry are looked up, for a spec given as a model
            (default: the spec file's folder, or the working directory).
    """
    logger = get_run_logger()
    if config_dir is None and isinstance(pipeline, str):
        config_dir = str(Path(pipeline).resolve().parent)
    spec = load_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    key = key or spec.pipeline_key
    backend = backend or spec.backend
    result = CampaignResult(pipeline=spec.name, key=key)
    frames: dict[str, pd.DataFrame] = {}
    metrics: dict[str, Metric | None] = {}
    common = {"backend": backend, "store": store}

    for level in spec.levels():
        planned: dict[str, tuple[SweepConfig, list[RunRecord]]] = {}
        for name in level:
            stage = spec.stages[name]
            skipped = [n for n in stage.needs if result.stages[n].state != "finished"]
            if skipped:
                reason = f"upstream stage {skipped[0]} {result.stages[skipped[0]].state}"
                result.stages[name] = StageResult(name=name, state="skipped", reason=reason)
                logger.info("stage %s skipped: %s", name, reason)
                continue
            if stage.when is not None:
                holds, why = evaluate_when(stage.when, frames[stage.when.stage], metrics[stage.when.stage])
                if not holds:
                    result.stages[name] = StageResult(name=name, state="skipped", reason=why)
                    logger.info("stage %s skipped: %s", name, why)
                    continue
            config, priors = spec.base_config(name), []
            if stage.derive is not None:
                upstream = stage.derive.from_
                derived = derive_stage(config, stage.derive, frames[upstream], stage=name)
                config, priors = derived.config, _priors(derived.warm_start, result.stages[upstream].sweep_id or "")
            if stage.warm_start is not None and config.metric is not None:
                source = collect_runs(stage.warm_start.sweep, stage=f"{name}-warm-start", **common)
                priors += _priors(
                    warm_start_runs(config, source, config.metric, stage.warm_start.top_k), stage.warm_start.sweep
                )
            planned[name] = (config, priors)

        launched = {
            name: launch_sweep.submit(
                config,
                pipeline_key=key,
                stage=name,
                project=spec.project or spec.name,
                prior_runs=priors,
                config_dir=config_dir,
                **common,
            )
            for name, (config, priors) in planned.items()
        }
        waited = {n: wait_for_sweep.submit(launched[n], stage=n, timeout_s=timeout_s, **common) for n in planned}
        for name, (config, _) in planned.items():
            status = waited[name].result()
            frame = collect_runs(status.id, stage=name, **common)
            analyze(frame, stage=name, metric=config.metric)
            frames[name], metrics[name] = frame, config.metric
            result.stages[name] = stage_result(name, status.id, status.state, status.reason, frame, config.metric)
            best = result.stages[name]
            logger.info(
                "stage %s: %s, %d runs, best %s = %s", name, status.state, best.runs, best.metric, best.best_value
            )

    result.pick_best()
    out = report_dir or str(Settings().home_dir / "reports" / key.replace("/", "_"))
    report(result, frames, metrics, out)
    result.report_dir = out
    return result
