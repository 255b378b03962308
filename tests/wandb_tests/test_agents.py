"""Agents mode on this machine: `num_workers` real `wandb agent` processes per sweep, counted across processes (a
re-run flow starts none twice), the key only in their environment, and gone when the sweep is cancelled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sweepflow.backends.wandb import WandbBackend
from sweepflow.settings import Settings
from tests.backend_tests.conftest import curve_config, sweep
from tests.wandb_stub.fixtures import CANARY_KEY
from tests.wandb_stub.server import StubServer


def test_agents_are_kept_at_num_workers_across_processes_and_quit_when_the_sweep_is_cancelled(
    stub: StubServer, wandb_backend: WandbBackend
) -> None:
    slow = {"quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 50}, "sleep": {"value": 0.2}}
    handle = wandb_backend.launch(sweep(curve_config(run_cap=10, scheduler={"num_workers": 2}, parameters=slow)),
                                  key="camp/a")  # fmt: skip
    first = wandb_backend.agents.live(handle.id)
    assert len(first) == 2
    another_process = WandbBackend(settings=Settings())  # e.g. the flow re-run after a crash
    another_process.ensure_driven(handle.id)
    assert another_process.agents.live(handle.id) == first  # counted by their pid files: none started twice
    for pid in first:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[-3:-1] == [b"agent", handle.id.encode()] and CANARY_KEY.encode() not in b" ".join(argv)
        assert f"WANDB_API_KEY={CANARY_KEY}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")

    deadline = time.time() + 60
    while len(stub.ops("CreateAgent")) < 2 or not any(r.state == "running" for r in stub.state.runs.values()):
        assert time.time() < deadline, "the agents did not register and start a run"
        time.sleep(0.2)
    wandb_backend.set_state(handle.id, "cancel")
    while wandb_backend.agents.live(handle.id):  # W&B answers their next heartbeat with stop + exit
        assert time.time() < deadline + 30, "the agents outlived their cancelled sweep"
        time.sleep(0.2)
    wandb_backend.ensure_driven(handle.id)
    assert wandb_backend.agents.live(handle.id) == []  # an ended sweep gets no new agents
    folder = wandb_backend.agents.folder(handle.id)
    assert list(folder.rglob("debug-cli.*.log")) and list(folder.rglob("run-*.wandb"))  # wandb's files stay here


def test_two_processes_launching_one_stage_at_once_end_with_one_sweep(
    stub: StubServer, wandb_backend: WandbBackend
) -> None:
    import threading

    config = sweep(curve_config(run_cap=1))
    start, handles = threading.Barrier(3), []
    racers = [WandbBackend(settings=Settings(), first_delay=0.05) for _ in range(3)]

    def launch(backend: WandbBackend) -> None:
        start.wait()
        handles.append(backend.launch(config, key="camp/raced", drive="none"))

    threads = [threading.Thread(target=launch, args=(b,)) for b in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(handles) == 3 and len({h.id for h in handles}) == 1  # all three got the same sweep
    print(f"sweeps created by the race: {len(stub.state.sweeps)}")
    alive = [s for s in stub.state.sweeps.values() if s.state != "CANCELED"]
    assert [s.name for s in alive] == [handles[0].id.rsplit("/", 1)[1]]  # any duplicate created was cancelled


@pytest.mark.slow
def test_hyperband_on_w_and_b_stops_the_clearly_worse_run(
    stub: StubServer, wandb_backend: WandbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs stream their history every 15 s by default; W&B's cloud decides stops on what has arrived.
    monkeypatch.setenv("WANDB__FILE_STREAM_TRANSMIT_INTERVAL", "1")
    config = curve_config(
        method="grid",
        scheduler={"num_workers": 3},
        early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2},
        parameters={"quality": {"values": [1.0, 1.1, 50.0]}, "epochs": {"value": 30}, "sleep": {"value": 0.5}},
    )
    handle = wandb_backend.launch(sweep(config), key="camp/hb")
    deadline = time.time() + 180
    while not wandb_backend.status(handle.id).done:
        assert time.time() < deadline, wandb_backend.status(handle.id)
        wandb_backend.ensure_driven(handle.id)
        time.sleep(1)
    by_quality = {r.config["quality"]: r for r in wandb_backend.runs(handle.id)}
    assert by_quality[50.0].state == "killed"  # W&B's agent stopped it on the server's `stop` command
    assert len(wandb_backend.history(handle.id, by_quality[50.0].id, "loss")) < 30
    assert by_quality[1.0].state == "finished"
