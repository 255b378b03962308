"""Reports a person reads after a campaign: parallel-coordinates plots, tables and a markdown summary.

Parallel coordinates are how W&B users read a sweep (one axis per parameter, one line per run, colored by the
metric). The HTML is interactive (plotly, its script written once beside the pages, so it works offline); the
PNG (matplotlib) is for places that show images only, such as a Prefect markdown artifact (embedded as a data
URI, so the UI shows it without any file server). Both read the same way:

- every axis has its own scale, with its values written on it; categorical parameters are categorical axes with
  their labels; a log-scale parameter (lr, decay) gets a log axis;
- a campaign plot has a ``stage`` axis (coarse, fine, ...) when it mixes stages;
- lines are colored by the *rank* of the metric (best = bright), so one outlier cannot flatten the scale.

The tables (:func:`runs_table`, :func:`importance_markdown`) flatten configs into one column per parameter and
round numbers, so they fit a screen and print no Python dicts.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweepflow.campaign.analysis import CONFIG, SUMMARY, ranked
from sweepflow.campaign.results import CampaignResult
from sweepflow.config import Metric
from sweepflow.private import private_dir


def fmt(value: Any, digits: int = 4) -> Any:
    """A number rounded to ``digits`` significant digits (ints stay ints); anything else unchanged, None for NaN."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value == 0 or (value.is_integer() and abs(value) < 1e9):
            return int(value) if value.is_integer() else value
        return float(f"{value:.{digits}g}")
    return value


def _text(value: Any) -> str:
    value = fmt(value)
    return "" if value is None else str(value)


def describe_param(spec: Any) -> str:
    """A W&B parameter spec as a short phrase: ``0.5 … 3``, ``log 0.0001 … 0.1``, ``{a, b}``, ``= 3``."""
    if not isinstance(spec, Mapping):
        return _text(spec)
    if "value" in spec:
        return f"= {_text(spec['value'])}"
    if "values" in spec:
        return "{" + ", ".join(_text(v) for v in spec["values"]) + "}"
    if "min" in spec or "max" in spec:
        dist = str(spec.get("distribution", ""))
        kind = "log " if "log" in dist else "int " if dist.startswith("int") else ""
        step = f" step {_text(spec['q'])}" if "q" in spec else ""
        return f"{kind}{_text(spec.get('min'))} … {_text(spec.get('max'))}{step}"
    if "parameters" in spec:
        return "{" + ", ".join(f"{k}: {describe_param(v)}" for k, v in spec["parameters"].items()) + "}"
    return ", ".join(f"{k} {_text(v)}" for k, v in spec.items())


# -- tables ---------------------------------------------------------------------------------------------------


