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


def distinct_configs(config: SweepConfig) -> int | None:
    """How many distinct configs the space holds, or None when a parameter is continuous (no bound)."""
    total = 1
    for _, param in iter_leaves(config.parameters or {}):
        name = param.distribution
        if name == "constant":
            count = 1
        elif name in ("categorical", "categorical_w_probabilities"):
            count = len({repr(v) for v in param.values or []})
        elif name == "int_uniform" and param.min is not None and param.max is not None:
            count = int(param.max) - int(param.min) + 1
        elif name == "q_uniform" and param.min is not None and param.max is not None:
            count = math.floor((param.max - param.min) / (param.q or 1.0) + 1e-9) + 1
        else:
            return None
        total *= max(count, 1)
    return total


def _command_warnings(config: SweepConfig) -> list[Issue]:
    from sweepflow.local.command import macro_warnings  # the local backend's rules: imported late, no cycle

    return [
        Issue("command", *text.split(" Fix: ", 1)) if " Fix: " in text else Issue("command", text)
        for text in macro_warnings(config.command or [])
    ]


def warnings_for(config: SweepConfig) -> list[Issue]:
    """Every warning for a valid sweep config (an empty list when there is nothing to say)."""
    found: list[Issue] = _command_warnings(config)
    distinct = distinct_configs(config) if config.method in ("random", "bayes") else None
    if distinct is not None and config.run_cap is not None and config.run_cap > distinct:
        found.append(
            Issue(
                "run_cap",
                f"is {config.run_cap}, but the space holds only {distinct} distinct configs. sweepflow never runs a "
                f"config twice, so the sweep ends after {distinct} runs (W&B's {config.method} search would keep "
                "proposing repeats).",
                f"lower run_cap to {distinct}, or widen the space.",
            )
        )
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
