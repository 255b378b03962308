"""The seam between campaigns and the local backend: one store setting, check before create, a config that
carries its folder, and a busy store reported as worth retrying."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sweepflow.backends import TransientBackendError
from sweepflow.backends.local import LocalBackend, check_local
from sweepflow.config import load_pipeline, load_sweep_config
from sweepflow.errors import SweepflowError
from sweepflow.settings import Settings
from sweepflow.store import Store, get_store
from tests.backend_tests.conftest import curve_config, sweep

ROOT = Path(__file__).resolve().parents[2]


def test_store_url_setting_is_read_by_the_store_and_the_backend(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("SWEEPFLOW_STORE_URL", url)
    monkeypatch.setenv("SWEEPFLOW_HOME", str(tmp_path / "home"))
    assert get_store().url == LocalBackend().store.url == Settings().url == url


def test_a_config_remembers_its_folder_so_its_job_resolves_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # far from deployments/ and its sweepflow.yaml job registry
    coarse = load_sweep_config(ROOT / "deployments" / "digits-coarse.yaml")
    assert coarse.source_dir == str(ROOT / "deployments") and "source_dir" not in coarse.to_wandb()
    assert check_local(coarse) == []
    campaign = load_pipeline(ROOT / "deployments" / "digits-campaign.yaml")
    assert campaign.stages["coarse"].sweep.source_dir == str(ROOT / "deployments")
    assert check_local(coarse.model_copy(update={"source_dir": None}))[0].message.startswith("job: 'digits/")


def test_what_the_backend_cannot_run_is_refused_before_anything_is_stored(backend: LocalBackend) -> None:
    for config, says in [
        ({**curve_config(), "method": "custom"}, "method: 'custom' has no search engine in the local backend"),
        (curve_config(program="absent.py"), "program: 'absent.py' does not exist"),
    ]:
        with pytest.raises(SweepflowError, match=says):
            backend.launch(sweep(config), key="k", drive="none")
    assert backend.store.list_sweeps() == [] and backend.store.list_queues() == []


def test_a_locked_store_is_a_transient_error(backend: LocalBackend) -> None:
    handle = backend.launch(sweep(curve_config(run_cap=1)), key="k", drive="none")
    impatient = LocalBackend(Store(backend.store.url, busy_timeout_s=0.05), settings=backend.settings)
    holder = sqlite3.connect(backend.store.url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        with pytest.raises(TransientBackendError, match="the store is busy"):
            impatient.set_state(handle.id, "pause")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert impatient.set_state(handle.id, "pause").state == "paused"  # the same call, retried, goes through


def test_sweep_verbs_follow_wandb(backend: LocalBackend) -> None:
    sweep_id = backend.launch(sweep(curve_config(run_cap=1)), key="k", drive="none").id
    with pytest.raises(SweepflowError, match="already running"):
        backend.set_state(sweep_id, "resume")
    assert backend.set_state(sweep_id, "stop").state == "finished"  # `wandb sweep --stop` ends FINISHED
    with pytest.raises(SweepflowError, match="already finished"):
        backend.set_state(sweep_id, "cancel")
    assert backend.launch(sweep(curve_config(run_cap=1)), key="k", drive="none").state == "finished"
    backend.resume(sweep_id, drive="none")
    assert backend.status(sweep_id).state == "running"
    assert backend.set_state(sweep_id, "cancel").state == "canceled"
