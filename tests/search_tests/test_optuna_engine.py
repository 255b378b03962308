"""Optuna's samplers and pruners as engines, in the config shapes W&B users write."""

from __future__ import annotations

import importlib.util
import math

import pytest

from sweepflow.backends.local import LocalBackend, check_local
from sweepflow.config import load_sweep_config
from sweepflow.errors import SweepflowError
from sweepflow.local.search import Trial, choose_engine, engine_problems, searcher_for, stopper_for

pytest.importorskip("optuna")

OPTUNA_JOB = "wandb/sweep-jobs/job-optuna-sweep-scheduler:latest"
SPACE = {
    "x": {"min": -5.0, "max": 10.0},
    "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
    "wd": {"distribution": "inv_log_uniform_values", "min": 1e-6, "max": 1e-2},
    "e": {"distribution": "log_uniform", "min": -3, "max": 0},
    "units": {"distribution": "q_log_uniform_values", "min": 8, "max": 256, "q": 1},
    "width": {"distribution": "q_log_uniform_values", "min": 4, "max": 64, "q": 4},
    "step": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
    "layers": {"min": 1, "max": 4},
    "opt": {"values": ["adam", "sgd"]},
    "shape": {"values": [[1, 2], [3]]},
    "block": {"parameters": {"drop": {"min": 0.0, "max": 0.5}, "act": {"value": "relu"}}},
}


def _optuna(sampler: str | None = None, args: dict | None = None, pruner: dict | None = None, **extra) -> dict:
    settings: dict = {}
    if sampler:
        settings["sampler"] = {"type": sampler, **({"args": args} if args else {})}
    if pruner:
        settings["pruner"] = pruner
    return {
        "metric": {"name": "loss", "goal": "minimize"},
        "scheduler": {"job": OPTUNA_JOB, "num_workers": 1, "settings": settings},
        "parameters": SPACE,
        **extra,
    }


def _loss(c: dict) -> float:
    return (c["x"] - 1) ** 2 + math.log10(c["lr"]) ** 2 / 10 + c["block"]["drop"]


def _sequence(config: dict, seed: int, n: int, restart_at: int | None = None) -> list[dict]:
    cfg = load_sweep_config(config)
    searcher = searcher_for(cfg, seed)
    trials: list[Trial] = []
    for i in range(n):
        if i == restart_at:
            searcher = searcher_for(cfg, seed)  # a controller restarted: the study is rebuilt from the trials
        suggestion = searcher.suggest(trials)
        trials.append(Trial(str(i), suggestion, "failed" if i == 3 else "finished", {"loss": _loss(suggestion)}))
    return [t.config for t in trials]


def test_wandb_optuna_scheduler_form_and_engine_form_choose_optuna() -> None:
    launch = load_sweep_config(_optuna("CmaEsSampler", {"n_startup_trials": 4}))
    assert launch.method == "custom"  # as `wandb launch-sweep` fills it
    choice, problems = choose_engine(launch)
    assert not problems and choice.name == "optuna:CmaEsSampler" and choice.sampler_args == {"n_startup_trials": 4}
    engine = load_sweep_config(
        {"method": "custom", "metric": {"name": "loss"}, "scheduler": {"engine": "optuna"}, "parameters": SPACE}
    )
    assert choose_engine(engine)[0].name == "optuna:TPESampler"
    assert choose_engine(load_sweep_config({"method": "random", "parameters": SPACE}))[0].name == "sweeps"


@pytest.mark.parametrize("sampler", ["TPESampler", "RandomSampler", "QMCSampler", "CmaEsSampler"])
def test_samplers_are_seeded_and_a_restarted_controller_continues_the_sequence(sampler: str) -> None:
    if sampler == "CmaEsSampler" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("cmaes not installed")
    config = _optuna(sampler, {"n_startup_trials": 4} if sampler in ("TPESampler", "CmaEsSampler") else None)
    first = _sequence(config, 7, 9)
    assert _sequence(config, 7, 9) == first
    assert _sequence(config, 8, 9) != first
    if sampler not in ("CmaEsSampler", "QMCSampler"):  # their state lives in the study (see _optuna.py)
        assert _sequence(config, 7, 9, restart_at=6) == first
    # Every value lies in W&B's distribution, with W&B's types; nested parameters come back nested.
    for c in first:
        assert -5 <= c["x"] <= 10 and 1e-4 <= c["lr"] <= 0.1 and 1e-6 <= c["wd"] <= 1e-2
        assert math.exp(-3) <= c["e"] <= 1 and type(c["units"]) is int and 8 <= c["units"] <= 256
        assert type(c["width"]) is int and c["width"] % 4 == 0 and c["step"] in (0, 2, 4, 6, 8, 10)
        assert type(c["layers"]) is int and c["opt"] in ("adam", "sgd") and c["shape"] in ([1, 2], [3])
        assert c["block"]["act"] == "relu" and 0 <= c["block"]["drop"] <= 0.5


