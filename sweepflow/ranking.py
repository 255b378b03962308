"""Which run is best: the one rule that status, the controller's ``metric.target`` check, analysis, the CLI and
the Prefect sensor all use.

A run counts when it ended ``finished`` or was ``killed`` by the sweep or a person (a Hyperband stop: its metric
is real, only early) and its summary holds a finite number for the metric. The metric is looked up as W&B's
summary does: ``val.acc`` is the key ``"val.acc"``, or ``{"val": {"acc": ...}}`` logged as a nested dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from sweepflow.config import Metric
from sweepflow.states import RunState

USABLE_STATES: frozenset[RunState] = frozenset({RunState.FINISHED, RunState.KILLED})

T = TypeVar("T")


def lookup(summary: Mapping[str, Any], name: str) -> Any:
    """What ``summary`` holds for ``name``: the key itself, else the dotted path through nested dicts."""
    value: Any = summary.get(name)
    if value is None and "." in name:
        value = summary
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    return value


def metric_value(summary: Mapping[str, Any], name: str) -> float | None:
    """The finite number ``summary`` holds for ``name`` (see :func:`lookup`), else None."""
    value = lookup(summary, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def usable(state: str) -> bool:
    """Whether a run in ``state`` has a result that may be ranked."""
    return state in USABLE_STATES


def is_better(value: float, than: float, goal: str) -> bool:
    return value < than if goal == "minimize" else value > than


def reaches(value: float, target: float, goal: str) -> bool:
    """Whether ``value`` meets ``metric.target`` (at or past it, in the goal's direction)."""
    return value <= target if goal == "minimize" else value >= target


def best(
    runs: Iterable[T], metric: Metric, *, state: Callable[[T], str], summary: Callable[[T], Mapping[str, Any]]
) -> tuple[T, float] | None:
    """The best usable run and its value; the first one wins a tie. None when no run has a usable value."""
    found: tuple[T, float] | None = None
    for run in runs:
        value = metric_value(summary(run), metric.name) if usable(state(run)) else None
        if value is not None and (found is None or is_better(value, found[1], metric.goal)):
            found = (run, value)
    return found
