"""Named strategies: `strategy: NAME` on a stage expands into ordinary stages that share the stage's run_cap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweepflow.config import check_pipeline, load_pipeline
from sweepflow.config.strategies import STRATEGIES, Strategy

SWEEP = {
    "method": "bayes",
    "metric": {"name": "loss"},
    "run_cap": 40,
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
        "layers": {"min": 1, "max": 4},
        "opt": {"values": ["adam", "sgd"]},
    },
}


def _spec(strategy: str, **sweep) -> dict:
    return {
        "name": "camp",
        "stages": {
            "search": {"sweep": {**SWEEP, **sweep}, "strategy": strategy},
            "after": {"needs": ["search"], "derive": {"from": "search", "fix": ["opt"]}},
        },
    }


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_each_strategy_expands_into_two_stages_that_share_the_budget(name: str) -> None:
    strategy = STRATEGIES[name]
    spec = load_pipeline(_spec(name, seed=3))
    assert spec.levels() == [["search-explore"], ["search"], ["after"]]  # `needs: [search]` waits for the chain
    explore, exploit = spec.stages["search-explore"], spec.stages["search"]
    assert explore.sweep.run_cap + exploit.sweep.run_cap == 40
    assert explore.sweep.run_cap == round(40 * strategy.explore_share)
    samplers = [s.sweep.to_wandb()["scheduler"]["settings"]["sampler"] for s in (explore, exploit)]
    assert [s["type"] for s in samplers] == [strategy.explore, strategy.exploit]
    # The exploit stage counts the warm-start runs as its startup trials (Optuna counts them as finished).
    startup = strategy.narrow_top_k or explore.sweep.run_cap
    assert samplers[1]["args"] == {"n_startup_trials": startup}
    assert exploit.needs == ["search-explore"] and exploit.derive.from_ == "search-explore"
    assert exploit.derive.warm_start == explore.sweep.run_cap  # every explore run that fits the space
    assert exploit.derive.narrow == (["lr", "layers"] if strategy.narrow_top_k else [])  # numeric ones only
    assert {explore.sweep.seed, exploit.sweep.seed, explore.sweep.metric.name} == {3, "loss"}
    # The expanded spec is an ordinary spec: dumped and loaded again, it is the same.
    again = load_pipeline(spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert again.stages == spec.stages


def test_a_strategy_passes_its_sampler_arguments_to_both_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    args = {"n_startup_trials": 3}, {"deterministic_objective": True}
    strategy = Strategy("test", "TPESampler", "GPSampler", 0.25, explore_args=args[0], exploit_args=args[1])
    monkeypatch.setitem(STRATEGIES, "tpe-gpdet", strategy)
    spec = load_pipeline(_spec("tpe-gpdet"))
    explore, exploit = (
        spec.stages[s].sweep.to_wandb()["scheduler"]["settings"]["sampler"] for s in ("search-explore", "search")
    )
    assert explore == {"type": "TPESampler", "args": {"n_startup_trials": 3}}
    # the exploit stage's own startup count (its warm-start runs) beside the strategy's arguments
    assert exploit == {"type": "GPSampler", "args": {"deterministic_objective": True, "n_startup_trials": 10}}


NO_CAP = {k: v for k, v in SWEEP.items() if k != "run_cap"}
KNOWN = ", ".join(STRATEGIES)


@pytest.mark.parametrize(
    ("stages", "path", "words"),
    [
        (
            {"s": {"sweep": SWEEP, "strategy": "turbo"}},
            "stages.s.strategy",
            f"'turbo' is not a strategy; use one of {KNOWN}.",
        ),
        ({"s": {"sweep": {**SWEEP, "run_cap": 1}, "strategy": "qmc-gp"}}, "stages.s.sweep.run_cap", "at least 2"),
        (
            {"s": {"sweep": NO_CAP, "strategy": "qmc-gp"}},
            "stages.s.sweep.run_cap",
            "is required with `strategy: qmc-gp`: it is the budget",
        ),
        (
            {"a": {"sweep": SWEEP}, "s": {"needs": ["a"], "derive": {"from": "a"}, "strategy": "qmc-gp"}},
            "stages.s.strategy",
            "own `sweep`",
        ),
        (
            {"s": {"sweep": SWEEP, "strategy": "qmc-gp"}, "s-explore": {"sweep": SWEEP}},
            "stages.s.strategy",
            "already exists",
        ),
    ],
)
def test_a_strategy_that_cannot_expand_is_one_error_naming_the_field(stages: dict, path: str, words: str) -> None:
    [error] = check_pipeline({"name": "c", "stages": stages}).errors
    assert error.path == path and words in str(error), str(error)


def test_validate_prints_the_unknown_strategy_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "name: c\nstages:\n  search:\n    strategy: turbo\n    sweep: {method: random, metric: {name: loss}, "
        "run_cap: 4, parameters: {x: {min: 0.0, max: 1.0}}}\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "sweepflow", "validate", str(tmp_path / "c.yaml")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in out
    [line] = [line for line in out.splitlines() if "strategy" in line]
    assert f"stages.search.strategy: 'turbo' is not a strategy; use one of {', '.join(STRATEGIES)}" in line
