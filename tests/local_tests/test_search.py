"""The engine wrapper: W&B's own search and Hyperband, seeded explicitly, returning plain JSON values."""

from __future__ import annotations

import json
import random

import numpy as np

from sweepflow.config import load_sweep_config
from sweepflow.local.search import HyperbandStopper, Trial, searcher_for, to_json


def _run_sweep(config: dict, n: int, seed: int = 0) -> list[dict]:
    searcher = searcher_for(load_sweep_config(config), np.random.default_rng(seed))
    trials: list[Trial] = []
    for i in range(n):
        suggestion = searcher.suggest(trials)
        if suggestion is None:
            break
        loss = (suggestion.get("x", 0.5) - 0.3) ** 2
        trials.append(Trial(str(i), suggestion, "finished", {"loss": loss}, [{"loss": loss}]))
    return [t.config for t in trials]


def test_grid_enumerates_each_point_once_then_stops() -> None:
    configs = _run_sweep(
        {"method": "grid", "parameters": {"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}}}, 50
    )
    assert len(configs) == 6
    assert {(c["a"], c["b"]) for c in configs} == {(a, b) for a in (1, 2, 3) for b in ("x", "y")}


def test_bayes_is_reproducible_from_its_seed_and_leaves_global_rngs_alone() -> None:
    config = {
        "method": "bayes",
        "metric": {"name": "loss"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "o": {"parameters": {"k": {"min": 1, "max": 5}}}},
    }
    random.seed(7)
    np.random.seed(7)
    before = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    first = _run_sweep(config, 6, seed=1)
    assert (random.random(), np.random.random()) == before
    assert _run_sweep(config, 6, seed=1) == first
    assert _run_sweep(config, 6, seed=2) != first
    # Values are plain JSON types (the engine itself returns numpy scalars), nested parameters stay nested.
    assert json.loads(json.dumps(first)) == first
    assert all(type(c["o"]["k"]) is int and type(c["x"]) is float for c in first)


def test_to_json_converts_numpy() -> None:
    assert to_json({"a": np.float32(0.5), "b": [np.int64(3), np.bool_(True)], "c": np.array([1, 2])}) == {
        "a": 0.5,
        "b": [3, True],
        "c": [1, 2],
    }


def test_hyperband_stops_the_run_behind_at_a_band_and_says_why() -> None:
    config = load_sweep_config(
        {
            "method": "random",
            "metric": {"name": "loss", "goal": "minimize"},
            "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
        }
    )
    good = [{"loss": 1.0}, {"loss": 0.5}, {"loss": 0.4}]
    trials = [
        Trial("a", {"x": 0.1}, "finished", history=good),
        Trial("b", {"x": 0.2}, "finished", history=[{"loss": 1.0}, {"loss": 0.4}]),
        Trial("slow", {"x": 0.3}, "running", history=[{"loss": 2.0}, {"loss": 1.9}]),
        Trial("fast", {"x": 0.4}, "running", history=[{"loss": 0.9}, {"loss": 0.3}]),
        Trial("young", {"x": 0.5}, "running", history=[{"loss": 5.0}]),  # not yet at the first band
    ]
    stops = HyperbandStopper(config).to_stop(trials)
    assert set(stops) == {"slow"}
    assert "Band: 2" in stops["slow"] and "Metric: 1.9" in stops["slow"]
    assert (
        HyperbandStopper(load_sweep_config({"method": "random", "parameters": {"x": {"value": 1}}})).to_stop(trials)
        == {}
    )
