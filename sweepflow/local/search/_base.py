"""What every search engine shares: the trial it is shown, the two plug-in bases, seeds, JSON values."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Trial:
    """What an engine knows of one run: its config (parameter -> value), state and metric.

    ``history`` holds the rows an engine needs, and the controller hands it only the sweep metric's series
    (``[{metric: value}, ...]``), never the run's whole history. ``prior`` marks a warm-start run of an earlier
    stage: it informs the search but is not one of this sweep's suggestions.
    """

    id: str
    config: dict[str, Any]
    state: str  # pending / running / finished / failed / crashed / killed / preempted (W&B's run states)
    summary: dict[str, Any] = field(default_factory=dict)
    history: Sequence[dict[str, Any]] = ()
    prior: bool = False


def to_json(value: Any) -> Any:
    """Plain JSON types for anything an engine returns (numpy scalars and arrays included)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [to_json(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def derived_seed(seed: int, *path: int) -> int:
    """A 32-bit seed for one decision of a sweep (e.g. its n-th suggestion), a pure function of the sweep seed.

    Seeding every suggestion from ``(seed, n)`` instead of drawing from one long-lived generator is what makes a
    restarted controller continue the very sequence the first one would have produced.
    """
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def seed_of_id(sweep_id: str) -> int:
    """The seed of a sweep that recorded none (created before seeds were recorded): stable, from its id."""
    return int.from_bytes(hashlib.sha256(sweep_id.encode()).digest()[:4], "big")


class Searcher(ABC):
    """Proposes the next configuration of a sweep from the runs so far.

    Contract: ``suggest`` is a pure function of the sweep seed and ``trials`` (their order included), so two
    controllers shown the same trials propose the same config; a searcher may cache across calls only what it
    can rebuild from ``trials``. The warm-start trials (``prior``), if any, come first, then the sweep's runs in
    the order they were added. Values are plain JSON types; nested parameters come back nested.
    """

    #: the sweep's seed, from which every suggestion's randomness is derived
    seed: int

    @abstractmethod
    def suggest(self, trials: Sequence[Trial]) -> dict[str, Any] | None:
        """The next config (parameter -> JSON value), or None when the space is exhausted (grid)."""

    def load(self) -> None:  # noqa: B027 (most searchers import all they need when they are made)
        """Import now what the first suggestion would import: a drive loop calls it off its decision path."""

    def _suggestion_seed(self, trials: Sequence[Trial]) -> int:
        # The n-th suggestion of the sweep gets seed (seed, n, attempt); attempt counts calls with the same n,
        # which is how a controller asks again after the store refused a duplicate config. The priors lead the
        # trials (the contract), so n costs the priors, not the sweep's runs (10k of them in issue 13's scale).
        priors = 0
        for trial in trials:
            if not trial.prior:
                break
            priors += 1
        n = len(trials) - priors
        last_n, attempt = getattr(self, "_last_draw", (None, -1))
        attempt = attempt + 1 if last_n == n else 0
        self._last_draw = (n, attempt)
        return derived_seed(self.seed, n, attempt)


class Stopper(ABC):
    """Tells which running trials to stop now (early termination); stop-only, as in W&B."""

    enabled: bool = True

    @abstractmethod
    def to_stop(self, trials: Sequence[Trial]) -> dict[str, str]:
        """Trial id -> reason, for the running trials to stop."""


class NoStopper(Stopper):
    """No early termination."""

    enabled = False

    def to_stop(self, trials: Sequence[Trial]) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class EngineChoice:
    """What a config asks for: an engine, and for Optuna a sampler and a pruner with their arguments."""

    engine: str
    sampler: str | None = None
    sampler_args: dict[str, Any] = field(default_factory=dict)
    pruner: str | None = None
    pruner_args: dict[str, Any] = field(default_factory=dict)
    where: str = "method"  # the config field that chose the engine, for error messages

    @property
    def name(self) -> str:
        return self.engine if self.sampler is None else f"{self.engine}:{self.sampler}"
