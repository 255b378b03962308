"""A sweep's runs as a pandas DataFrame, and what W&B users read off it: best run, top-k, importance, cost.

Column names are fixed so downstream code never guesses: ``run_id``, ``stage``, ``state``, ``stopped_early``,
``runtime_s``, ``cost_usd``, one ``config.<param>`` column per parameter (nested parameters dotted:
``config.optim.lr``) and one ``summary.<metric>`` column per summary metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweepflow.backends.base import RunRecord
from sweepflow.config import Metric
from sweepflow.ranking import usable as usable_state
from sweepflow.states import RunState

CONFIG, SUMMARY = "config.", "summary."


def _flatten(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and not key.startswith("_"):
            out.update(_flatten(f"{prefix}{key}.", value))
        elif not key.startswith("_"):
            out[f"{prefix}{key}"] = value
    return out


def runs_frame(runs: Iterable[RunRecord], stage: str | None = None) -> pd.DataFrame:
    """One row per run; see the module docstring for the columns."""
    rows = [
        {
            "run_id": run.id,
            "stage": stage,
            "state": run.state.value,
            "stopped_early": run.state is RunState.KILLED,
            "runtime_s": run.runtime_s,
            "cost_usd": run.cost_usd,
            **_flatten(CONFIG, run.config),
            **_flatten(SUMMARY, run.summary),
        }
        for run in runs
    ]
    base = ["run_id", "stage", "state", "stopped_early", "runtime_s", "cost_usd"]
    return pd.DataFrame(rows, columns=None if rows else base)


def ranked(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """Usable runs (:mod:`sweepflow.ranking`'s rule: finished or killed early, a finite metric), best first."""
    column = SUMMARY + metric.name
    if frame.empty or column not in frame:
        return frame.iloc[0:0]
    frame = frame.reset_index(drop=True)  # frames of several stages may repeat index labels
    values = pd.to_numeric(frame[column], errors="coerce")
    usable = frame[frame["state"].map(usable_state).astype(bool) & values.notna() & np.isfinite(values.astype(float))]
    return usable.assign(**{column: values[usable.index]}).sort_values(
        column, ascending=metric.goal == "minimize", kind="stable"
    )


def top_k(frame: pd.DataFrame, metric: Metric, k: int) -> pd.DataFrame:
    """The ``k`` best usable runs (fewer if there are fewer)."""
    return ranked(frame, metric).head(k)


def best_run(frame: pd.DataFrame, metric: Metric) -> pd.Series | None:
    """The best usable run, or None if no run produced the metric."""
    best = ranked(frame, metric)
    return None if best.empty else best.iloc[0]


def param_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(CONFIG)]


def importance(frame: pd.DataFrame, metric: Metric, seed: int = 0) -> pd.DataFrame:
    """Per-parameter importance, W&B style: correlation with the metric, and a random forest's importance.

    Categoricals are one-hot encoded for the forest (their importances summed back per parameter) and get no
    correlation. Needs at least 3 usable runs; otherwise the frame is empty.
    """
    from sklearn.ensemble import RandomForestRegressor  # deferred: sklearn import is slow and often not needed

    usable = ranked(frame, metric)
    params = [c for c in param_columns(usable) if usable[c].nunique(dropna=True) > 1]
    if len(usable) < 3 or not params:
        return pd.DataFrame(columns=["parameter", "correlation", "importance"])
    y = usable[SUMMARY + metric.name].astype(float)
    encoded, owners = [], []
    for column in params:
        numeric = pd.to_numeric(usable[column], errors="coerce")
        if numeric.notna().all():
            encoded.append(numeric.rename(column))
            owners.append(column)
        else:
            dummies = pd.get_dummies(usable[column].astype(str), prefix=column, dtype=float)
            encoded.extend(dummies[c] for c in dummies)
            owners.extend([column] * dummies.shape[1])
    x = pd.concat(encoded, axis=1)
    forest = RandomForestRegressor(n_estimators=100, random_state=seed).fit(x.to_numpy(), y.to_numpy())
    weights = pd.Series(forest.feature_importances_).groupby(pd.Series(owners)).sum()
    rows = []
    for column in params:
        numeric = pd.to_numeric(usable[column], errors="coerce")
        corr = float(numeric.corr(y)) if numeric.notna().all() and numeric.std() > 0 else None
        rows.append({"parameter": column[len(CONFIG) :], "correlation": corr, "importance": float(weights[column])})
    return pd.DataFrame(rows).sort_values("importance", ascending=False, ignore_index=True)


def cost_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Runs, states, total run time and cost of a stage."""
    return {
        "runs": len(frame),
        "states": frame["state"].value_counts().to_dict() if not frame.empty else {},
        "runtime_s": float(frame["runtime_s"].fillna(0).sum()) if not frame.empty else 0.0,
        "cost_usd": float(frame["cost_usd"].fillna(0).sum()) if not frame.empty else 0.0,
    }


def config_of(row: pd.Series, params: Sequence[str] | None = None) -> dict[str, Any]:
    """A frame row back to a (nested) config mapping, dropping parameters the run did not have."""
    out: dict[str, Any] = {}
    for column in params if params is not None else [c for c in row.index if c.startswith(CONFIG)]:
        value = row[column]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        node = out
        *parents, leaf = column[len(CONFIG) :].split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value.item() if isinstance(value, np.generic) else value
    return out
