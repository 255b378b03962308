"""The Python entry point: a sweep config against a function, through the controller and the store."""

from __future__ import annotations

from collections import Counter

import pytest

from sweepflow.errors import SweepflowError
from sweepflow.tune import tune

BAYES = {"method": "bayes", "metric": {"name": "loss"}, "run_cap": 8, "parameters": {"x": {"min": 0.0, "max": 1.0}}}


def _loss(config: dict) -> float:
    return (config["x"] - 0.3) ** 2


def test_tune_runs_a_function_through_the_store_and_a_seed_repeats_it() -> None:
    first = tune(BAYES, _loss, seed=3)
    assert first.state == "finished" and first.reason == "run_cap 8 reached" and len(first.runs) == 8
    assert all(r.state.value == "finished" and r.summary["loss"] == _loss(r.config) for r in first.runs)
    assert first.best_value == min(_loss(r.config) for r in first.runs)
    assert first.store.get_sweep(first.sweep_id).config["seed"] == 3  # recorded with the sweep
    again = tune(BAYES, _loss, seed=3)
    assert [r.config for r in again.runs] == [r.config for r in first.runs]
    assert [r.config for r in tune(BAYES, _loss, seed=4).runs] != [r.config for r in first.runs]


def test_a_restarted_sweep_continues_the_sequence_it_would_have_drawn(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"

    def failing_fifth(config: dict, calls: list, error: type[BaseException]) -> float:
        calls.append(config)
        if len(calls) == 5:
            raise error("stop")
        return _loss(config)

    # Reference: one process, its fifth run fails.
    ref_calls: list = []
    whole = tune(BAYES, lambda c: failing_fifth(c, ref_calls, ValueError), seed=5, store=url, key="whole")
    # The same sweep, but the process dies during its fifth run; a new process resumes it from the store.
    calls: list = []
    with pytest.raises(KeyboardInterrupt):
        tune(BAYES, lambda c: failing_fifth(c, calls, KeyboardInterrupt), seed=5, store=url, key="resumed")
    resumed = tune(BAYES, _loss, store=url, key="resumed")
    assert [r.state.value for r in resumed.runs] == [r.state.value for r in whole.runs]
    assert [r.config for r in resumed.runs] == [r.config for r in whole.runs]
    assert len(resumed.runs) == 8 and resumed.runs[4].stop_reason == "tune() was interrupted"


def test_a_generator_objective_lets_hyperband_stop_runs_and_failures_are_recorded() -> None:
    def curve(config: dict):
        if config["x"] > 0.95:
            raise ValueError("diverged")
        for epoch in range(27):
            yield {"val_loss": config["x"] + 1.0 / (epoch + 1), "epoch": epoch}

    result = tune(
        {
            "method": "random",
            "metric": {"name": "val_loss"},
            "run_cap": 12,
            "scheduler": {"num_workers": 4},
            "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
        },
        curve,
        seed=1,
    )
    states = Counter(r.state.value for r in result.runs)
    assert states["killed"] >= 4 and states["finished"] >= 1, states
    killed = [r for r in result.runs if r.state.value == "killed"]
    assert all(r.stop_reason.startswith("hyperband:") and len(result.store.history(r.id)) < 27 for r in killed)
    assert result.best_config["x"] == min(r.config["x"] for r in result.runs if r.state.value == "finished")


def test_nonsense_from_the_objective_is_one_clear_error() -> None:
    with pytest.raises(SweepflowError, match="returned 'oops'; return a number or a dict"):
        tune(BAYES, lambda c: "oops", seed=1)


PIPELINE = {
    "name": "staged",
    "stages": {
        "coarse": {
            "sweep": {
                "method": "random",
                "metric": {"name": "loss"},
                "run_cap": 8,
                "parameters": {"x": {"min": 0.0, "max": 1.0}, "kind": {"values": ["a", "b"]}},
            }
        },
        "fine": {
            "needs": ["coarse"],
            "derive": {"from": "coarse", "top_k": 3, "narrow": ["x"], "fix": ["kind"], "method": "bayes",
                       "run_cap": 6, "warm_start": 3},
        },
        "never": {"needs": ["coarse"], "when": {"stage": "coarse", "metric": "loss", "comparison": ">", "value": 10},
                  "sweep": {"method": "random", "metric": {"name": "loss"}, "run_cap": 2,
                            "parameters": {"x": {"min": 0.0, "max": 1.0}}}},
    },
}  # fmt: skip


def test_tune_pipeline_plans_stages_as_the_flow_does_and_a_seed_repeats_it(tmp_path) -> None:
    from sweepflow.tune import tune_pipeline

    url = f"sqlite:///{tmp_path / 'p.db'}"
    result = tune_pipeline(PIPELINE, _loss, store=url, seed=7)
    coarse, fine, never = (result.stages[n] for n in ("coarse", "fine", "never"))
    assert (coarse.state, coarse.runs, fine.state, fine.runs) == ("finished", 8, "finished", 6)
    assert never.state == "skipped" and "loss" in never.reason
    from sweepflow.store import get_store

    store = get_store(url)
    fine_sweep = store.get_sweep(fine.sweep_id)
    space = fine_sweep.config["parameters"]
    assert fine_sweep.config["method"] == "bayes" and set(space["kind"]) == {"value"}  # fixed to the best's value
    assert len(fine_sweep.prior_runs) == 3  # warm-started with coarse's top 3
    top3 = [r.config["x"] for r in sorted(store.runs(coarse.sweep_id), key=lambda r: r.summary["loss"])[:3]]
    assert space["x"]["min"] <= min(top3) <= max(top3) <= space["x"]["max"] < space["x"]["min"] + 0.5  # narrowed
    assert result.best_value == min(coarse.best_value, fine.best_value)
    assert result.best_config == {"coarse": coarse, "fine": fine}[result.best_stage].best_config
    # The same seed repeats the campaign; the same key on the same store resumes it instead of running again.
    again = tune_pipeline(PIPELINE, _loss, seed=7)
    assert again.stages["fine"].best_config == fine.best_config
    resumed = tune_pipeline(PIPELINE, _loss, store=url, seed=7)
    assert resumed.stages["fine"].sweep_id == fine.sweep_id and len(store.runs(fine.sweep_id)) == 6
