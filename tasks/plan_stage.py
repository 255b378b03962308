"""plan_stage: decide what a stage runs (or why it is skipped); a derived space is published as a before/after."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from sweepflow.campaign.analysis import runs_frame
from sweepflow.campaign.plan import Outcome, Plan, Skip
from sweepflow.campaign.plan import plan_stage as plan
from sweepflow.campaign.report import describe_param, fmt
from sweepflow.config import Pipeline
from sweepflow.tasks._common import artifact_key, backend_for


@task(name="plan-stage", task_run_name="plan-stage[{name}]", cache_policy=NO_CACHE)
def plan_stage(
    spec: Pipeline, name: str, done: Mapping[str, Outcome], *, key: str, backend: str, store: str | None = None
) -> Plan | Skip:
    """The stage's plan (config and warm-start runs) or its skip; every derived change is shown with its reason."""
    client = backend_for(backend, store)
    decided = plan(spec, name, done, lambda sweep_id: runs_frame(client.runs(sweep_id), stage=f"{name}-warm-start"))
    logger = get_run_logger()
    if isinstance(decided, Skip):
        logger.info("stage %s skipped: %s", name, decided.reason)
        return decided
    derived = decided.derived
    if derived is not None:
        rule = spec.stages[name].derive
        assert rule is not None
        lines = [f"## Stage `{name}` derived from `{rule.from_}`", "", "| parameter | before | after | why |"]
        lines.append("|---|---|---|---|")
        lines += [
            f"| {c.parameter} | {describe_param(c.before)} | {describe_param(c.after)} | {c.why} |"
            for c in derived.changes
        ]
        lines += [
            "",
            f"Method {derived.config.method}, run_cap {derived.config.run_cap}, "
            f"{len(derived.warm_start)} warm-start run(s); upstream best: "
            + ", ".join(f"{k} = {fmt(v)}" for k, v in derived.best.items()),
        ]
        create_markdown_artifact(
            "\n".join(lines), key=artifact_key(key, name, "derived"), description=f"how {name} was derived"
        )
        logger.info("stage %s: %d parameters changed from %s's results", name, len(derived.changes), rule.from_)
    return decided