def runs_table(frame: pd.DataFrame, metric: Metric | None, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows for a table artifact: best first, then runs without the metric; one column per parameter, rounded.

    Columns: ``rank`` (★ marks the best), ``run``, ``state``, the metric, each varying parameter (its name
    without ``config.``), ``runtime_s``; constant parameters are left out (they are the same on every row).
    """
    if frame.empty:
        return []
    frame = frame.reset_index(drop=True)
    usable = list(ranked(frame, metric).index) if metric is not None else []
    order = usable + [i for i in frame.index if i not in set(usable)]
    params = [c for c in frame.columns if c.startswith(CONFIG) and frame[c].astype(str).nunique() > 1]
    multi_stage = "stage" in frame and frame["stage"].nunique() > 1
    rows = []
    for position, i in enumerate(order[:limit] if limit else order):
        row = frame.loc[i]
        out: dict[str, Any] = {
            "rank": ("★ 1" if position == 0 else str(position + 1)) if position < len(usable) else "-"
        }
        if multi_stage:
            out["stage"] = row["stage"]
        out |= {"run": row["run_id"], "state": row["state"]}
        if metric is not None:
            out[metric.name] = fmt(row.get(SUMMARY + metric.name))
        out |= {c[len(CONFIG) :]: fmt(row[c]) for c in params}
        out["runtime_s"] = fmt(row.get("runtime_s"), 3)
        rows.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()})
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows (as :func:`runs_table` makes them) as a markdown table."""
    if not rows:
        return "_no runs_"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_text(row.get(c)).replace("|", "\\|") for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def importance_markdown(table: pd.DataFrame, width: int = 20) -> str:
    """Parameter importance, most important first, with a bar and the sign of the correlation with the metric."""
    if table.empty:
        return "_needs at least 3 finished runs with a varying parameter_"
    top = float(table["importance"].max()) or 1.0
    lines = ["| parameter | importance | | correlation |", "|---|---|---|---|"]
    for r in table.itertuples():
        bar = "█" * max(1, round(width * r.importance / top)) if r.importance > 0 else ""
        corr = r.correlation
        sign = "" if corr is None or pd.isna(corr) else ("↑ +" if corr >= 0 else "↓ -") + f"{abs(corr):.2f}"
        lines.append(f"| {r.parameter} | {r.importance:.3f} | `{bar}` | {sign} |")
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------------------


class _Axis:
    """One vertical axis: values mapped to [0, 1], and the ticks to write on it."""

    def __init__(self, name: str, values: pd.Series):
        self.name, self.labels, self.log = name, None, False
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all() and not pd.api.types.is_bool_dtype(values):
            numeric = numeric.astype(float)
            if (numeric > 0).all() and numeric.max() / numeric.min() > 100:  # a log-scale parameter (lr, decay)
                self.log, numeric = True, np.log10(numeric)
            low, high = float(numeric.min()), float(numeric.max())
            span = (high - low) or 1.0
            self.raw = numeric
            self.scaled = (numeric - low) / span
            ticks = np.linspace(low, high, 5) if high > low else np.array([low])
            self.ticks = [((t - low) / span, _text(10**t if self.log else t)) for t in ticks]
        else:
            codes, uniques = pd.factorize(values.astype(str), sort=True)
            n = max(len(uniques) - 1, 1)
            self.labels = list(uniques)
            self.raw = pd.Series(codes, index=values.index, dtype=float)
            self.scaled = self.raw / n if len(uniques) > 1 else self.raw * 0 + 0.5
            self.ticks = [(k / n if len(uniques) > 1 else 0.5, label) for k, label in enumerate(uniques)]


def _axes(frame: pd.DataFrame, metric: Metric) -> tuple[list[_Axis], pd.Series]:
    """The axes (stage if several, every varying parameter, the metric last) and each run's rank color (0..1,
    1 = best) of the usable runs."""
    usable = ranked(frame, metric)
    axes = []
    if "stage" in usable and usable["stage"].nunique() > 1:
        axes.append(_Axis("stage", usable["stage"]))
    for column in [c for c in usable.columns if c.startswith(CONFIG)]:
        values = usable[column]
        if values.notna().all() and values.astype(str).nunique() >= 2:
            axes.append(_Axis(column[len(CONFIG) :], values))
    axes.append(_Axis(metric.name, usable[SUMMARY + metric.name].astype(float)))
    n = len(usable)
    rank = pd.Series(np.arange(n, 0, -1) / max(n, 1), index=usable.index)  # usable is best first
    return axes, rank


def parallel_coordinates(frame: pd.DataFrame, metric: Metric, out: Path, title: str) -> tuple[Path, Path] | None:
    """Write ``out``.html and ``out``.png; None when fewer than two runs have the metric or nothing varies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    axes, rank = _axes(frame, metric)
    if len(axes) < 2 or len(rank) < 2:
        return None
    private_dir(out.parent)
    dims = []
    for axis in axes:
        dim: dict[str, Any] = {"label": f"log10({axis.name})" if axis.log else axis.name, "values": axis.raw}
        if axis.labels is not None:
            dim |= {"tickvals": list(range(len(axis.labels))), "ticktext": axis.labels}
        dims.append(dim)
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": rank,
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": f"rank of {metric.name}<br>(1 = best)"}, "tickvals": []},
            },
            dimensions=dims,
        )
    )
    figure.update_layout(title=title)
    html = out.with_suffix(".html")
    figure.write_html(html, include_plotlyjs="directory")

    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * len(axes) + 1.5), 4.6))
    cmap = plt.get_cmap("viridis")
    xs = range(len(axes))
    for i in rank.sort_values().index:  # best drawn last, on top
        ax.plot(xs, [a.scaled[i] for a in axes], color=cmap(rank[i]), alpha=0.85, linewidth=1.4)
    for x, axis in enumerate(axes):
        ax.axvline(x, color="#444", linewidth=0.8)
        for y, label in axis.ticks:
            ax.text(x + 0.03, y, label, fontsize=7.5, va="center", ha="left", color="#222",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})  # fmt: skip
    names = [f"{a.name}\n(log)" if a.log else a.name for a in axes]
    names[-1] += f"\n({'lower' if metric.goal == 'minimize' else 'higher'} is better)"
    ax.set_xticks(list(xs), names, fontsize=9)
    ax.set_xlim(-0.2, len(axes) - 0.5)
    ax.set_ylim(-0.06, 1.06)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{title}: {len(rank)} runs, colored by rank of {metric.name}")
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap), ax=ax, fraction=0.03, pad=0.02)
    bar.set_ticks([0.0, 1.0], labels=["worst", "best"])
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return html, png


def png_markdown(png: Path, alt: str) -> str:
    """A PNG as a markdown image with a data URI: visible in Prefect's UI with no file server."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})"


def summary_markdown(result: CampaignResult) -> str:
    """The campaign at a glance: stages, runs, best per stage, cost and time."""
    lines = [
        f"# Campaign `{result.pipeline}` (key `{result.key}`)",
        "",
        "| stage | state | sweep | runs | best | cost $ | run time s |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in result.stages.values():
        best = f"{stage.metric} = {stage.best_value:.6g}" if stage.best_value is not None else ""
        state = stage.state + (f" ({stage.reason})" if stage.reason else "")
        lines.append(
            f"| {stage.name} | {state} | {stage.sweep_id or ''} | {stage.runs} | {best} | {stage.cost_usd:.4f} | "
            f"{stage.runtime_s:.1f} |"
        )
    if result.best_config is not None:
        lines += ["", f"**Best overall** (stage `{result.best_stage}`, {result.best_value:.6g}):", ""]
        lines += ["| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {_text(v)} |" for k, v in _flat(result.best_config).items()]
    total_cost = sum(s.cost_usd for s in result.stages.values())
    total_time = sum(s.runtime_s for s in result.stages.values())
    lines += [
        "",
        f"Total: {sum(s.runs for s in result.stages.values())} runs, ${total_cost:.4f}, "
        f"{total_time:.0f} s of run time.",
    ]
    return "\n".join(lines) + "\n"


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
