"""derive_stage: a downstream stage's config from an upstream's results, published as a before/after artifact."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from sweepflow.campaign.derive import Derived, derive_config
from sweepflow.config import Derive, SweepConfig
from tasks._common import artifact_key


@task(name="derive-stage", cache_policy=NO_CACHE)
def derive_stage(base: SweepConfig, rule: Derive, upstream: pd.DataFrame, *, stage: str) -> Derived:
    """Apply the stage's ``derive`` rule; every change is shown with its reason so a person can audit it."""
    derived = derive_config(base, rule, upstream, stage=rule.from_)
    lines = [
        f"## Stage `{stage}` derived from `{rule.from_}`",
        "",
        "| parameter | before | after | why |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c.parameter} | `{c.before}` | `{c.after}` | {c.why} |" for c in derived.changes]
    lines += [
        "",
        f"Method {derived.config.method}, run_cap {derived.config.run_cap}, "
        f"{len(derived.warm_start)} warm-start run(s), upstream best: `{derived.best}`",
    ]
    create_markdown_artifact(
        "\n".join(lines), key=artifact_key(stage, "derived"), description=f"how {stage} was derived"
    )
    get_run_logger().info("stage %s: %d parameters changed from %s's results", stage, len(derived.changes), rule.from_)
    return derived
