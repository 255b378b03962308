"""Sweep config models: every form W&B accepts, and errors that name the field as the user wrote it."""

from __future__ import annotations

import pytest

from sweepflow.config import DISTRIBUTIONS, check_sweep
from sweepflow.config.yaml12 import load_yaml


def _cfg(params: dict, **top) -> dict:
    return {"method": "random", "parameters": params, **top}


ONE_OF_EACH = {
    "constant": {"value": 1},
    "categorical": {"values": [1, "a"]},
    "categorical_w_probabilities": {"values": [1, 2], "probabilities": [0.3, 0.7]},
    "int_uniform": {"min": 1, "max": 4},
    "uniform": {"min": 0.0, "max": 1},
    "q_uniform": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
    "log_uniform": {"distribution": "log_uniform", "min": -5, "max": -1},
    "log_uniform_values": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
    "inv_log_uniform": {"distribution": "inv_log_uniform", "min": 1, "max": 3},
    "inv_log_uniform_values": {"distribution": "inv_log_uniform_values", "min": 0.1, "max": 1},
    "q_log_uniform": {"distribution": "q_log_uniform", "min": 0, "max": 4, "q": 1},
    "q_log_uniform_values": {"distribution": "q_log_uniform_values", "min": 1, "max": 64},
    "normal": {"distribution": "normal", "mu": 0, "sigma": 2},
    "q_normal": {"distribution": "q_normal", "q": 0.5},
    "log_normal": {"distribution": "log_normal"},
    "q_log_normal": {"distribution": "q_log_normal", "sigma": 0.5},
    "beta": {"distribution": "beta", "a": 2, "b": 5},
    "q_beta": {"distribution": "q_beta", "q": 0.1},
}


def test_every_distribution_is_accepted_and_resolved() -> None:
    assert set(ONE_OF_EACH) == set(DISTRIBUTIONS)
    checked = check_sweep(_cfg(ONE_OF_EACH))
    assert checked.ok, [str(e) for e in checked.errors]
    resolved = {name: p.distribution for name, p in checked.model.parameters.items()}
    assert resolved == {name: name for name in ONE_OF_EACH}
    # Exactly the three deprecated exponent forms are warned about.
    assert sorted(w.path.split(".")[-1] for w in checked.warnings) == [
        "inv_log_uniform",
        "log_uniform",
        "q_log_uniform",
    ]


def test_nested_error_names_the_users_path() -> None:
    cfg = _cfg({"optim": {"parameters": {"lr": {"min": 0.1, "max": 0.01}, "name": {"values": ["adam"]}}}})
    [error] = check_sweep(cfg).errors
    assert error.path == "parameters.optim.parameters.lr.max"
    assert "min 0.1 is not less than max 0.01" in error.message and error.fix


def test_every_error_is_reported_not_just_the_first() -> None:
    cfg = _cfg({"a": {"min": 2, "max": 1}, "b": {"values": 3}, "c": {"distribution": "normal", "sigma": -1}})
    cfg["metric"] = {"name": "loss", "goal": "maximise"}
    paths = sorted(e.path for e in check_sweep(cfg).errors)
    assert paths == ["metric.goal", "parameters.a.max", "parameters.b.values", "parameters.c.sigma"]


@pytest.mark.parametrize(
    ("cfg", "path", "words"),
    [
        ({"method": "bayes", "parameters": {"x": {"values": [1, 2]}}}, "metric", "required by `method: bayes`"),
        ({"method": "grid", "parameters": {"x": {"min": 0.1, "max": 1.0}}}, "parameters.x", "grid search"),
        (
            {"method": "grid", "parameters": {"o": {"parameters": {"lr": {"min": 0.1, "max": 1.0}}}}},
            "parameters.o.parameters.lr",
            "grid search",
        ),
        (_cfg({"x": {"min": 2.0, "max": 8.0, "distribution": "int_uniform"}}), "parameters.x.min", "whole number"),
        (_cfg({"x": {"distribution": "log_uniform_values", "min": 0, "max": 1}}), "parameters.x.min", "> 0"),
        (_cfg({"x": {"values": [1, 2], "probabilities": [0.5, 0.6]}}), "parameters.x.probabilities", "sums to 1.1"),
        (_cfg({"x": {"min": 1, "max": 2, "q": 1}}), "parameters.x.q", "not used by distribution int_uniform"),
        (_cfg({"x": {"min": True, "max": 2}}), "parameters.x.min", "must be a number"),
        (_cfg({"x": {"min": "1e-3", "max": 2.0}}), "parameters.x.min", "without quotes"),
        (_cfg({"x": {"min": None, "max": 2.0}}), "parameters.x.min", "is null"),
        (_cfg({"x": {"lr": 1}}), "parameters.x.lr", "not a known key"),
        (_cfg({"x": {}}), "parameters.x", "does not say what to sample"),
        (_cfg({"bad name": {"value": 1}}), 'parameters["bad name"]', "not a valid name"),
        (_cfg({"x": {"value": 1}}, run_cap=0), "run_cap", "greater than 0"),
        (_cfg({"x": {"value": 1}}, early_terminate={"type": "hyperband"}), "early_terminate", "min_iter"),
        (_cfg({"x": {"value": 1}}, scheduler={"engine": "optuna"}), "method", "not supported by engine optuna"),
        ({"parameters": {"x": {"value": 1}}}, "method", "required"),
    ],
)
def test_rejections_name_field_and_say_why(cfg: dict, path: str, words: str) -> None:
    errors = check_sweep(cfg).errors
    assert any(e.path == path and words in str(e) for e in errors), [str(e) for e in errors]


