"""Pipeline specs: a DAG of stages, validated whole, with errors that name the stage and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweepflow.config import check_file, check_pipeline, load_pipeline
from sweepflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SWEEP = {"method": "random", "metric": {"name": "loss"}, "parameters": {"lr": {"min": 0.001, "max": 0.1}}}


def _spec(**stages) -> dict:
    return {"name": "camp", "stages": stages}


def test_demo_campaign_loads_with_stage_file_relative_to_spec() -> None:
    pipeline = load_pipeline(ROOT / "deployments" / "digits-campaign.yaml")
    assert pipeline.levels() == [["coarse"], ["fine"]]
    assert pipeline.stages["coarse"].sweep.num_workers == 2
    assert pipeline.base_config("fine") is pipeline.stages["coarse"].sweep
    assert pipeline.stages["fine"].derive.from_ == "coarse" and pipeline.pipeline_key == "digits"


def test_independent_stages_share_a_level() -> None:
    pipeline = load_pipeline(
        _spec(
            a={"sweep": SWEEP}, b={"sweep": SWEEP}, c={"needs": ["a", "b"], "derive": {"from": "a", "narrow": ["lr"]}}
        )
    )
    assert pipeline.levels() == [["a", "b"], ["c"]]


@pytest.mark.parametrize(
    ("stages", "path", "words"),
    [
        ({"a": {"sweep": SWEEP, "needs": ["zz"]}}, "stages.a.needs[0]", "unknown stage 'zz'"),
        ({"a": {"sweep": SWEEP, "needs": ["b"]}, "b": {"sweep": SWEEP, "needs": ["a"]}}, "stages.a.needs", "cycle"),
        ({"a": {"sweep": SWEEP}, "b": {"derive": {"from": "a"}}}, "stages.b.derive.from", "not in `needs`"),
        (
            {
                "a": {"sweep": SWEEP},
                "b": {"sweep": SWEEP, "when": {"stage": "a", "metric": "acc", "comparison": ">", "value": 1}},
            },
            "stages.b.when.stage",
            "not in `needs`",
        ),
        (
            {"a": {"sweep": SWEEP}, "b": {"needs": ["a"], "derive": {"from": "a", "fix": ["nope"]}}},
            "stages.b.derive.fix",
            "unknown parameter 'nope'",
        ),
        ({"a": {}}, "stages.a.sweep", "is required"),
        ({"a": {"sweep": {**SWEEP, "method": "grid"}}}, "stages.a.sweep.parameters.lr", "grid search"),
        ({"a": {"sweep": "missing.yaml"}}, "stages.a.sweep", "no such file"),
        (
            {"a": {"sweep": SWEEP, "when": {"stage": "a", "metric": "m", "comparison": "=~", "value": 1}}},
            "stages.a.when.comparison",
            "not allowed",
        ),
    ],
)
def test_pipeline_errors_name_the_field(stages: dict, path: str, words: str) -> None:
    errors = check_pipeline(_spec(**stages)).errors
    assert any(e.path == path and words in str(e) for e in errors), [str(e) for e in errors]


def test_when_condition_is_structured() -> None:
    spec = _spec(
        a={"sweep": SWEEP},
        b={
            "sweep": SWEEP,
            "needs": ["a"],
            "when": {"stage": "a", "metric": "val_acc", "comparison": ">=", "value": 0.9},
        },
    )
    when = load_pipeline(spec).stages["b"].when
    assert when.holds(0.95) and when.holds(0.9) and not when.holds(0.5)
    assert str(when) == "best val_acc of stage a >= 0.9"


def test_load_pipeline_raises_config_error_located_in_the_stage(tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: camp\nstages:\n  a: {sweep: {method: grid, parameters: {x: {min: 0.1, max: 1.0}}}, needs: [q]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_pipeline(spec)
    # Stage contents are checked first; the DAG is checked once every stage is valid.
    assert [i.path for i in info.value.issues] == ["stages.a.sweep.parameters.x"]
    assert check_file(spec).kind == "pipeline"


def test_pipeline_json_schema_carries_descriptions() -> None:
    from sweepflow.config import Pipeline

    schema = Pipeline.model_json_schema()
    assert "description" in schema["properties"]["stages"]
    assert schema["$defs"]["Derive"]["properties"]["top_k"]["description"]
