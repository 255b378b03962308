"""Reports a person reads after a campaign: parallel-coordinates plots and a markdown summary.

Parallel coordinates are how W&B users read a sweep (one axis per parameter, one line per run, colored by the
metric). The HTML is interactive (plotly, its script written once beside the pages, so it works offline); the
PNG (matplotlib) is for places that show images only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sweepflow.campaign.analysis import CONFIG, SUMMARY, ranked
from sweepflow.campaign.results import CampaignResult
from sweepflow.config import Metric
from sweepflow.private import private_dir


def _axes(frame: pd.DataFrame, metric: Metric) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Numeric axes for every varying parameter (categoricals as codes, with their labels) plus the metric."""
    usable = ranked(frame, metric)
    axes, labels = {}, {}
    for column in [c for c in usable.columns if c.startswith(CONFIG)]:
        values = usable[column]
        if values.nunique(dropna=True) < 2:
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        name = column[len(CONFIG) :]
        if numeric.notna().all():
            numeric = numeric.astype(float)
            if (numeric > 0).all() and numeric.max() / numeric.min() > 100:  # a log-scale parameter (lr, decay)
                name, numeric = f"log10({name})", np.log10(numeric)
            axes[name] = numeric
        else:
            codes, uniques = pd.factorize(values.astype(str), sort=True)
            axes[name], labels[name] = pd.Series(codes, index=values.index, dtype=float), list(uniques)
    axes[metric.name] = usable[SUMMARY + metric.name].astype(float)
    return pd.DataFrame(axes), labels


def parallel_coordinates(frame: pd.DataFrame, metric: Metric, out: Path, title: str) -> tuple[Path, Path] | None:
    """Write ``out``.html and ``out``.png; None when fewer than two runs have the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    axes, labels = _axes(frame, metric)
    if len(axes) < 2:
        return None
    private_dir(out.parent)
    dims = []
    for name in axes.columns:
        dim = {"label": name, "values": axes[name]}
        if name in labels:
            dim |= {"tickvals": list(range(len(labels[name]))), "ticktext": labels[name]}
        dims.append(dim)
    reverse = metric.goal == "minimize"  # the best runs get the bright end of the scale either way
    figure = go.Figure(
        go.Parcoords(
            line={"color": axes[metric.name], "colorscale": "Viridis", "reversescale": reverse, "showscale": True},
            dimensions=dims,
        )
    )
    figure.update_layout(title=title)
    html = out.with_suffix(".html")
    figure.write_html(html, include_plotlyjs="directory")

    scaled = (axes - axes.min()) / (axes.max() - axes.min()).replace(0, 1)
    color = scaled[metric.name].to_numpy()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(axes.columns)), 4))
    cmap = plt.get_cmap("viridis_r" if reverse else "viridis")
    for i in np.argsort(-color if reverse else color):
        ax.plot(range(len(axes.columns)), scaled.iloc[i].to_numpy(), color=cmap(color[i]), alpha=0.8)
    ax.set_xticks(range(len(axes.columns)), axes.columns, rotation=20)
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return html, png


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
        lines += ["", f"**Best overall** (stage `{result.best_stage}`, {result.best_value:.6g}):", "", "```"]
        lines += [f"{k}: {v}" for k, v in result.best_config.items()] + ["```"]
    total_cost = sum(s.cost_usd for s in result.stages.values())
    total_time = sum(s.runtime_s for s in result.stages.values())
    lines += [
        "",
        f"Total: {sum(s.runs for s in result.stages.values())} runs, ${total_cost:.4f}, "
        f"{total_time:.0f} s of run time.",
    ]
    return "\n".join(lines) + "\n"
