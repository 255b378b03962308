"""What can be checked about a campaign before any sweep is created, each problem as one line.

A campaign started from Prefect's UI runs on a worker minutes later; an input that can never work (a spec path
that does not exist, an override naming an unknown stage, a backend this install does not have, a job the
backend cannot find) must fail the run at once, before anything is created, with the same line
``sweepflow validate`` prints for it.
"""

from __future__ import annotations

from pathlib import Path

from sweepflow.config import Pipeline, load_pipeline
from sweepflow.errors import ConfigError, Issue, SweepflowError
from sweepflow.shipped import shipped_spec


class CampaignError(SweepflowError):
    """A campaign that can never run as given; the message is one line (field, problem, fix)."""


def one_line(source: str, issues: list[Issue]) -> str:
    """Issues of one file as one line: ``source: issue; issue``."""
    return f"{source}: " + "; ".join(str(issue) for issue in issues)


def load_campaign(path: str | Path) -> Pipeline:
    """The pipeline spec at ``path``, or :class:`CampaignError` in one line (a missing file names where it looked).

    A relative ``deployments/<name>`` that is not in the working directory is one of the specs sweepflow ships, so
    the deployments' defaults work on a worker that has the wheel and no checkout.
    """
    source = Path(path)
    if not source.is_file() and not source.is_absolute():
        source = shipped_spec(source) or source
    if not source.is_file():
        raise CampaignError(
            f"pipeline: no such file {str(path)!r} (looked in {Path.cwd()}). Fix: give a spec path relative to the "
            "deployment's working directory, e.g. deployments/digits-campaign.yaml."
        )
    try:
        return load_pipeline(source)
    except ConfigError as exc:
        raise CampaignError("pipeline " + one_line(exc.source, exc.issues)) from None


def campaign_issues(spec: Pipeline, backend: str) -> list[Issue]:
    """Every reason ``spec`` cannot run on ``backend``, worded as ``sweepflow validate`` words them."""
    from sweepflow.backends import BACKENDS

    if backend not in BACKENDS:
        return [
            Issue("backend", f"{backend!r} is not available in this install.", f"use one of {', '.join(BACKENDS)}.")
        ]
    issues = []
    if backend == "local":
        from sweepflow.backends.local import check_local as check
    elif backend == "wandb":
        from sweepflow.backends.wandb_config import check_wandb as check
    else:
        return issues
    for name, stage in spec.stages.items():
        if stage.sweep is not None:
            prefix = f"stages.{name}.sweep"
            for issue in check(stage.sweep):
                issues.append(Issue(f"{prefix}.{issue.path}" if issue.path else prefix, issue.message, issue.fix))
    return issues


def check_campaign(spec: Pipeline, backend: str) -> None:
    """Raise :class:`CampaignError` (one line) if the campaign can never run on ``backend``."""
    issues = campaign_issues(spec, backend)
    if issues:
        raise CampaignError(one_line(f"pipeline {spec.name!r}", issues))
