"""Warnings for configs that are legal but almost surely not what their author meant.

The classic: ``distribution: log_uniform`` with ``min: 1e-6, max: 1e-3``. W&B's ``log_uniform`` takes
natural-log *exponents*, so that samples values in [1.000001, 1.001], and the sweep quietly tunes nothing. W&B
only says the form is deprecated; we show the range that will really be sampled and the form that was meant.
"""

from __future__ import annotations

import math

from sweepflow.config.issues import render_path
from sweepflow.config.parameters import Parameter, iter_leaves, param_loc
from sweepflow.config.sweep import LAUNCH_SCHEDULER_KEYS, LaunchScheduler, SweepConfig
from sweepflow.errors import Issue


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def effective_range(param: Parameter) -> tuple[float, float]:
    """The values an exponent-form parameter really samples, from its ``min``/``max`` exponents."""
    lo, hi = float(param.min or 0.0), float(param.max or 0.0)
    if param.distribution == "inv_log_uniform":
        return _exp(-hi), _exp(-lo)
    return _exp(lo), _exp(hi)


def _exponent_warning(path: tuple[str, ...], param: Parameter) -> Issue:
    name = param.distribution or ""
    values_form = f"{name}_values"
    lo, hi = effective_range(param)
    message = (
        f"{name} takes natural-log exponents, so min: {param.min:g}, max: {param.max:g} samples values in "
        f"[{lo:.7g}, {hi:.7g}]."
    )
    meant_values = param.min is not None and param.max is not None and 0 < param.min < param.max <= 1
    if meant_values:
        fix = f"if you meant values from {param.min:g} to {param.max:g}, write `distribution: {values_form}`."
    else:
        fix = (
            f"to sample that range without the deprecated form, write `distribution: {values_form}` with "
            f"`min: {lo:.7g}` and `max: {hi:.7g}`."
        )
        if param.min is not None and param.min > 0:
            fix += f" If you meant values from {param.min:g} to {param.max:g}, just change the distribution."
    return Issue(render_path(param_loc(path)), message, fix)


def warnings_for(config: SweepConfig) -> list[Issue]:
    """Every warning for a valid sweep config (an empty list when there is nothing to say)."""
    found: list[Issue] = []
    for path, param in iter_leaves(config.parameters or {}):
        spec = param.spec
        if spec is not None and spec.exponents:
            found.append(_exponent_warning(path, param))
    if isinstance(config.scheduler, LaunchScheduler):
        for key in sorted(set(config.scheduler.model_extra or {}) - LAUNCH_SCHEDULER_KEYS):
            found.append(
                Issue(
                    f"scheduler.{key}",
                    "is not a key W&B's Launch scheduler knows; it is passed on and ignored.",
                    f"check the spelling (known: {', '.join(sorted(LAUNCH_SCHEDULER_KEYS))}).",
                )
            )
    return found
