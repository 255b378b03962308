"""The one best-run rule, on both shapes it meets: run records (status, controller) and DataFrames (analysis)."""

from __future__ import annotations

import math

import pytest

from sweepflow.backends.base import RunRecord
from sweepflow.campaign.analysis import best_run, runs_frame
from sweepflow.config import Metric
from sweepflow.ranking import best, lookup, metric_value, reaches, usable
from sweepflow.states import RunState


def _run(i: int, state: str, summary: dict) -> RunRecord:
    return RunRecord(id=f"r{i}", sweep_id="s", state=state, config={"x": i}, summary=summary)


RUNS = [
    _run(0, "finished", {"loss": 0.5, "val": {"acc": 0.7}}),
    _run(1, "killed", {"loss": 0.3, "val": {"acc": 0.9}}),  # stopped early by Hyperband: its value is real
    _run(2, "crashed", {"loss": 0.01, "val": {"acc": 0.99}}),  # crashed runs never rank, whatever they logged
    _run(3, "finished", {"loss": math.nan}),
    _run(4, "finished", {"loss": True}),  # a bool is not a metric value
    _run(5, "running", {"loss": 0.0}),
    _run(6, "finished", {"loss": 0.3}),  # ties with r1: the first one wins
]


def test_dotted_names_reach_into_nested_dicts_as_wandbs_summary_does() -> None:
    assert lookup({"val": {"acc": 0.5}}, "val.acc") == 0.5
    assert lookup({"val.acc": 0.25, "val": {"acc": 0.5}}, "val.acc") == 0.25  # the flat key wins
    assert lookup({"val": 3}, "val.acc") is None
    assert metric_value({"m": math.inf}, "m") is None and metric_value({"m": "0.1"}, "m") is None


def test_usable_states_and_targets() -> None:
    assert [s for s in RunState if usable(s)] == [RunState.FINISHED, RunState.KILLED]
    assert reaches(0.1, 0.1, "minimize") and not reaches(0.11, 0.1, "minimize") and reaches(0.9, 0.8, "maximize")


@pytest.mark.parametrize(
    ("metric", "expected"),
    [(Metric(name="loss"), ("r1", 0.3)), (Metric(name="val.acc", goal="maximize"), ("r1", 0.9))],
)
def test_records_and_frames_agree_on_the_best_run(metric: Metric, expected: tuple[str, float]) -> None:
    found = best(RUNS, metric, state=lambda r: r.state, summary=lambda r: r.summary)
    assert found is not None and (found[0].id, found[1]) == expected
    row = best_run(runs_frame(RUNS), metric)
    assert row is not None and row["run_id"] == expected[0]


def test_no_usable_run_means_no_best() -> None:
    runs = [_run(0, "failed", {"loss": 0.1}), _run(1, "finished", {})]
    assert best(runs, Metric(name="loss"), state=lambda r: r.state, summary=lambda r: r.summary) is None
    assert best_run(runs_frame(runs), Metric(name="loss")) is None