@pytest.mark.parametrize("params", [[{"lr": {"value": 1}}], "lr", 3, {"lr": [1, 2]}, {"lr": "x"}, {"lr": None}])
def test_malformed_parameters_never_crash(params) -> None:
    # W&B's own validator raises on several of these; ours reports one readable error.
    errors = check_sweep({"method": "random", "parameters": params}).errors
    assert errors and all(e.path.startswith("parameters") for e in errors)


def test_yaml_1_2_numbers_and_normalized_output() -> None:
    data = load_yaml("method: random\nparameters:\n  lr: {min: 1e-6, max: 1E-3}\n  wd: {values: [5e-4, 1.0e-2]}\n")
    checked = check_sweep(data)
    assert checked.ok
    sent = checked.model.engine_config()
    assert sent["parameters"]["lr"] == {"min": 1e-6, "max": 1e-3}
    assert sent["parameters"]["wd"] == {"values": [5e-4, 1e-2]}
    assert load_yaml("a: yes\nb: 10\nc: 1_000\n") == {"a": True, "b": 10, "c": 1000}  # otherwise as wandb reads


def test_launch_keys_are_kept_apart_from_the_search_config() -> None:
    cfg = _cfg(
        {"x": {"value": 1}},
        job="proj/train:latest",
        queue="gpu",
        scheduler={"num_workers": 4, "settings": {"method": "random"}, "num_worker": 2},
        run_cap=10.0,
    )
    checked = check_sweep(cfg)
    assert checked.ok
    model = checked.model
    assert (model.num_workers, model.launch_queue, model.run_cap) == (4, "gpu", 10)
    assert set(model.engine_config()) == {"method", "parameters", "run_cap"}
    # a typo W&B would silently ignore, and a cap the one-config space can never reach
    assert [w.path for w in checked.warnings] == ["run_cap", "scheduler.num_worker"]


def test_method_filled_like_launch_sweep() -> None:
    by_settings = check_sweep(
        {
            "scheduler": {"settings": {"method": "bayes"}},
            "metric": {"name": "l"},
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
        }
    )
    by_job = check_sweep({"scheduler": {"job": "wandb/sweep-jobs/sched:latest"}, "parameters": {"x": {"value": 1}}})
    assert by_settings.model.method == "bayes" and by_job.model.method == "custom"


def test_engine_scheduler_form_is_told_apart() -> None:
    checked = check_sweep(
        {"method": "custom", "scheduler": {"engine": "optuna", "source": "s.py", "search_space": "space"}}
    )
    assert checked.ok and checked.model.scheduler.engine == "optuna"
    errors = check_sweep({"method": "custom", "scheduler": {"engine": "optuna", "search_space": "space"}}).errors
    assert [e.path for e in errors] == ["scheduler.source"]


def test_numbers_wandb_reads_as_strings_are_warned_with_the_fix(tmp_path) -> None:
    # issue 9, item 13: YAML 1.2 numbers are our reading; W&B (PyYAML, YAML 1.1) reads `1e-4` as a string.
    import yaml

    from sweepflow.config import check_file

    path = tmp_path / "s.yaml"
    path.write_text("method: random\nparameters:\n  lr: {min: 1e-4, max: 1.0e-1}\n  wd: {values: [0.1, 5E-5]}\n")
    checked = check_file(path)
    assert checked.ok
    found = {w.path: w for w in checked.warnings}
    assert set(found) == {"parameters.lr.min", "parameters.wd.values.1"}
    assert "W&B reads sweep files as YAML 1.1 and gets the string '1e-4'" in found["parameters.lr.min"].message
    assert found["parameters.lr.min"].fix == "write `1.0e-4`, which both read as a number."
    fixed = path.read_text().replace("1e-4", "1.0e-4").replace("5E-5", "5.0E-5")
    assert yaml.safe_load(fixed)["parameters"]["lr"]["min"] == 1e-4 and yaml.safe_load(fixed)["parameters"]["wd"]
    path.write_text(fixed)
    assert check_file(path).warnings == []