def test_the_search_space_cache_lives_through_the_sweep_and_changes_no_suggestion() -> None:
    # Each suggestion's sampler is new (seeded from (seed, n)); the study's search space, which it caches, is
    # carried from one to the next instead of recomputed over every trial. A controller restarted at every step
    # (every cache rebuilt from the trials) proposes the same configs, failed and running trials included.
    cfg = load_sweep_config(_optuna("TPESampler", {"n_startup_trials": 4}))
    carried = searcher_for(cfg, 5)
    trials: list[Trial] = []
    caches = []
    for i in range(12):
        suggestion = carried.suggest(trials)
        assert searcher_for(cfg, 5).suggest(trials) == suggestion
        caches.append(carried.study.sampler._search_space)
        state = "failed" if i == 5 else "running" if i == 8 else "finished"
        trials.append(Trial(str(i), suggestion, state, {"loss": _loss(suggestion)}))
    assert all(cache is caches[0] for cache in caches)


def test_tpe_learns_from_warm_start_priors_and_skips_those_outside_the_space() -> None:
    cfg = load_sweep_config(_optuna("TPESampler", {"n_startup_trials": 2}))
    good = {**_sequence(_optuna("RandomSampler"), 1, 1)[0], "x": 1.0}
    outside = {**good, "opt": "rmsprop"}  # W&B's bayes raises on this; here it is left out
    priors = [Trial(f"prior-{i}", c, "finished", {"loss": _loss(c)}, prior=True) for i, c in enumerate([good, outside])]
    searcher = searcher_for(cfg, 3)
    searcher.suggest(priors)
    assert len(searcher.study.trials) == 2  # one prior, plus the trial just asked


def test_bad_optuna_configs_are_refused_naming_the_field() -> None:
    cases = [
        (_optuna("NoSuchSampler"), "scheduler.settings.sampler.type: 'NoSuchSampler' is not offered"),
        (_optuna("TPESampler", {"n_startup": 3}), "scheduler.settings.sampler.args.n_startup: is not an argument"),
        (_optuna(pruner={"type": "MedianPruner", "args": {"n_warmup_steps": -1}}), "scheduler.settings.pruner.args"),
        (
            {**_optuna(), "parameters": {"x": {"distribution": "normal", "mu": 0, "sigma": 1}}},
            "parameters.x: distribution normal is unbounded",
        ),
        (
            _optuna(pruner={"type": "MedianPruner"}, early_terminate={"type": "hyperband", "min_iter": 3}),
            "early_terminate: cannot be used together with an Optuna `pruner`",
        ),
        ({**_optuna(), "scheduler": {"job": "me/other-scheduler:latest"}}, "scheduler.job: scheduler job"),
    ]
    for config, expected in cases:
        problems = check_local(load_sweep_config(config))
        assert problems and str(problems[0]).startswith(expected), (expected, problems)
        with pytest.raises(SweepflowError, match="cannot"):
            LocalBackend(store="sqlite://").check(load_sweep_config(config))


def test_an_engine_that_is_not_installed_is_refused_with_its_install_line(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    problems = engine_problems(load_sweep_config(_optuna("TPESampler")))
    assert [str(p) for p in problems] == [
        "scheduler.job: engine optuna:TPESampler needs optuna, which is not installed. "
        "Fix: run `pip install 'sweepflow[optuna]'`."
    ]


def test_an_optuna_pruner_stops_the_run_behind() -> None:
    cfg = load_sweep_config(_optuna("RandomSampler", pruner={"type": "MedianPruner", "args": {"n_startup_trials": 2}}))
    searcher = searcher_for(cfg, 1)
    stopper = stopper_for(cfg, searcher)
    trials: list[Trial] = []
    for i, curve in enumerate([[1.0, 0.5, 0.4], [1.0, 0.6, 0.5], [1.0, 0.55, 0.45]]):
        trials.append(
            Trial(f"r{i}", searcher.suggest(trials), "finished", {"loss": curve[-1]}, [{"loss": v} for v in curve])
        )
    slow = Trial("slow", searcher.suggest(trials), "running", {}, [{"loss": 2.0}, {"loss": 1.9}])
    fast = Trial("fast", searcher.suggest([*trials, slow]), "running", {}, [{"loss": 0.9}, {"loss": 0.3}])
    stops = stopper.to_stop([*trials, slow, fast])
    assert set(stops) == {"slow"} and stops["slow"].startswith("MedianPruner: pruned at step 1")
