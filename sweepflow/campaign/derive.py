"""Build a downstream stage's sweep config from an upstream stage's results (the pipeline's ``derive`` rules).

Coarse -> fine: numeric ranges narrow around the top-k runs (in log space for log distributions, with a margin,
clipped to the upstream range, ints stay ints), categoricals keep the values the top-k used, chosen parameters
are fixed to the best run's value, and the top runs are carried over as warm-start runs, keeping only those that
fit the new space (W&B's bayes engine raises on a categorical value outside the space, and silently clamps
numbers). Every change is recorded with its reason, so a person can audit why the space changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sweepflow.campaign.analysis import CONFIG, SUMMARY, config_of, top_k
from sweepflow.config import Derive, Metric, Parameter, SweepConfig, check_sweep, iter_leaves
from sweepflow.config.parameters import EXPONENT_FORMS, LOG_SPACE, NARROWABLE
from sweepflow.errors import SweepflowError
from sweepflow.warm_start import PriorRun


class DeriveError(SweepflowError):
    """The upstream results cannot produce a valid downstream space (e.g. no run finished)."""


@dataclass(frozen=True)
class Change:
    """One parameter's before and after, and why."""

    parameter: str
    before: dict[str, Any]
    after: dict[str, Any]
    why: str


@dataclass(frozen=True)
class Derived:
    """The derived config, the warm-start runs that fit it, and the audit trail."""

    config: SweepConfig
    warm_start: list[PriorRun]  # upstream runs inside the new space
    changes: list[Change]
    best: dict[str, Any]  # the upstream best run's config


