"""A W&B API key in the environment appears nowhere sweepflow writes: store, run folders, reports, logs,
artifacts, or Prefect's database."""

from __future__ import annotations

import uuid
from pathlib import Path

from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL

from sweepflow.config import Pipeline
from sweepflow.flows.sweep_pipeline import sweep_pipeline
from tests.flows_tests.conftest import coarse_sweep


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_canary_api_key_is_never_written(monkeypatch, sweepflow_home: Path, tmp_path: Path) -> None:
    canary = f"sfcanary{uuid.uuid4().hex}"
    monkeypatch.setenv("WANDB_API_KEY", canary)  # runs inherit the environment, as under `wandb agent`
    spec = Pipeline.model_validate({"name": "canary", "stages": {"only": {"sweep": coarse_sweep(run_cap=2)}}})
    result = sweep_pipeline(spec, key="canary", report_dir=str(tmp_path / "report"))
    assert result.stages["only"].runs == 2 and (sweepflow_home / "sweepflow.db").is_file()
    prefect_db = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
    roots = [sweepflow_home, tmp_path / "report", prefect_db.parent, PREFECT_HOME.value()]
    assert prefect_db.is_file() and any((sweepflow_home / "runs").rglob("run-*.wandb"))
    assert [path for root in roots if root.exists() for path in _files_holding(root, canary.encode())] == []
