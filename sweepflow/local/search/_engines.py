"""Which engine a sweep config asks for, in the shapes W&B users write, and whether this machine has it.

Three shapes choose an engine:

* ``method: grid | random | bayes`` (optionally ``scheduler: {engine: wandb}``): W&B's own ``sweeps`` engine.
* W&B's Optuna sweep scheduler (``wandb launch-sweep``): ``scheduler: {job: ...optuna-sweep-scheduler..., settings:
  {sampler: {type: TPESampler, args: {...}}, pruner: {type: ..., args: {...}}}}`` with ``method`` omitted or
  ``custom``.
* wandb 0.31's engine block: ``scheduler: {engine: optuna}`` with ``method: custom`` (Optuna's default, TPE).

Engines are a registry (:data:`ENGINES`), each naming the module it needs and the line that installs it, so a
config whose engine is missing is refused by ``sweepflow validate`` and ``LocalBackend.check`` with that line.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from sweepflow.config import SweepConfig
from sweepflow.config.sweep import EngineScheduler, LaunchScheduler
from sweepflow.errors import Issue
from sweepflow.local.search._base import EngineChoice

#: The Optuna samplers sweepflow offers, by the class name W&B's Optuna scheduler takes in ``sampler.type``.
OPTUNA_SAMPLERS = ("TPESampler", "GPSampler", "CmaEsSampler", "QMCSampler", "RandomSampler")
#: The Optuna pruners, by class name (``pruner.type``).
OPTUNA_PRUNERS = (
    "MedianPruner",
    "PercentilePruner",
    "SuccessiveHalvingPruner",
    "HyperbandPruner",
    "ThresholdPruner",
    "NopPruner",
)


@dataclass(frozen=True)
class Engine:
    """A search engine: the modules it needs and how to install them."""

    name: str
    modules: tuple[str, ...]
    install: str

    def missing(self, extra: tuple[str, ...] = ()) -> list[str]:
        return [m for m in (*self.modules, *extra) if importlib.util.find_spec(m) is None]


ENGINES: dict[str, Engine] = {
    "sweeps": Engine("sweeps", ("sweeps",), "pip install 'wandb[sweeps]'"),
    "optuna": Engine("optuna", ("optuna",), "pip install 'sweepflow[optuna]'"),
}


def _is_optuna_job(job: str | None) -> bool:
    return bool(job) and "optuna" in str(job).lower()


def _typed(block: Any, where: str, kinds: tuple[str, ...], problems: list[Issue]) -> tuple[str | None, dict]:
    """``{type: Name, args: {...}}`` of a sampler or pruner, checked against the names we offer."""
    if block is None:
        return None, {}
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        problems.append(
            Issue(where, "must be a mapping with a `type` (and optional `args`).", f"e.g. type: {kinds[0]}")
        )
        return None, {}
    unknown = set(block) - {"type", "args"}
    if unknown:
        problems.append(Issue(f"{where}.{sorted(unknown)[0]}", "is not a known key here.", "use `type` and `args`."))
    if block["type"] not in kinds:
        problems.append(Issue(f"{where}.type", f"{block['type']!r} is not offered.", f"use one of {', '.join(kinds)}."))
        return None, {}
    args = block.get("args") or {}
    if not isinstance(args, dict):
        problems.append(Issue(f"{where}.args", "must be a mapping of keyword arguments.", None))
        return block["type"], {}
    return block["type"], dict(args)


def choose_engine(config: SweepConfig) -> tuple[EngineChoice | None, list[Issue]]:
    """The engine ``config`` asks for, or the problems that keep the local backend from knowing it."""
    scheduler = config.scheduler
    problems: list[Issue] = []
    if isinstance(scheduler, EngineScheduler):
        if scheduler.engine == "wandb":
            return EngineChoice("sweeps", where="scheduler.engine"), []
        if scheduler.engine == "optuna":
            for key in ("source", "optimizer", "search_space"):
                if getattr(scheduler, key):
                    problems.append(
                        Issue(
                            f"scheduler.{key}",
                            "a Python-defined optimizer or search space is not run by the local backend.",
                            "describe the space in `parameters` (and the sampler with W&B's Optuna scheduler "
                            "settings), or run this sweep on W&B.",
                        )
                    )
            return (None if problems else EngineChoice("optuna", "TPESampler", where="scheduler.engine")), problems
        return None, [
            Issue(
                "scheduler.engine", f"{scheduler.engine!r} has no engine in the local backend.", "use optuna or wandb."
            )
        ]
    if config.method in ("grid", "random", "bayes"):
        return EngineChoice("sweeps"), []
    if isinstance(scheduler, LaunchScheduler) and _is_optuna_job(scheduler.job):
        settings = scheduler.settings or {}
        for key in ("optuna_source", "optuna_source_filename"):
            if key in settings:
                problems.append(
                    Issue(
                        f"scheduler.settings.{key}",
                        "a Python search space (`objective(trial)`) is not run by the local backend.",
                        "describe the space in `parameters`, or run this sweep on W&B.",
                    )
                )
        sampler, sampler_args = _typed(settings.get("sampler"), "scheduler.settings.sampler", OPTUNA_SAMPLERS, problems)
        pruner, pruner_args = _typed(settings.get("pruner"), "scheduler.settings.pruner", OPTUNA_PRUNERS, problems)
        if pruner and config.early_terminate:
            problems.append(
                Issue("early_terminate", "cannot be used together with an Optuna `pruner`.", "keep one of the two.")
            )
        if problems:
            return None, problems
        return EngineChoice("optuna", sampler or "TPESampler", sampler_args, pruner, pruner_args, "scheduler.job"), []
    where = "scheduler.job" if isinstance(scheduler, LaunchScheduler) and scheduler.job else "method"
    return None, [
        Issue(
            where,
            f"{'scheduler job ' + repr(scheduler.job) if where == 'scheduler.job' else repr(config.method)} has no "  # type: ignore[union-attr]
            "search engine in the local backend.",
            "use method grid, random or bayes; W&B's Optuna scheduler (`scheduler.job: "
            "wandb/sweep-jobs/job-optuna-sweep-scheduler:latest`); or `scheduler: {engine: optuna}`; "
            "or run this config on W&B.",
        )
    ]


def engine_problems(config: SweepConfig) -> list[Issue]:
    """Why the local backend cannot search ``config``: an unknown engine, an engine that is not installed
    (with the line that installs it), or an Optuna space or argument Optuna would refuse."""
    choice, problems = choose_engine(config)
    if choice is None:
        return problems
    engine = ENGINES[choice.engine]
    needs = ("torch",) if choice.sampler == "GPSampler" else ()
    missing = engine.missing(needs)
    if missing:
        return [
            Issue(
                choice.where,
                f"engine {choice.name} needs {', '.join(missing)}, which is not installed.",
                f"run `{engine.install}`" + (" (GPSampler also needs `pip install torch`)" if needs else "") + ".",
            )
        ]
    if choice.engine == "optuna":
        from sweepflow.local.search._optuna import optuna_problems

        return optuna_problems(config, choice)
    return []
