"""Record what the real wandb client sends, into ``tests/wandb_stub/recordings/`` (run by hand after a wandb upgrade:
``python -m tests.wandb_stub.record``). Everything stays on 127.0.0.1: the stub is the only server.

- ``agents_mode.jsonl``: ``wandb.Api()``, ``wandb.sweep``, ``wandb agent`` running tests/scripts/curve.py online
  (upserts, file stream, uploads), then the public API reading the sweep, its runs and a run's history.
- ``launch_mode.jsonl``: the W&B backend creating a Launch sweep (the ``launch-sweep`` payload), pausing it and
  resuming it with new scheduler settings, and stopping it.

One entry per distinct request shape (the API key is never recorded; upload paths are generalised).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.wandb_stub.server import Logged, StubServer

HERE = Path(__file__).resolve().parent
KEY = "recorder" + "0" * 32
CURVE = HERE.parent / "scripts" / "curve.py"


def _write(name: str, log: list[Logged]) -> None:
    seen, out = set(), []
    for entry in log:
        path = "/upload/<run>/<file>" if entry.method == "PUT" else entry.path
        # one per operation and shape (an UpsertSweep that creates, pauses or resumes is three shapes)
        key = (entry.method, entry.op or path.rsplit("/", 1)[-1], tuple(sorted(entry.variables)),
               entry.variables.get("state"), bool(entry.variables.get("id")))  # fmt: skip
        if key in seen:
            continue
        seen.add(key)
        out.append({"method": entry.method, "path": path, "op": entry.op, "variables": entry.variables,
                    "body": entry.body})  # fmt: skip
    (HERE / "recordings" / name).write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in out))


def record_agents_mode(stub: StubServer, env: dict[str, str], workdir: Path) -> None:
    python = sys.executable
    space = {"quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 3}, "sleep": {"value": 0.0}}
    config = {"method": "random", "program": str(CURVE), "run_cap": 2, "metric": {"name": "loss"}, "parameters": space}
    create = f"import wandb; print('SWEEP', wandb.sweep({config!r}, project='rec'))"
    out = subprocess.run([python, "-c", create], env=env, capture_output=True, text=True, timeout=120, check=True)
    sweep_id = out.stdout.split("SWEEP")[1].split()[0]
    agent = [python, "-m", "wandb", "agent", f"{stub.state.entity}/rec/{sweep_id}"]
    subprocess.run(agent, env=env, capture_output=True, timeout=300, cwd=workdir, check=True)
    sweep_path, project_path = f"{stub.state.entity}/rec/{sweep_id}", f"{stub.state.entity}/rec"
    read = (
        f"import wandb; api = wandb.Api(); s = api.sweep({sweep_path!r}); "
        f"[r.history(keys=['loss'], pandas=False) for r in api.runs({project_path!r}, filters={{'sweep': s.id}})]"
    )
    subprocess.run([python, "-c", read], env=env, capture_output=True, timeout=120, check=True)


def record_launch_mode(env: dict[str, str], workdir: Path) -> None:
    code = """
from sweepflow.backends.wandb import WandbBackend
from sweepflow.config import load_sweep_config
config = {"job": "rec/train:latest", "queue": "gpu-queue", "method": "random", "run_cap": 50,
          "scheduler": {"num_workers": 2}, "metric": {"name": "loss", "goal": "minimize"},
          "parameters": {"quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 3}}}
backend = WandbBackend()
handle = backend.launch(load_sweep_config(config), key="rec/coarse", project="rec", drive="none")
backend.set_state(handle.id, "pause")
config["scheduler"] = {"num_workers": 3}
backend.launch(load_sweep_config(config), key="rec/coarse", project="rec", drive="none")
backend.set_state(handle.id, "stop")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=workdir
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, record in (("agents_mode.jsonl", record_agents_mode), ("launch_mode.jsonl", None)):
            stub = StubServer(KEY).start()
            env = {
                **os.environ,
                "WANDB_BASE_URL": stub.url,
                "WANDB_API_KEY": KEY,
                "WANDB_ENTITY": stub.state.entity,
                "WANDB_PROJECT": "rec",
                "WANDB_MODE": "online",
                "WANDB_SILENT": "true",
                "WANDB_DIR": tmp,
                "SWEEPFLOW_HOME": tmp,
                "HOME": tmp,
                "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
                "PYTHONPATH": str(HERE.parents[1]),
            }
            try:
                if record is not None:
                    record(stub, env, Path(tmp))
                else:
                    record_launch_mode(env, Path(tmp))
                _write(name, stub.log)
            finally:
                stub.stop()
            print(f"recorded {name}: {len(stub.log)} requests")


if __name__ == "__main__":
    main()
