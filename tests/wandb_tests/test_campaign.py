"""Whole campaigns on the W&B backend against the stub W&B server, on a real Prefect harness: two stages (coarse,
then a bayes stage narrowed around its best runs and warm-started from them) in agents mode, where real
``wandb agent`` processes run tests/scripts/curve.py online, and in Launch mode, where the stub plays the scheduler.

kill -9 of the flow, then a new flow run: no second sweep. One response in five failing transiently: the
campaign completes. A refused key: one line. The canary key: nowhere on disk, in Prefect's database or its logs.
All slow (W&B's agent heartbeats every 5 s): run with ``pytest -m slow tests/wandb_tests``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL
from prefect.testing.utilities import prefect_test_harness

from sweepflow.backends.wandb import WandbBackend
from sweepflow.config import Pipeline
from sweepflow.flows.sweep_pipeline import sweep_pipeline
from sweepflow.tasks.blocks import WandbCredentials
from tests.backend_tests.conftest import CURVE
from tests.wandb_stub.fixtures import CANARY_KEY, stop_agents
from tests.wandb_stub.server import StubServer

pytestmark = pytest.mark.slow

FINE = {"from": "coarse", "top_k": 2, "narrow": ["quality"], "warm_start": 2, "method": "bayes", "run_cap": 2}


@pytest.fixture(scope="module", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWEEPFLOW_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def coarse(**top) -> dict:
    return {
        "method": "random",
        "program": str(CURVE),
        "run_cap": 4,
        "scheduler": {"num_workers": 2},
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"quality": {"min": 0.5, "max": 3.0}, "epochs": {"value": 3}, "sleep": {"value": 0.1}},
        **top,
    }


def launch_coarse() -> dict:
    config = {k: v for k, v in coarse().items() if k != "program"}
    return {**config, "job": "stub-team/camp/train-digits:latest", "queue": "gpu-queue"}


def campaign(sweep: dict) -> dict:
    return {"name": "camp", "backend": "wandb", "stages": {"coarse": {"sweep": sweep},
                                                          "fine": {"needs": ["coarse"], "derive": FINE}}}  # fmt: skip


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _no_canary_anywhere(*roots: Path) -> None:
    prefect_db = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
    places = [*roots, prefect_db.parent, Path(PREFECT_HOME.value())]
    assert prefect_db.is_file()
    assert [p for root in places if root.exists() for p in _files_holding(root, CANARY_KEY.encode())] == []


def _check_two_stages(result, stub: StubServer) -> None:
    coarse_stage, fine_stage = result.stages["coarse"], result.stages["fine"]
    assert (coarse_stage.state, fine_stage.state, coarse_stage.runs, fine_stage.runs) == ("finished", "finished", 4, 2)
    assert len(stub.state.sweeps) == 2  # one W&B sweep per stage
    fine_name = fine_stage.sweep_id.rsplit("/", 1)[1]
    coarse_runs = {r.name for r in stub.state.runs.values() if r.sweep == coarse_stage.sweep_id.rsplit("/", 1)[1]}
    warm = {r.name for r in stub.state.prior[fine_name]}
    assert len(warm) == 2 and warm <= coarse_runs  # W&B's prior_runs carried the coarse stage's best runs
    space = stub.state.sweeps[fine_name].config["parameters"]["quality"]
    assert 0.5 <= space["min"] <= coarse_stage.best_config["quality"] <= space["max"] <= 3.0


def test_two_stage_campaign_with_wandb_agents(stub: StubServer, home: Path, tmp_path: Path) -> None:
    spec = Pipeline.model_validate(campaign(coarse()))
    try:
        result = sweep_pipeline(spec, key="agents", report_dir=str(tmp_path / "report"))
        _check_two_stages(result, stub)
        assert {r.state for r in stub.state.runs.values()} == {"finished"}
        assert len(stub.ops("CreateAgent")) >= 4 and stub.ops("UpsertBucket")  # real agents, online runs
        assert any((home / "wandb-agents").rglob("agent-*.log"))
        _no_canary_anywhere(home, tmp_path / "report")
    finally:
        stop_agents(WandbBackend())


def test_two_stage_campaign_on_launch_queues(stub: StubServer, home: Path, tmp_path: Path) -> None:
    result = sweep_pipeline(Pipeline.model_validate(campaign(launch_coarse())), key="launch", report_dir=str(tmp_path))
    _check_two_stages(result, stub)
    assert [i["kind"] for i in stub.state.queue_items].count("scheduler") == 2  # one scheduler per stage
    assert not (home / "wandb-agents").exists() or not list((home / "wandb-agents").rglob("*.pid"))


def test_kill_9_of_the_flow_then_a_new_flow_run_resumes_the_same_sweeps(
    stub: StubServer, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    WandbCredentials(api_key=CANARY_KEY, base_url=stub.url, entity="stub-team").save("team", overwrite=True)
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY"):
        monkeypatch.delenv(name)  # the flow reads the block, and nothing else
    spec_path = tmp_path / "camp.yaml"
    spec_path.write_text(yaml.safe_dump(campaign(coarse())))
    code = textwrap.dedent(f"""
        from sweepflow.flows.sweep_pipeline import sweep_pipeline
        r = sweep_pipeline({str(spec_path)!r}, key="killed", store="team", report_dir={str(tmp_path / "r")!r})
        print("DONE", r.stages["coarse"].sweep_id, r.stages["fine"].sweep_id)
    """)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}
    flow = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(r.state == "running" for r in stub.state.runs.values()):
            time.sleep(0.2)
        assert len(stub.state.sweeps) == 1, "the coarse stage's sweep was not created"
        flow.kill()  # SIGKILL while the coarse stage's runs are in flight
        flow.wait()
        assert flow.returncode == -signal.SIGKILL
        rerun = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        [coarse_name] = [n for n, s in stub.state.sweeps.items() if s.display_name == "sweepflow:killed/coarse"]
        assert f"DONE stub-team/camp/{coarse_name} " in rerun.stdout, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        assert sorted(s.display_name for s in stub.state.sweeps.values()) == [
            "sweepflow:killed/coarse",
            "sweepflow:killed/fine",
        ]  # no second sweep for the stage that was running when the flow died
        assert len([r for r in stub.state.runs.values() if r.sweep == coarse_name]) == 4
        _no_canary_anywhere(home, tmp_path / "r")
        assert CANARY_KEY not in rerun.stdout + rerun.stderr
    finally:
        if flow.poll() is None:
            flow.kill()
        stop_agents(WandbBackend(WandbCredentials.load("team").auth()))


def test_a_campaign_survives_one_response_in_five_failing(stub: StubServer, home: Path, tmp_path: Path) -> None:
    stub.fail(0.2, seed=3)  # the flow's calls, the agents' heartbeats, the runs' upserts and file streams alike
    try:
        result = sweep_pipeline(Pipeline.model_validate(campaign(coarse())), key="faults", report_dir=str(tmp_path))
        _check_two_stages(result, stub)
        assert stub.faults.injected >= 20, stub.faults.injected
        print(f"faults injected: {stub.faults.injected} of {len(stub.log)} requests")
    finally:
        stop_agents(WandbBackend())


def test_a_refused_key_fails_the_campaign_in_one_line(stub: StubServer, home: Path, tmp_path: Path) -> None:
    stub.reject_key = True
    state = sweep_pipeline(Pipeline.model_validate(campaign(coarse())), key="refused", return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert (
        f"stage coarse: W&B rejected the API key for {stub.url} (list the sweeps of stub-team/camp): set "
        "WANDB_API_KEY, or the api_key of the WandbCredentials block, to a valid key for that server."
    ) in message, message
    assert "\n" not in message and "Traceback" not in message and CANARY_KEY not in message
    assert not stub.state.sweeps
