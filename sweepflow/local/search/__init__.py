"""Search engines behind two small bases: a :class:`Searcher` proposes configs, a :class:`Stopper` stops runs.

W&B's own engine (``sweeps``: grid / random / bayes, Hyperband) is always there; Optuna's samplers and pruners
come with ``pip install 'sweepflow[optuna]'``. :func:`searcher_for` and :func:`stopper_for` pick them from the
config (see :mod:`sweepflow.local.search._engines` for the shapes), every one seeded from the sweep's seed.

W&B's engine is imported when a searcher or stopper of it is first made (``sweeps`` imports scipy: seconds on a
busy box), so a process that never searches (the CLI's other commands, a standby controller until it takes over)
does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sweepflow.config import SweepConfig
from sweepflow.errors import SweepflowError
from sweepflow.local.search._base import NoStopper, Searcher, Stopper, Trial, derived_seed, seed_of_id, to_json
from sweepflow.local.search._engines import ENGINES, OPTUNA_PRUNERS, OPTUNA_SAMPLERS, choose_engine, engine_problems

if TYPE_CHECKING:
    from sweepflow.local.search._sweeps import HyperbandStopper, SweepsSearcher

__all__ = [
    "ENGINES",
    "OPTUNA_PRUNERS",
    "OPTUNA_SAMPLERS",
    "HyperbandStopper",
    "NoStopper",
    "Searcher",
    "Stopper",
    "SweepsSearcher",
    "Trial",
    "choose_engine",
    "derived_seed",
    "engine_problems",
    "ensure_searchable",
    "searcher_for",
    "seed_of_id",
    "stopper_for",
    "to_json",
]


def __getattr__(name: str) -> Any:
    if name in ("HyperbandStopper", "SweepsSearcher"):
        from sweepflow.local.search import _sweeps

        return getattr(_sweeps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ensure_searchable(config: SweepConfig) -> None:
    """Raise the one error for a sweep no engine here can search (an engine not installed, a bad shape)."""
    problems = engine_problems(config)
    if problems:
        raise SweepflowError("the local backend cannot search this sweep: " + "; ".join(map(str, problems)))


def searcher_for(config: SweepConfig, seed: int | np.random.Generator | None = None) -> Searcher:
    """The searcher ``config`` asks for, seeded with ``seed`` (the sweep's seed; random when None)."""
    ensure_searchable(config)
    choice, _ = choose_engine(config)
    assert choice is not None
    from sweepflow.local.search._sweeps import SweepsSearcher, as_seed

    if choice.engine == "optuna":
        from sweepflow.local.search._optuna import OptunaSearcher

        return OptunaSearcher(config, as_seed(seed), choice)
    return SweepsSearcher(config, seed)  # grid, random and bayes: W&B's methods


def stopper_for(config: SweepConfig, searcher: Searcher) -> Stopper:
    """W&B's Hyperband when ``early_terminate`` is set, an Optuna pruner when the scheduler names one."""
    if config.early_terminate is not None:
        from sweepflow.local.search._sweeps import HyperbandStopper

        return HyperbandStopper(config)
    if getattr(searcher, "pruner", None) is not None:
        from sweepflow.local.search._optuna import OptunaPrunerStopper

        return OptunaPrunerStopper(searcher)  # type: ignore[arg-type]
    return NoStopper()
