"""Named search strategies: ``strategy: NAME`` on a stage expands it into a chain of stages sharing its budget.

Why: a single sampler trades exploring the space against exploiting what it found by one fixed rule. A staged
strategy makes the trade explicit: first cover the space (a scrambled Sobol sequence, or a GP's own search), then
spend the rest of the budget where the results point (a sampler warm-started with every run so far, or a GP in a
space narrowed around the best runs). Each strategy is two ordinary stages with ``derive`` rules, so the flows,
``tune_pipeline``, the reports and resume treat it like any hand-written pipeline; ``bench/bench_search.py``
measures every one against the single samplers (``bench/RESULTS.md``, "Search quality").

A stage::

    search:
      sweep: space.yaml     # its `run_cap` is the whole budget
      strategy: qmc-gp

becomes ``search-explore`` (the first part of the budget) and ``search`` (the rest, ``needs`` and ``derive`` from
``search-explore``, warm-started with its runs), so a stage that ``needs: [search]`` waits for the whole chain
and derives from its last stage. The strategy chooses the engines (Optuna's, in the W&B Optuna-scheduler form);
the sweep's ``method`` and sampler are replaced, its other keys (metric, parameters, pruner, workers) kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweepflow.config.issues import Problem
from sweepflow.config.parameters import NARROWABLE, iter_leaves
from sweepflow.config.sweep import SweepConfig

if TYPE_CHECKING:
    from sweepflow.config.pipeline import Stage

OPTUNA_JOB = "wandb/sweep-jobs/job-optuna-sweep-scheduler:latest"
EXPLORE_SUFFIX = "-explore"


@dataclass(frozen=True)
class Strategy:
    """Explore with one Optuna sampler for ``explore_share`` of the budget, then exploit with another.

    The exploit stage is warm-started with the explore runs that fit its space, and its sampler's
    ``n_startup_trials`` is set to the number of those it is sure to get (Optuna counts warm-start runs as
    finished trials), so it starts modelling at once instead of spending its first trials at random.
    ``explore_args`` / ``exploit_args`` are further arguments of the two samplers (W&B's ``sampler.args``), so a
    variant such as a TPE stage with a shorter random start is a strategy too (``bench/bench_search.py``
    measures such variants beside the shipped ones).
    """

    summary: str
    explore: str  # Optuna sampler class of the first stage
    exploit: str  # of the second
    explore_share: float  # fraction of the run_cap spent exploring
    narrow_top_k: int = 0  # > 0: narrow every numeric parameter to the range of the top-k explore runs
    explore_args: dict[str, Any] = field(default_factory=dict)  # arguments of the explore sampler
    exploit_args: dict[str, Any] = field(default_factory=dict)  # more arguments of the exploit sampler

    def split(self, budget: int) -> tuple[int, int]:
        """Runs of the explore and exploit stages; both at least 1."""
        first = min(budget - 1, max(1, round(budget * self.explore_share)))
        return first, budget - first


#: The strategies a stage can name. bench/RESULTS.md measures each; the README says which one to pick.
STRATEGIES: dict[str, Strategy] = {
    "qmc-gp": Strategy(
        "scrambled Sobol points over 20% of the budget, then Optuna's GP warm-started with all of them",
        "QMCSampler",
        "GPSampler",
        0.2,
    ),
    "qmc-tpe": Strategy(
        "scrambled Sobol points over 20% of the budget, then TPE warm-started with all of them (cheap suggestions)",
        "QMCSampler",
        "TPESampler",
        0.2,
    ),
    "gp-refine": Strategy(
        "Optuna's GP over 75% of the budget, then GP again in the box around its top 5 runs, warm-started with the "
        "runs inside",
        "GPSampler",
        "GPSampler",
        0.75,
        narrow_top_k=5,
    ),
}


def unknown_strategy(name: str) -> str:
    """The one-line message for a name that is not in :data:`STRATEGIES`."""
    return f"{name!r} is not a strategy; use one of {', '.join(STRATEGIES)}."


def strategy_problems(name: str, stage: Stage, names: set[str]) -> list[Problem]:
    """Why stage ``name`` cannot be expanded (paths below ``stages``); empty when it can."""
    at = [name, "strategy"]
    if stage.derive is not None or stage.sweep is None:
        return [(at, "needs the stage's own `sweep` (its `run_cap` is the budget).", "give `sweep`, drop `derive`.")]
    cap = stage.sweep.run_cap
    if cap is None or cap < 2:
        wrong = "is required" if cap is None else "must be at least 2"
        why = f"{wrong} with `strategy: {stage.strategy}`: it is the budget the strategy's stages share."
        return [([name, "sweep", "run_cap"], why, "set `run_cap`, e.g. 40.")]
    if name + EXPLORE_SUFFIX in names:
        return [(at, f"adds a stage {name + EXPLORE_SUFFIX!r}, which already exists.", "rename that stage.")]
    return []


def _engine(sweep: SweepConfig, sampler: str, run_cap: int, args: dict[str, Any]) -> SweepConfig:
    data = sweep.to_wandb()
    data.pop("method", None)
    old = data.pop("scheduler", None)
    old = old if isinstance(old, dict) else {}
    settings: dict[str, Any] = {"sampler": {"type": sampler, **({"args": args} if args else {})}}
    if isinstance(old.get("settings"), dict) and "pruner" in old["settings"]:
        settings["pruner"] = old["settings"]["pruner"]
    scheduler = {"job": OPTUNA_JOB, "settings": settings}
    if "num_workers" in old:
        scheduler["num_workers"] = old["num_workers"]
    data.update(scheduler=scheduler, run_cap=run_cap)
    if sweep.seed is not None:
        data["seed"] = sweep.seed
    return SweepConfig.model_validate({**data, "source_dir": sweep.source_dir} if sweep.source_dir else data)


def expand(name: str, stage: Stage, strategy: Strategy) -> dict[str, Stage]:
    """The stages that stage ``name`` (checked by :func:`strategy_problems`) stands for, in run order."""
    from sweepflow.config.pipeline import Derive, Stage

    assert stage.sweep is not None and stage.sweep.run_cap is not None
    first, rest = strategy.split(stage.sweep.run_cap)
    explore = name + EXPLORE_SUFFIX
    narrow = []
    if strategy.narrow_top_k:
        leaves = iter_leaves(stage.sweep.parameters or {})
        narrow = [".".join(p) for p, param in leaves if param.distribution in NARROWABLE]
    derive = Derive.model_validate(
        {"from": explore, "top_k": strategy.narrow_top_k or first, "narrow": narrow, "warm_start": first}
    )
    startup = min(first, strategy.narrow_top_k) if strategy.narrow_top_k else first  # priors sure to fit
    rule = stage.model_dump(exclude={"sweep", "strategy", "derive"}, exclude_none=True, by_alias=True)
    return {
        explore: Stage.model_validate(
            {**rule, "sweep": _engine(stage.sweep, strategy.explore, first, strategy.explore_args)}
        ),
        name: Stage(
            sweep=_engine(stage.sweep, strategy.exploit, rest, {**strategy.exploit_args, "n_startup_trials": startup}),
            needs=[explore],
            derive=derive,
        ),
    }