def derive_config(base: SweepConfig, rule: Derive, upstream: pd.DataFrame, stage: str = "upstream") -> Derived:
    """Apply ``rule`` to ``base`` using the upstream runs in ``upstream`` (see :func:`analysis.runs_frame`)."""
    if base.metric is None:
        raise DeriveError(f"stage {stage!r} has no `metric`, so its runs cannot be ranked; add `metric:`.")
    leaves = {".".join(path): param for path, param in iter_leaves(base.parameters or {})}
    top = top_k(upstream, base.metric, rule.top_k)
    if top.empty:
        states = upstream["state"].value_counts().to_dict() if not upstream.empty else {}
        raise DeriveError(
            f"stage {stage!r} has no finished run with metric {base.metric.name!r} (runs by state: {states}); "
            "nothing to derive from. Check the upstream's runs (`sweepflow runs ID`)."
        )
    best = config_of(top.iloc[0], [CONFIG + name for name in leaves if CONFIG + name in top])
    new = base.to_wandb()
    changes: list[Change] = []
    for field, names in (("narrow", rule.narrow), ("keep_seen", rule.keep_seen), ("fix", rule.fix)):
        for name in names:
            param = leaves[name]
            column = top[CONFIG + name] if CONFIG + name in top else pd.Series(dtype=object)
            seen = [v for v in column.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
            if not seen:
                raise DeriveError(f"derive.{field}: no top run of stage {stage!r} has a value for {name!r}.")
            after, why = _RULES[field](name, param, seen, rule.margin)
            changes.append(Change(name, param.to_wandb(), after, why))
            _set_leaf(new["parameters"], name.split("."), after)
    for key, value in (("method", rule.method), ("run_cap", rule.run_cap), ("queue", rule.queue)):
        if value is not None:
            new[key] = value
    if rule.num_workers is not None:
        scheduler = new.get("scheduler") if isinstance(new.get("scheduler"), dict) else {}
        new["scheduler"] = {**scheduler, "num_workers": rule.num_workers}
    checked = check_sweep(new, f"derived config of stage {stage!r}")
    if not checked.ok:
        raise DeriveError("the derived config is invalid:\n" + "\n".join(f"  - {i}" for i in checked.errors))
    assert isinstance(checked.model, SweepConfig)
    config = checked.model.model_copy(update={"source_dir": base.source_dir})  # its program resolves as before
    warm = warm_start_runs(config, upstream, base.metric, rule.warm_start)
    return Derived(config, warm, changes, best)


def _narrow(name: str, param: Parameter, seen: list[Any], margin: float) -> tuple[dict[str, Any], str]:
    dist = param.distribution or ""
    if dist not in NARROWABLE:
        raise DeriveError(
            f"derive.narrow: {name!r} is a {dist} parameter and has no range to narrow; use `keep_seen` or `fix`."
        )
    lo_p, hi_p = float(param.min), float(param.max)  # type: ignore[arg-type]  # ranges always have both
    to_space, from_space = (math.log, math.exp) if dist in LOG_SPACE else (lambda v: v, lambda v: v)
    if dist in EXPONENT_FORMS:  # bounds are exponents; the run's values are e**x (inv: e**-x)
        sign = -1.0 if dist == "inv_log_uniform" else 1.0
        to_space, from_space = (lambda v: sign * math.log(v)), (lambda v: v)
        lo_space, hi_space = lo_p, hi_p
    else:
        lo_space, hi_space = to_space(lo_p), to_space(hi_p)
    points = sorted(to_space(float(v)) for v in seen)
    span = points[-1] - points[0] or 0.05 * (hi_space - lo_space)
    lo = max(lo_space, points[0] - margin * span)
    hi = min(hi_space, points[-1] + margin * span)
    new_lo, new_hi = from_space(lo), from_space(hi)
    if dist == "int_uniform":
        new_lo, new_hi = math.floor(min(new_lo, min(seen))), math.ceil(max(new_hi, max(seen)))
        if new_lo == new_hi:
            new_lo, new_hi = (new_lo - 1, new_hi) if new_lo > param.min else (new_lo, new_hi + 1)  # type: ignore[operator]
            if new_lo < param.min or new_hi > param.max:  # type: ignore[operator]
                return {"value": int(seen[0])}, f"top-{len(seen)} all used {seen[0]}; the range has no room"
    elif dist not in EXPONENT_FORMS:
        # Float round-off (exp(log(x)) != x) must never push a top run out of the range, nor the range out of
        # its parent.
        new_lo = max(lo_p, min(new_lo, min(map(float, seen))))
        new_hi = min(hi_p, max(new_hi, max(map(float, seen))))
    after = {**param.to_wandb(), "min": new_lo, "max": new_hi}
    space = "log space" if dist in LOG_SPACE | EXPONENT_FORMS else "linear space"
    return after, f"narrowed to the top-{len(seen)} runs' range ± {margin:g} of its span ({space}), within the parent"


def _keep_seen(name: str, param: Parameter, seen: list[Any], margin: float) -> tuple[dict[str, Any], str]:
    if param.distribution not in ("categorical", "categorical_w_probabilities", "constant"):
        raise DeriveError(f"derive.keep_seen: {name!r} is a {param.distribution} parameter, not a categorical.")
    values = param.values if param.values is not None else [param.value]
    kept = [v for v in values if v in seen]
    return {"values": kept}, f"kept the values the top-{len(seen)} runs used ({len(kept)} of {len(values)})"


def _fix(name: str, param: Parameter, seen: list[Any], margin: float) -> tuple[dict[str, Any], str]:
    return {"value": seen[0]}, "fixed to the best run's value"


_RULES = {"narrow": _narrow, "keep_seen": _keep_seen, "fix": _fix}


def _set_leaf(parameters: dict[str, Any], path: list[str], spec: dict[str, Any]) -> None:
    node = parameters
    for part in path[:-1]:
        node = node[part]["parameters"]
    node[path[-1]] = spec


def _fits(param: Parameter, value: Any) -> bool:
    if param.distribution == "constant":
        return value == param.value
    if param.values is not None:
        return value in param.values
    if param.min is not None and param.max is not None and isinstance(value, int | float):
        if param.distribution in EXPONENT_FORMS:  # bounds are exponents of the values
            if value <= 0:
                return False
            x = -math.log(value) if param.distribution == "inv_log_uniform" else math.log(value)
            return param.min <= x <= param.max
        return param.min <= value <= param.max
    return True  # unbounded distributions (normal, beta ...) accept any number


def warm_start_runs(config: SweepConfig, upstream: pd.DataFrame, metric: Metric, k: int) -> list[PriorRun]:
    """The ``k`` best upstream runs that lie inside ``config``'s space, as prior runs for a new sweep."""
    if not k:
        return []
    leaves = {".".join(path): param for path, param in iter_leaves(config.parameters or {})}
    carried = []
    for _, row in top_k(upstream, metric, k).iterrows():
        run_config = config_of(row, [CONFIG + n for n in leaves if CONFIG + n in row])
        flat = {n: row.get(CONFIG + n) for n in leaves}
        if all(_fits(param, flat[n]) for n, param in leaves.items()):
            summary = {
                c[len(SUMMARY) :]: row[c].item() if isinstance(row[c], np.generic) else row[c]
                for c in row.index
                if c.startswith(SUMMARY) and pd.notna(row[c])
            }
            carried.append(PriorRun(config=run_config, summary=summary, source_run_id=str(row["run_id"])))
    return carried
