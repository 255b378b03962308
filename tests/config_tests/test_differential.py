"""Generated configs, valid and invalid: our models accept exactly what W&B accepts.

Each case is drawn from a small grammar of keys and values that W&B users write (and get wrong), and the verdict of
``SweepConfig`` alone (without W&B's validator behind it) is compared with W&B's own (tests/wandb_oracle.py).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from sweepflow.config import SweepConfig
from sweepflow.config.wandb_check import _first_run
from sweepflow.local.search._sweeps import seeded
from tests.wandb_oracle import wandb_accepts

DISTS = [
    "constant", "categorical", "categorical_w_probabilities", "int_uniform", "uniform", "q_uniform",
    "log_uniform", "log_uniform_values", "inv_log_uniform", "inv_log_uniform_values", "q_log_uniform",
    "q_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta", "gaussian",
]  # fmt: skip
GOOD = [
    {"values": [1, 2, 3]},
    {"value": "adam"},
    {"min": 1, "max": 10},
    {"min": 0.001, "max": 0.1},
    {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
    {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
    {"distribution": "int_uniform", "min": 1, "max": 4},
    {"distribution": "normal", "mu": 0, "sigma": 1},
    {"distribution": "q_log_uniform_values", "min": 1, "max": 64, "q": 1},
    {"distribution": "beta", "a": 2, "b": 3},
    {"values": ["a", "b"], "probabilities": [0.25, 0.75]},
    {"distribution": "log_uniform", "min": -9, "max": -2},
]
NUMBERS = [0, 1, 3, 10, -2, 0.0, 0.5, 1.5, 1e-4, -1.0, 2.0, True, "1e-3", None]


def _parameter(rng: random.Random, depth: int) -> Any:
    if depth < 2 and rng.random() < 0.12:
        return {"parameters": {f"n{i}": _parameter(rng, depth + 1) for i in range(rng.randint(1, 2))}}
    if rng.random() < 0.03:
        return rng.choice([[1, 2], 5, "x"])
    if rng.random() < 0.6:
        return dict(rng.choice(GOOD))
    p: dict[str, Any] = {}
    shape = rng.choice(["value", "values", "range", "dist", "mixed"])
    if shape == "value":
        p["value"] = rng.choice([1, "a", 0.1, None, [1, 2]])
    elif shape == "values":
        p["values"] = rng.choice([[1, 2, 3], ["a", "b"], [], [0.1], 4])
        if rng.random() < 0.3:
            p["probabilities"] = rng.choice([[0.5, 0.5], [0.2, 0.3, 0.5], [1.0], [0.7, 0.7], [-0.5, 1.5]])
    elif shape == "range":
        p["min"], p["max"] = rng.choice(NUMBERS), rng.choice(NUMBERS)
    else:
        for key in rng.sample(["min", "max", "q", "mu", "sigma", "a", "b", "values", "value"], rng.randint(0, 3)):
            p[key] = rng.choice([*NUMBERS[:-2], [1, 2]])
    if shape in ("dist", "mixed", "range") and rng.random() < 0.8:
        p["distribution"] = rng.choice(DISTS)
    return p


def _config(rng: random.Random) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    method = rng.choice(["grid", "random", "bayes", "custom", "random", "bayes", None, "ax"])
    if method:
        cfg["method"] = method
    if rng.random() < 0.6:
        cfg["metric"] = rng.choice(
            [{"name": "loss"}, {"name": "acc", "goal": "maximize"}, {"goal": "minimize"}, {"name": "l", "goal": "max"}]
        )
    if rng.random() < 0.9:
        names = rng.sample(["lr", "batch", "optim", "dropout", "x.y", "bad name"], rng.randint(1, 3))
        cfg["parameters"] = {n: _parameter(rng, 0) for n in names}
    if rng.random() < 0.2:
        cfg["early_terminate"] = rng.choice(
            [
                {"type": "hyperband", "min_iter": 3},
                {"type": "hyperband", "eta": 2},
                {"type": "hyperband", "max_iter": 27, "s": 2},
                {"type": "hyperband", "min_iter": 3, "eta": 1},
            ]
        )
    if rng.random() < 0.2:
        cfg["run_cap"] = rng.choice([5, 0, -1, 2.0, "10"])
    if rng.random() < 0.15:
        cfg["scheduler"] = rng.choice(
            [
                {"num_workers": 4},
                {"job": "a/b:latest"},
                {"settings": {"method": "bayes"}},
                {"engine": "optuna"},
                {"engine": "wandb"},
                {"foo": 1},
            ]
        )
    if rng.random() < 0.1:
        cfg["job"] = "proj/train:latest"
    if rng.random() < 0.05:
        cfg["unknown_key"] = 1
    return cfg


def _ours(cfg: dict[str, Any]) -> bool:
    try:
        SweepConfig.model_validate(cfg)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("seed", range(8))
def test_models_agree_with_wandb_on_generated_configs(seed: int) -> None:
    rng = random.Random(seed)
    cases = [_config(rng) for _ in range(250)]
    disagreements = [(c, _ours(c)) for c in cases if _ours(c) != wandb_accepts(c)]
    accepted = sum(map(_ours, cases))
    assert not disagreements, disagreements[:3]
    # The grammar must exercise both verdicts, or the comparison proves nothing.
    assert 10 < accepted < len(cases) - 10, accepted


def _outcome(call, cfg: dict[str, Any]) -> tuple[str, Any]:
    try:
        with seeded(7):  # the global RNGs seeded alike for both calls, and restored
            returned = call(cfg)
        return "ok", returned == []  # a validator's violations: [] when there are none
    except Exception as exc:  # the engine's own errors are the subject
        return type(exc).__name__, str(exc)


def test_the_grid_and_random_dry_run_is_the_engines_next_run() -> None:
    # wandb_check calls the method's own function instead of sweeps.next_run (which imports bayes and
    # scikit-learn for every config): it must raise what the engine raises (type and message) or pass where it
    # passes, on every generated grid / random config W&B's schema lets through, valid or not by our models.
    import sweeps

    rng = random.Random(11)
    cases = [c for c in (_config(rng) for _ in range(2000)) if c.get("method") in ("grid", "random")]
    cases = [c for c in cases if isinstance(c.get("parameters"), dict) and c["parameters"]]
    cases = [c for c in cases if _outcome(sweeps.schema_violations_from_proposed_config, c) == ("ok", True)]
    outcomes = [(_outcome(_first_run, c), _outcome(lambda x: sweeps.next_run(x, []), c)) for c in cases]
    differing = [(c, o) for c, o in zip(cases, outcomes, strict=True) if o[0] != o[1]]
    assert not differing, differing[:3]
    kinds = {ours[0] for ours, _ in outcomes}
    assert "ok" in kinds and len(kinds) > 1 and len(cases) > 100, (kinds, len(cases))  # both verdicts exercised
