"""Reports a person reads: tables that fit (flat, rounded, best marked), importance with a sign, plots that read
right (categorical axes, a stage axis, rank colors). No Prefect here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from sweepflow.campaign.analysis import importance
from sweepflow.campaign.report import (
    _axes,
    describe_param,
    importance_markdown,
    markdown_table,
    parallel_coordinates,
    png_markdown,
    runs_table,
)
from sweepflow.config import Metric

LOSS = Metric(name="loss", goal="minimize")


def _frame() -> pd.DataFrame:
    rows = []
    for i, (q, kind, loss) in enumerate([(0.5, "a", 0.123456789), (2.0, "b", 5.0), (1.0, "c", 0.5), (3.0, "a", 900.0)]):
        rows.append({"run_id": f"r{i}", "stage": "coarse" if i < 2 else "fine", "state": "finished",
                     "runtime_s": 1.23456, "cost_usd": 0.0, "config.quality": q, "config.kind": kind,
                     "config.opt.lr": 10.0 ** -(i + 1), "config.epochs": 3, "summary.loss": loss})  # fmt: skip
    rows.append({"run_id": "r9", "stage": "fine", "state": "failed", "runtime_s": 0.1, "cost_usd": 0.0,
                 "config.quality": 1.5, "config.kind": "b", "config.opt.lr": 0.5, "config.epochs": 3})  # fmt: skip
    return pd.DataFrame(rows)


def test_runs_table_is_flat_rounded_best_first_and_marks_the_best() -> None:
    rows = runs_table(_frame(), LOSS)
    assert [r["run"] for r in rows] == ["r0", "r2", "r1", "r3", "r9"]  # best first; the failed run last
    assert rows[0]["rank"] == "★ 1" and rows[-1]["rank"] == "-"
    assert rows[0]["loss"] == 0.1235 and rows[0]["runtime_s"] == 1.23  # rounded
    assert {"opt.lr", "kind", "quality", "stage", "state"} <= set(rows[0]) and "epochs" not in rows[0]
    assert not any(isinstance(v, dict | list) for r in rows for v in r.values())
    text = markdown_table(runs_table(_frame(), LOSS, limit=2))
    assert text.count("\n") == 3 and "★ 1" in text and "{" not in text


def test_importance_is_sorted_with_bars_and_signs() -> None:
    table = importance(_frame(), LOSS)
    text = importance_markdown(table)
    lines = text.splitlines()[2:]
    assert [line.split("|")[1].strip() for line in lines] == list(table["parameter"])
    assert list(table["importance"]) == sorted(table["importance"], reverse=True)
    assert "█" in lines[0] and ("↑ +" in text or "↓ -" in text)


def test_a_derived_change_reads_as_a_phrase_not_a_dict() -> None:
    assert describe_param({"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1}) == "log 0.0001 … 0.1"
    assert describe_param({"values": ["a", "b"]}) == "{a, b}" and describe_param({"value": 3}) == "= 3"
    assert describe_param({"min": 0.123456789, "max": 3}) == "0.1235 … 3"


def test_plot_axes_categorical_labels_stage_axis_and_rank_colors(tmp_path: Path) -> None:
    axes, rank = _axes(_frame(), LOSS)
    by_name = {a.name: a for a in axes}
    assert axes[0].name == "stage" and by_name["stage"].labels == ["coarse", "fine"]
    assert by_name["kind"].labels == ["a", "b", "c"] and [label for _, label in by_name["kind"].ticks] == [
        "a",
        "b",
        "c",
    ]
    assert by_name["opt.lr"].log and by_name["loss"].log  # lr spans 1000x; the outlier loss does too
    # Rank colors: evenly spaced whatever the outlier (900) does to the values; the best run is the brightest.
    assert sorted(rank.round(3)) == [0.25, 0.5, 0.75, 1.0] and rank.idxmax() == 0
    html, png = parallel_coordinates(_frame(), LOSS, tmp_path / "plot", "campaign")
    assert html.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_markdown(png, "plot").startswith("![plot](data:image/png;base64,iVBORw0KGgo")


def test_importing_the_core_does_not_import_prefect_but_exposes_the_blocks() -> None:
    code = (
        "import sys, inspect, sweepflow; assert 'prefect' not in sys.modules; "
        "names = [n for n, _ in inspect.getmembers(sweepflow)]; print(sweepflow.SweepflowStore.get_block_type_slug())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "sweepflow-store"
