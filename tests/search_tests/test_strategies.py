"""Named strategies run end to end through `tune_pipeline`, and warm-start runs count as an Optuna sampler's
startup trials (else a warm-started stage would spend its first trials at random)."""

from __future__ import annotations

import importlib.util

import pytest

from sweepflow.config import load_sweep_config
from sweepflow.config.strategies import OPTUNA_JOB, STRATEGIES
from sweepflow.errors import ConfigError
from sweepflow.local.search import Trial, searcher_for
from sweepflow.store import get_store
from sweepflow.tune import tune_pipeline

pytest.importorskip("optuna")
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="Optuna's GPSampler needs torch (sweepflow[optuna-gp])")
SPACE = {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}


def _loss(c: dict) -> float:
    return (c["x"] - 0.8) ** 2 + (c["y"] - 0.2) ** 2


GP = {n for n, s in STRATEGIES.items() if "GPSampler" in (s.explore, s.exploit)}


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_torch if n in GP else ()) for n in STRATEGIES])
def test_each_strategy_runs_end_to_end_through_tune_pipeline(name: str, tmp_path) -> None:
    strategy, budget = STRATEGIES[name], 10
    store = get_store(f"sqlite:///{tmp_path / 's.db'}")
    spec = {"name": "camp", "stages": {"search": {"strategy": name, "sweep": {
        "method": "random", "metric": {"name": "loss"}, "run_cap": budget, "parameters": SPACE}}}}  # fmt: skip
    result = tune_pipeline(spec, _loss, store=store, seed=5)
    first, rest = strategy.split(budget)
    explore, exploit = result.stages["search-explore"], result.stages["search"]
    assert (explore.state, explore.runs, exploit.state, exploit.runs) == ("finished", first, "finished", rest)
    sweep = store.get_sweep(exploit.sweep_id)
    assert sweep.config["scheduler"]["settings"]["sampler"]["type"] == strategy.exploit
    explore_runs = store.runs(explore.sweep_id)
    carried = {tuple(p["config"].items()) for p in sweep.prior_runs}
    assert carried <= {tuple(r.config.items()) for r in explore_runs}
    if strategy.narrow_top_k:  # the space shrinks around the top-k explore runs, which all carry over
        top = sorted(explore_runs, key=lambda r: r.summary["loss"])[: strategy.narrow_top_k]
        for p in ("x", "y"):
            lo, hi = sweep.config["parameters"][p]["min"], sweep.config["parameters"][p]["max"]
            assert lo <= min(r.config[p] for r in top) <= max(r.config[p] for r in top) <= hi and hi - lo < 1
            assert all(lo <= r.config[p] <= hi for r in store.runs(exploit.sweep_id))
        assert strategy.narrow_top_k <= len(carried) < first
    else:  # the whole space: every explore run is a warm-start run
        assert sweep.config["parameters"] == SPACE
        assert len(carried) == first
    assert result.best_value == min(explore.best_value, exploit.best_value)


def test_an_unknown_strategy_is_refused_before_anything_is_stored(tmp_path) -> None:
    store = get_store(f"sqlite:///{tmp_path / 's.db'}")
    spec = {"name": "camp", "stages": {"search": {"strategy": "turbo", "sweep": {
        "method": "random", "metric": {"name": "loss"}, "run_cap": 4, "parameters": SPACE}}}}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        tune_pipeline(spec, _loss, store=store, seed=1)
    [issue] = info.value.issues
    assert str(issue) == f"stages.search.strategy: 'turbo' is not a strategy; use one of {', '.join(STRATEGIES)}."
    assert store.list_sweeps() == []


def _suggestions(sampler: str, startup: int, n: int = 5) -> list[dict]:
    sampler_block = {"type": sampler, "args": {"n_startup_trials": startup}}
    scheduler = {"job": OPTUNA_JOB, "settings": {"sampler": sampler_block}}
    config = load_sweep_config({"metric": {"name": "loss"}, "parameters": SPACE, "scheduler": scheduler})
    grid = [{"x": i / 9, "y": (4 * i % 9) / 9} for i in range(10)]
    trials = [Trial(f"p{i}", c, "finished", {"loss": _loss(c)}, prior=True) for i, c in enumerate(grid)]
    searcher, out = searcher_for(config, 1), []
    for i in range(n):
        out.append(searcher.suggest(trials))
        trials.append(Trial(str(i), out[-1], "finished", {"loss": _loss(out[-1])}))
    return out


def test_warm_start_runs_count_as_startup_trials() -> None:
    # Were priors ignored, 10 priors with n_startup_trials=10 would still be in the random startup, and draw
    # exactly what the same seed draws with a startup of 100.
    assert _suggestions("TPESampler", 10) != _suggestions("TPESampler", 100)


@needs_torch
def test_a_warm_started_gp_models_from_its_first_trial() -> None:
    near = [abs(c["x"] - 0.8) + abs(c["y"] - 0.2) < 0.1 for c in _suggestions("GPSampler", 10)]
    assert all(near)  # the priors already show where the minimum is
    assert not all(abs(c["x"] - 0.8) + abs(c["y"] - 0.2) < 0.1 for c in _suggestions("GPSampler", 100))
