"""Derive rules on hand-made results: log ranges, ints, vanished categoricals, few runs, failed upstreams."""

from __future__ import annotations

import math

import pytest

from sweepflow.backends.base import RunRecord
from sweepflow.campaign.analysis import best_run, importance, runs_frame, top_k
from sweepflow.campaign.derive import DeriveError, derive_config
from sweepflow.config import Derive, load_sweep_config

BASE = load_sweep_config(
    {
        "method": "random",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
            "width": {"min": 1, "max": 100},
            "hidden": {"values": [16, 32, 64, 128]},
            "batch": {"values": [32, 64]},
            "opt": {"parameters": {"wd": {"min": 0.0, "max": 0.1}}},
            "old": {"distribution": "log_uniform", "min": -9.0, "max": -1.0},
        },
    }
)


def _run(i: int, loss: float | None, state: str = "finished", **config) -> RunRecord:
    full = {"lr": 1e-3, "width": 50, "hidden": 32, "batch": 32, "opt": {"wd": 0.05}, "old": math.exp(-4), **config}
    return RunRecord(
        id=f"r{i}", sweep_id="s", state=state, config=full, summary={} if loss is None else {"val_loss": loss}
    )


RUNS = [
    _run(0, 0.10, lr=1e-3, width=10, hidden=32, opt={"wd": 0.01}),
    _run(1, 0.12, lr=2e-3, width=12, hidden=64, opt={"wd": 0.02}),
    _run(2, 0.15, lr=4e-3, width=15, hidden=32, opt={"wd": 0.03}),
    _run(3, 0.90, lr=5e-2, width=90, hidden=128, opt={"wd": 0.09}),
    _run(4, None, state="failed", lr=1e-5, hidden=16),
    _run(5, 0.01, state="crashed", hidden=16),  # crashed runs never rank, whatever they logged
]


def test_log_range_narrows_in_log_space_and_contains_the_best() -> None:
    derived = derive_config(BASE, Derive(**{"from": "coarse", "top_k": 3, "narrow": ["lr"]}), runs_frame(RUNS))
    lr = derived.config.parameters["lr"]
    assert lr.distribution == "log_uniform_values"
    assert 1e-5 <= lr.min <= 1e-3 <= 4e-3 <= lr.max <= 1e-1
    # margin 0.25 of the log-span ln(4): the new bounds are the top-3 range widened by 4**0.25 each side
    assert lr.min == pytest.approx(1e-3 / 4**0.25) and lr.max == pytest.approx(4e-3 * 4**0.25)
    assert derived.best["lr"] == 1e-3 and derived.changes[0].parameter == "lr"


def test_ints_stay_ints_and_nested_parameters_narrow() -> None:
    rule = Derive(**{"from": "c", "top_k": 3, "narrow": ["width", "opt.wd"], "margin": 0.5})
    derived = derive_config(BASE, rule, runs_frame(RUNS))
    width = derived.config.parameters["width"]
    assert width.distribution == "int_uniform" and type(width.min) is int and type(width.max) is int
    assert (width.min, width.max) == (7, 18)  # 10..15, ± 2.5, floor/ceil
    wd = derived.config.parameters["opt"].parameters["wd"]
    assert wd.min == pytest.approx(0.0) and wd.max == pytest.approx(0.04)


def test_vanished_categoricals_are_dropped_and_warm_starts_filtered() -> None:
    rule = Derive(**{"from": "c", "top_k": 3, "keep_seen": ["hidden"], "fix": ["batch"], "warm_start": 4})
    derived = derive_config(BASE, rule, runs_frame(RUNS))
    assert derived.config.parameters["hidden"].values == [32, 64]
    assert derived.config.parameters["batch"].value == 32
    # The 4th best run used hidden=128, which left the space: it is not carried (bayes would raise on it).
    assert [w.source_run_id for w in derived.warm_start] == ["r0", "r1", "r2"]
    assert derived.warm_start[0].summary == {"val_loss": 0.10}


def test_fewer_runs_than_k_uses_what_there_is() -> None:
    derived = derive_config(BASE, Derive(**{"from": "c", "top_k": 10, "narrow": ["lr"]}), runs_frame(RUNS[:2]))
    assert "top-2" in derived.changes[0].why


def test_all_failed_upstream_is_a_clear_error() -> None:
    frame = runs_frame([_run(0, None, "failed"), _run(1, None, "crashed")])
    with pytest.raises(DeriveError, match=r"no finished run with metric 'val_loss'.*failed"):
        derive_config(BASE, Derive(**{"from": "coarse", "narrow": ["lr"]}), frame, stage="coarse")


def test_narrowing_a_categorical_is_a_clear_error() -> None:
    with pytest.raises(DeriveError, match="'hidden' is a categorical parameter"):
        derive_config(BASE, Derive(**{"from": "c", "narrow": ["hidden"]}), runs_frame(RUNS))


def test_exponent_form_narrows_its_exponents() -> None:
    runs = [_run(i, 0.1 * (i + 1), old=math.exp(x)) for i, x in enumerate([-5.0, -4.0, -3.0])]
    old = derive_config(
        BASE, Derive(**{"from": "c", "narrow": ["old"], "margin": 0}), runs_frame(runs)
    ).config.parameters["old"]
    assert (old.distribution, old.min, old.max) == ("log_uniform", pytest.approx(-5.0), pytest.approx(-3.0))


def test_overrides_and_result_is_validated() -> None:
    rule = Derive(**{"from": "c", "narrow": ["lr"], "method": "bayes", "run_cap": 8, "num_workers": 3, "queue": "q"})
    config = derive_config(BASE, rule, runs_frame(RUNS)).config
    assert (config.method, config.run_cap, config.num_workers, config.launch_queue) == ("bayes", 8, 3, "q")


def test_analysis_best_top_k_and_importance() -> None:
    frame = runs_frame(RUNS, stage="coarse")
    assert best_run(frame, BASE.metric)["run_id"] == "r0"
    assert list(top_k(frame, BASE.metric, 2)["run_id"]) == ["r0", "r1"]
    table = importance(frame, BASE.metric)
    assert set(table["parameter"]) >= {"lr", "width", "hidden"}
    assert table.loc[table["parameter"] == "width", "correlation"].item() > 0.9  # wider was worse
    assert table["importance"].sum() == pytest.approx(1.0)
