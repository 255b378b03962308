"""W&B's search engine (the ``sweeps`` package) behind two small interfaces: a Searcher and a Stopper.

``sweeps`` is pure (config and prior runs in, suggestions out) but it draws from the global ``random`` and
``numpy`` states, takes dict configs, and returns numpy scalars that JSON cannot hold. This module is the one
place that knows that: it seeds the engine from an explicit :class:`numpy.random.Generator` (restoring the global
state afterwards), converts values to plain JSON types, and picks the searcher by method name from a registry.
"""

from __future__ import annotations

import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweepflow.config import SweepConfig

with warnings.catch_warnings():  # sweeps' pydantic config emits a v1-style deprecation warning on import
    warnings.simplefilter("ignore")
    import sweeps
    from sweeps import RunState, SweepRun


@dataclass(frozen=True)
class Trial:
    """What the engine needs to know of one run: its config (parameter -> value), state and metrics."""

    id: str
    config: dict[str, Any]
    state: str  # pending / running / finished / failed / crashed / killed / preempted (W&B's run states)
    summary: dict[str, Any] = field(default_factory=dict)
    history: Sequence[dict[str, Any]] = ()


def to_json(value: Any) -> Any:
    """Plain JSON types for anything the engine returns (numpy scalars and arrays included)."""
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


def engine_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as the engine reads it: nested dicts also under their dotted names.

    A run's history rows are flat (``wandb.log({"val": {"acc": 1}})`` is the row key ``"val.acc"``), its summary
    nested; ``sweeps`` looks ``metric.name`` up as one key in both (``SweepRun.metric_history`` and
    ``summary_metric``), so without this bayes would never find ``val.acc`` in a summary while Hyperband finds
    it in the history. The rule is :func:`sweepflow.ranking.lookup`'s: the key itself wins, then the path.
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{name}.", value)
            if prefix:
                flat.setdefault(name, value)

    walk("", summary)
    return {**flat, **summary}


def _sweep_run(trial: Trial) -> SweepRun:
    state = trial.state if trial.state in RunState.__members__ else "pending"
    return SweepRun(
        name=trial.id,
        config={k: {"value": v} for k, v in trial.config.items()},
        state=RunState(state),
        summary_metrics=engine_summary(dict(trial.summary)),
        history=list(trial.history),
    )


@contextmanager
def _seeded(rng: np.random.Generator) -> Iterator[None]:
    # The engine reads the global RNGs; seed them from ours, and leave them as we found them.
    py_state, np_state = random.getstate(), np.random.get_state()
    seed = int(rng.integers(0, 2**32 - 1))
    random.seed(seed)
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class Searcher(ABC):
    """Proposes the next configuration of a sweep from the runs so far."""

    @abstractmethod
    def suggest(self, trials: Sequence[Trial]) -> dict[str, Any] | None:
        """The next config (parameter -> JSON value), or None when the space is exhausted (grid)."""


class SweepsSearcher(Searcher):
    """grid / random / bayes, exactly as W&B's cloud controller runs them, with an explicit seed."""

    def __init__(self, config: SweepConfig, rng: np.random.Generator | None = None):
        self._config = config.engine_config()
        self._rng = rng or np.random.default_rng()
        self.last_info: dict[str, Any] | None = None  # the engine's search_info (bayes: EI, prediction)

    def suggest(self, trials: Sequence[Trial]) -> dict[str, Any] | None:
        with _seeded(self._rng):
            run = sweeps.next_run(self._config, [_sweep_run(t) for t in trials])
        if run is None:
            return None
        self.last_info = to_json(run.search_info) if run.search_info else None
        return {k: to_json(v["value"]) for k, v in run.config.items()}


SEARCHERS: dict[str, type[Searcher]] = {"grid": SweepsSearcher, "random": SweepsSearcher, "bayes": SweepsSearcher}


def searcher_for(config: SweepConfig, rng: np.random.Generator | None = None) -> Searcher:
    """The searcher registered for the config's method; ``custom`` has none locally."""
    try:
        return SEARCHERS[config.method](config, rng)
    except KeyError:
        raise ValueError(f"method {config.method!r} has no local searcher; use grid, random or bayes") from None


class HyperbandStopper:
    """Which running trials Hyperband stops now; stop-only, as in W&B (bands count logged metric values)."""

    def __init__(self, config: SweepConfig):
        self._config = config.engine_config()
        self.enabled = config.early_terminate is not None and config.metric is not None

    def to_stop(self, trials: Sequence[Trial]) -> dict[str, str]:
        """Trial id -> reason, for the running trials that fall behind at a band."""
        if not self.enabled or not any(t.state == "running" for t in trials):
            return {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stopped = sweeps.stop_runs(self._config, [_sweep_run(t) for t in trials])
        return {run.name: _reason(run) for run in stopped if run.name is not None}


def _reason(run: SweepRun) -> str:
    # The engine explains itself in free-text lines; keep the verdict line ("Band: 3 Metric: .. Threshold: ..").
    lines = (run.early_terminate_info or {}).get("lines") or []
    mine = [" ".join(str(line).split()) for line in lines if f"Run: {run.name} " in str(line) and "STOP" in str(line)]
    verdict = mine[-1] if mine else "behind at a band"
    return f"hyperband: {verdict}"
