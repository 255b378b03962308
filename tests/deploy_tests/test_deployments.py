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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from sweepflow.backends.local import LocalBackend
from sweepflow.config import load_pipeline

pytestmark = pytest.mark.slow  # a real Prefect server (and worker): run with `pytest -m slow`

ROOT = Path(__file__).resolve().parents[2]
#: The prefect CLI of this interpreter (CI's ./.venv), run as a module: the worker then starts flow runs with the
#: same interpreter, so they import this checkout's code even where the venv has no `prefect` console script.
PREFECT = [sys.executable, "-m", "prefect"]
#: API URL -> (the workers started so far, a function starting one more): the UI-path test kills one.
WORKERS: dict[str, tuple[list[subprocess.Popen], Callable[[], subprocess.Popen]]] = {}


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
        "SWEEPFLOW_LEASE_TTL": "15",  # a loaded CI machine must not make live controllers lose their lease
        "PWD": str(ROOT),  # prefect.yaml's pull step is "{{ $PWD }}": the checkout the worker runs flows in
    }
    started: list[subprocess.Popen] = []
    logs = base / "logs"
    logs.mkdir()
    try:
        server = _spawn(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, logs / "server.log"
        )
        started.append(server)
        deadline = time.time() + 300  # a fresh database on a loaded machine
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError((logs / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)

        # The documented set-up, step by step (prefect.yaml's header, README "Deployments").
        for step in (
            ("work-pool", "create", "sweepflow", "--type", "process"),
            ("--no-prompt", "deploy", "--all"),
            ("automation", "create", "--from-file", "deployments/automations.yaml"),
            ("block", "register", "-m", "sweepflow"),
        ):
            done = run(*step)
            assert done.returncode == 0, (step, done.stdout + done.stderr)
            env[f"SETUP_{step[0 if step[0] != '--no-prompt' else 1].upper().replace('-', '_')}"] = done.stdout
        workers: list[subprocess.Popen] = []

        def start_worker() -> subprocess.Popen:
            log = logs / f"worker-{len(workers)}.log"
            worker = _spawn([*PREFECT, "worker", "start", "--pool", "sweepflow"], env, log)
            workers.append(worker)
            started.append(worker)
            return worker

        start_worker()
        env["LOGS"] = str(logs)
        WORKERS[env["PREFECT_API_URL"]] = (workers, start_worker)
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
            chained = await _wait_for_run(client, "retune-after-refresh", started, 900)
            return upstream, chained

    upstream, chained = asyncio.run(scenario())
    assert chained.state.is_completed(), (chained.state, Path(prefect_env["LOGS"], "worker-0.log").read_text()[-4000:])
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
            return bad.value, await _wait_for_run(client, "tune", started, 900)

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


def test_setup_creates_the_zombie_automation_and_registers_the_blocks(prefect_env: dict[str, str]) -> None:
    assert "sweepflow-crash-zombie-flow-runs" in prefect_env["SETUP_AUTOMATION"]
    assert "sweepflow-store" in prefect_env["SETUP_BLOCK"].lower() or "Sweepflow Store" in prefect_env["SETUP_BLOCK"]


# -- the UI path over REST: "Custom run" with the form's payload, worker killed, Crashed, Retry -----------------


def _rest(env: dict[str, str], method: str, path: str, body: dict | None = None) -> object:
    import json

    request = urllib.request.Request(
        env["PREFECT_API_URL"] + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc): the worker's flow-run process and anything it spawned
    in its session (the detached sweep controller is not one of them: it outlives the flow, by design)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _wait_state(env: dict[str, str], run_id: str, types: set[str], timeout: float) -> dict:
    deadline = time.time() + timeout
    run = {"state_type": None}
    while time.time() < deadline:
        try:
            run = _rest(env, "GET", f"/flow_runs/{run_id}")
        except OSError:  # a read timing out on a loaded machine: poll again
            continue
        if run["state_type"] in types:
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} not in {types} within {timeout} s: {run['state_type']}")


def test_ui_custom_run_survives_a_killed_worker_crashed_then_retry(prefect_env: dict[str, str]) -> None:
    env = prefect_env
    workers, start_worker = WORKERS[env["PREFECT_API_URL"]]
    backend = LocalBackend(f"sqlite:///{env['SWEEPFLOW_HOME']}/sweepflow.db")
    [manual] = _rest(env, "POST", "/deployments/filter", {"deployments": {"name": {"any_": ["manual"]}}})
    # The form's exact shape: every field it renders, the untouched ones null.
    form = {"run_cap": 3, "num_workers": None, "backend": None, "queue": None, "stages": None}
    params = {"pipeline": "deployments/digits-refresh.yaml", "key": None, "overrides": form}
    run = _rest(env, "POST", f"/deployments/{manual['id']}/create_flow_run", {"parameters": params})
    key = f"digits-refresh-manual-{run['id'].replace('-', '')[:8]}"

    def sweeps() -> list:
        return [s for s in backend.store.list_sweeps() if s.key.startswith(key + "/")]

    deadline = time.time() + 180
    while not any(backend.store.counts(s.id).get("running") for s in sweeps()):
        assert time.time() < deadline, Path(env["LOGS"], "worker-0.log").read_text()[-4000:]
        time.sleep(0.2)
    assert _rest(env, "GET", f"/flow_runs/{run['id']}")["state_type"] == "RUNNING"
    worker = workers[-1]
    victims = [*_descendants(worker.pid), worker.pid]
    for pid in victims:  # kill -9 the worker and its flow-run process, mid-campaign
        os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    worker.wait()
    before = {s.key: s.id for s in sweeps()}

    crashed = _wait_state(env, run["id"], {"CRASHED", "COMPLETED", "FAILED"}, 600)
    seconds_to_crashed = time.time() - killed_at
    assert crashed["state_type"] == "CRASHED", crashed["state"]
    assert "heartbeat" in crashed["state"]["message"].lower()
    print(f"kill -9 -> Crashed in {seconds_to_crashed:.0f} s")

    start_worker()
    # The UI's Retry button: exactly what it posts.
    retry = {"state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}, "force": False}
    accepted = _rest(env, "POST", f"/flow_runs/{run['id']}/set_state", retry)
    assert accepted["status"] == "ACCEPT", accepted
    final = _wait_state(env, run["id"], {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, 900)
    assert final["state_type"] == "COMPLETED", (final["state"], Path(env["LOGS"], "worker-1.log").read_text()[-4000:])

    after = {s.key: s.id for s in sweeps()}
    assert sorted(after) == [f"{key}/coarse", f"{key}/fine"]
    assert {k: after[k] for k in before} == before  # the retry re-attached: no new sweep for a launched stage
    assert [s.key for s in backend.store.list_sweeps() if s.key.startswith("digits-refresh-manual-")] == list(after)
    assert [len(backend.runs(i)) for i in after.values()] == [3, 3]  # the override took effect, no duplicate runs
    assert final["name"] == f"campaign digits-refresh/manual-{run['id'].replace('-', '')[:8]}"
    artifacts = _rest(env, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    assert {f"{key}-coarse-runs", f"{key}-campaign"} <= {a["key"] for a in artifacts}
