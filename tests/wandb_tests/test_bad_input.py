"""A campaign W&B can never run as given fails before any sweep exists, one line per problem: field and fix."""

from __future__ import annotations

import pytest

from sweepflow.campaign.preflight import CampaignError, check_campaign
from sweepflow.config import Pipeline
from tests.backend_tests.conftest import curve_config
from tests.wandb_stub.server import StubServer


def test_a_stage_w_and_b_cannot_run_is_refused_before_anything_is_sent(stub: StubServer) -> None:
    no_program = {k: v for k, v in curve_config().items() if k != "program"}
    launch_without_queue = {**no_program, "job": "team/proj/train:latest"}
    spec = Pipeline.model_validate(
        {
            "name": "camp",
            "backend": "wandb",
            "stages": {"a": {"sweep": no_program}, "b": {"sweep": launch_without_queue}},
        }
    )
    with pytest.raises(CampaignError) as caught:
        check_campaign(spec, "wandb")
    assert str(caught.value) == (
        "pipeline 'camp': stages.a.sweep.program: is missing: W&B agents run a training script. Fix: give it "
        "(`program: train.py`), or a Launch `job:` and `queue:` for a Launch sweep.; stages.b.sweep.queue: a Launch "
        "sweep needs a run queue. Fix: add `queue: <name>` (or `launch: {queue: <name>}`), as `wandb launch-sweep "
        "--queue` takes it."
    )
    assert stub.log == []
    fine = Pipeline.model_validate({"name": "ok", "backend": "wandb", "stages": {"a": {"sweep": curve_config()}}})
    check_campaign(fine, "wandb")  # a program for W&B agents: nothing to refuse
