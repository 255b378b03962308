"""plan_stage without Prefect: skips with their reasons, derived spaces, warm starts from another sweep."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sweepflow.campaign.analysis import runs_frame
from sweepflow.campaign.plan import Outcome, Plan, Skip, plan_stage
from sweepflow.campaign.results import StageResult
from sweepflow.config import Metric, load_pipeline
from tests.campaign_tests.test_derive import BASE, RUNS

SWEEP = BASE.to_wandb()
SPEC = load_pipeline(
    {
        "name": "p",
        "stages": {
            "coarse": {"sweep": SWEEP},
            "fine": {"needs": ["coarse"], "derive": {"from": "coarse", "top_k": 3, "narrow": ["lr"], "warm_start": 2}},
            "branch": {
                "sweep": SWEEP,
                "needs": ["coarse"],
                "when": {"stage": "coarse", "metric": "val_loss", "comparison": "<", "value": 0.05},
            },
            "seeded": {"sweep": SWEEP, "warm_start": {"sweep": "old-sweep", "top_k": 2}},
        },
    },
    base_dir=Path(__file__).parent,
)
LOSS = Metric(name="val_loss")


def _done(state: str = "finished") -> dict[str, Outcome]:
    return {"coarse": Outcome(StageResult(name="coarse", state=state), runs_frame(RUNS, stage="coarse"), LOSS)}


def _no_reads(sweep_id: str) -> pd.DataFrame:
    raise AssertionError(f"read runs of {sweep_id}")


def test_a_root_stage_runs_its_own_config() -> None:
    plan = plan_stage(SPEC, "coarse", {}, _no_reads)
    assert isinstance(plan, Plan) and plan.config == SPEC.stages["coarse"].sweep and plan.prior_runs == []


def test_derive_narrows_and_carries_the_top_runs_that_fit() -> None:
    plan = plan_stage(SPEC, "fine", _done(), _no_reads)
    assert isinstance(plan, Plan) and plan.derived is not None
    assert plan.config.parameters["lr"].max < 1e-1
    assert [p.source_run_id for p in plan.prior_runs] == ["r0", "r1"]
    assert plan.config.source_dir == str(Path(__file__).parent.resolve())  # its program resolves where it did


@pytest.mark.parametrize("state", ["failed", "canceled", "skipped"])
def test_an_upstream_that_did_not_finish_skips_the_stage(state: str) -> None:
    assert plan_stage(SPEC, "fine", _done(state), _no_reads) == Skip("fine", f"upstream stage coarse {state}")


def test_a_false_when_skips_with_what_was_observed() -> None:
    skip = plan_stage(SPEC, "branch", _done(), _no_reads)
    assert isinstance(skip, Skip) and "observed 0.1, so the condition is false" in skip.reason


def test_warm_start_reads_the_source_sweep_and_keeps_the_best() -> None:
    read: list[str] = []

    def runs_of(sweep_id: str) -> pd.DataFrame:
        read.append(sweep_id)
        return runs_frame(RUNS)

    plan = plan_stage(SPEC, "seeded", {}, runs_of)
    assert read == ["old-sweep"] and isinstance(plan, Plan)
    assert [(p.source_run_id, p.summary) for p in plan.prior_runs] == [
        ("r0", {"val_loss": 0.10}),
        ("r1", {"val_loss": 0.12}),
    ]
