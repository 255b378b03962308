"""check_campaign: refuse, before any sweep exists, a campaign that can never run (one line: field and fix)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from sweepflow.campaign.preflight import check_campaign as check
from sweepflow.config import Pipeline


@task(name="check-campaign", task_run_name="check-campaign[{spec.name}]", cache_policy=NO_CACHE)
def check_campaign(spec: Pipeline, *, backend: str) -> None:
    """Raise :class:`~sweepflow.campaign.preflight.CampaignError` if ``spec`` cannot run on ``backend``."""
    check(spec, backend)
