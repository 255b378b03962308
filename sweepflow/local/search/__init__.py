"""Search engines behind two small bases: a :class:`Searcher` proposes configs, a :class:`Stopper` stops runs.

W&B's own engine (``sweeps``: grid / random / bayes, Hyperband) is always there; Optuna's samplers and pruners
come with ``pip install 'sweepflow[optuna]'``. :func:`searcher_for` and :func:`stopper_for` pick them from the
config (see :mod:`sweepflow.local.search._engines` for the shapes), every one seeded from the sweep's seed.
"""

from __future__ import annotations

import numpy as np

from sweepflow.config import SweepConfig
from sweepflow.errors import SweepflowError
from sweepflow.local.search._base import NoStopper, Searcher, Stopper, Trial, derived_seed, seed_of_id, to_json
from sweepflow.local.search._engines import ENGINES, OPTUNA_PRUNERS, OPTUNA_SAMPLERS, choose_engine, engine_problems
from sweepflow.local.search._sweeps import HyperbandStopper, SweepsSearcher, as_seed

__all__ = [
    "ENGINES",
    "OPTUNA_PRUNERS",
    "OPTUNA_SAMPLERS",
    "SEARCHERS",
    "HyperbandStopper",
    "NoStopper",
    "Searcher",
    "Stopper",
    "SweepsSearcher",
    "Trial",
    "choose_engine",
    "derived_seed",
    "engine_problems",
    "searcher_for",
    "seed_of_id",
    "stopper_for",
    "to_json",
]

#: W&B's methods and the searcher that runs them here (Optuna's samplers are chosen by the scheduler block).
SEARCHERS: dict[str, type[Searcher]] = {"grid": SweepsSearcher, "random": SweepsSearcher, "bayes": SweepsSearcher}


def searcher_for(config: SweepConfig, seed: int | np.random.Generator | None = None) -> Searcher:
    """The searcher ``config`` asks for, seeded with ``seed`` (the sweep's seed; random when None)."""
    problems = engine_problems(config)
    if problems:
        raise SweepflowError("the local backend cannot search this sweep: " + "; ".join(map(str, problems)))
    choice, _ = choose_engine(config)
    assert choice is not None
    if choice.engine == "optuna":
        from sweepflow.local.search._optuna import OptunaSearcher

        return OptunaSearcher(config, as_seed(seed), choice)
    return SEARCHERS[config.method](config, seed)


def stopper_for(config: SweepConfig, searcher: Searcher) -> Stopper:
    """W&B's Hyperband when ``early_terminate`` is set, an Optuna pruner when the scheduler names one."""
    if config.early_terminate is not None:
        return HyperbandStopper(config)
    if getattr(searcher, "pruner", None) is not None:
        from sweepflow.local.search._optuna import OptunaPrunerStopper

        return OptunaPrunerStopper(searcher)  # type: ignore[arg-type]
    return NoStopper()
