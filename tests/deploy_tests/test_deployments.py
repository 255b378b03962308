"""prefect.yaml end to end: a real `prefect server start`, a real process worker, real deployments and events.

Starts everything on 127.0.0.1 (a free port, a fresh PREFECT_HOME), deploys from the repo's own prefect.yaml,
runs the data-refresh deployment and waits for the chained campaign, runs the manual deployment with typed
parameters, and checks that the server rejects a bad one. Every process started here is stopped with SIGINT
at the end (then killed if it ignores that), pass or fail.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sweepflow.backends.local import LocalBackend
from sweepflow.config import load_pipeline

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(base / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "SWEEPFLOW_HOME": str(base / "sweepflow-home"),
        "SWEEPFLOW_LEASE_TTL": "5",
        "PWD": str(ROOT),  # prefect.yaml's pull step is "{{ $PWD }}": the checkout the worker runs flows in
    }
    started: list[subprocess.Popen] = []
    logs = base / "logs"
    logs.mkdir()
    try:
        server = _spawn(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, logs / "server.log"
        )
        started.append(server)
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError((logs / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

        created = run("work-pool", "create", "sweepflow", "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
        deployed = run("--no-prompt", "deploy", "--all")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        started.append(_spawn([PREFECT, "worker", "start", "--pool", "sweepflow"], env, logs / "worker.log"))
        env["LOGS"] = str(logs)
        yield env
    finally:
        for proc in reversed(started):
            _stop(proc)


async def _api(env: dict[str, str]):
    from prefect.client.orchestration import PrefectClient

    return PrefectClient(env["PREFECT_API_URL"])


async def _wait_for_run(client, flow_name: str, after: float, timeout: float) -> object:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        runs = [r for r in runs if r.created and r.created.timestamp() >= after - 1]
        if runs and runs[0].state and runs[0].state.is_final():
            return runs[0]
        await asyncio.sleep(1)
    raise AssertionError(f"no final run of {flow_name} within {timeout} s")


def test_chained_campaign_runs_after_data_refresh(prefect_env: dict[str, str]) -> None:
    async def scenario() -> tuple:
        client = await _api(prefect_env)
        async with client:
            started = time.time()
            refresh = await client.read_deployment_by_name("data-refresh/data-refresh")
            upstream = await client.create_flow_run_from_deployment(refresh.id)
            chained = await _wait_for_run(client, "retune-after-refresh", started, 300)
            return upstream, chained

    upstream, chained = asyncio.run(scenario())
    assert chained.state.is_completed(), (chained.state, Path(prefect_env["LOGS"], "worker.log").read_text()[-4000:])
    assert chained.parameters["upstream_flow_run_id"].endswith(str(upstream.id))
    backend = LocalBackend(f"sqlite:///{prefect_env['SWEEPFLOW_HOME']}/sweepflow.db")
    sweeps = backend.store.list_sweeps()
    assert sorted(s.key for s in sweeps) == [f"digits-refresh-refresh-{upstream.id}/{n}" for n in ("coarse", "fine")]
    assert all(s.state.value == "finished" for s in sweeps)
    data_dir = f"{prefect_env['SWEEPFLOW_HOME']}/data/{upstream.id}"
    assert (Path(data_dir) / "digits.npz").is_file()
    assert all(r.config["data_dir"] == data_dir for s in sweeps for r in backend.runs(s.id))


def test_manual_deployment_takes_typed_parameters_and_rejects_bad_ones(prefect_env: dict[str, str]) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    async def scenario():
        client = await _api(prefect_env)
        async with client:
            manual = await client.read_deployment_by_name("tune/manual")
            with pytest.raises(PrefectHTTPStatusError) as bad:
                await client.create_flow_run_from_deployment(manual.id, parameters={"overrides": {"run_cap": -1}})
            started = time.time()
            params = {"pipeline": "deployments/digits-refresh.yaml", "key": "by-hand",
                      "overrides": {"run_cap": 2, "num_workers": 1}}  # fmt: skip
            await client.create_flow_run_from_deployment(manual.id, parameters=params)
            return bad.value, await _wait_for_run(client, "tune", started, 300)

    rejected, run = asyncio.run(scenario())
    assert "overrides.run_cap" in str(rejected)
    assert run.state.is_completed(), run.state
    backend = LocalBackend(f"sqlite:///{prefect_env['SWEEPFLOW_HOME']}/sweepflow.db")
    mine = [s for s in backend.store.list_sweeps() if s.key.startswith("by-hand/")]
    assert len(mine) == 2 and all(len(backend.runs(s.id)) == 2 for s in mine)


def test_prefect_yaml_deploys_what_the_repo_ships() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert names == {"data-refresh", "nightly", "manual", "after-data-refresh"}
    nightly = next(d for d in spec["deployments"] if d["name"] == "nightly")
    assert nightly["schedules"][0]["cron"] == "0 2 * * *"
    for d in spec["deployments"]:  # every spec a deployment names loads with the same models
        if "pipeline" in d.get("parameters", {}):
            load_pipeline(ROOT / d["parameters"]["pipeline"])
