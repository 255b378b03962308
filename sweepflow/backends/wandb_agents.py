"""``wandb agent`` processes on this machine: the W&B backend's agents mode starts and keeps ``num_workers`` of them.

They are wandb's own agent (``python -m wandb agent ENTITY/PROJECT/SWEEP``), not a re-implementation: W&B's cloud
picks each run's config and the agent runs the training script online. Each is detached (``setsid -f``, its own
session), so it outlives the flow that started it, exactly as a ``wandb agent`` in a terminal would; a re-run flow
counts the live ones by their pid files and starts only the missing ones. Users can point more agents at the same
sweep from other machines. The API key reaches them through their environment, never their command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sweepflow.backends.wandb_credentials import WandbAuth
from sweepflow.private import private_dir


def _alive(pid: int, needle: str) -> bool:
    """The process exists, is not a zombie, and is the agent of this sweep (pids are reused)."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and needle in cmdline


class AgentPool:
    """The ``wandb agent`` processes this machine runs for each sweep, tracked under ``root``."""

    def __init__(self, root: Path, auth: WandbAuth) -> None:
        self.root = root
        self.auth = auth

    def folder(self, path: str) -> Path:
        return self.root / path.replace("/", "+")

    def remember(self, path: str, *, num_workers: int, cwd: str) -> None:
        """Record how this machine drives the sweep, so a later process (a re-run flow) drives it the same way."""
        folder = private_dir(self.folder(path))
        (folder / "drive.json").write_text(json.dumps({"num_workers": num_workers, "cwd": cwd}))

    def recalled(self, path: str) -> dict | None:
        try:
            return json.loads((self.folder(path) / "drive.json").read_text())
        except (OSError, ValueError):
            return None

    def live(self, path: str) -> list[int]:
        """Pids of this sweep's live agents."""
        pids = []
        for pid_file in sorted(self.folder(path).glob("agent-*.pid")):
            try:
                pid = int(pid_file.read_text().strip() or 0)
            except (OSError, ValueError):
                continue
            if pid and _alive(pid, path):
                pids.append(pid)
        return pids

    def started(self, path: str) -> int:
        """How many agents this machine has ever started for the sweep."""
        return len(list(self.folder(path).glob("agent-*.pid")))

    def ensure(self, path: str, *, num_workers: int, cwd: str) -> int:
        """Start agents until ``num_workers`` are alive; how many were started."""
        live = len(self.live(path))
        folder = private_dir(self.folder(path))
        started = 0
        for _ in range(max(0, num_workers - live)):
            self._start(path, folder, cwd)
            started += 1
        return started

    def _start(self, path: str, folder: Path, cwd: str) -> None:
        slot = int(time.time() * 1000)
        pid_file, log_file = folder / f"agent-{slot}.pid", folder / f"agent-{slot}.log"
        runs_dir = private_dir(folder / "runs")
        private_dir(runs_dir / "wandb")  # present, so wandb's CLI logs there too, not in the system temp folder
        python_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            **self.auth.agent_env(),
            "WANDB_MODE": "online",
            "WANDB_DIR": str(runs_dir),
            "WANDB_PROJECT": path.split("/")[1],
            # the agent runs `/usr/bin/env python <program>`: the same Python as ours, with wandb installed
            "PATH": python_dir + os.pathsep + os.environ.get("PATH", ""),
        }
        argv = [sys.executable, "-m", "wandb", "agent", path]
        # `setsid -f sh -c 'echo $$ > pid; exec agent'`: detached from us (no zombie to reap), pid recorded.
        script = f"echo $$ > {shlex.quote(str(pid_file))}; exec {shlex.join(argv)}"
        setsid = shutil.which("setsid")
        with open(log_file, "ab") as log:
            launcher = subprocess.Popen(
                [setsid, "-f", "sh", "-c", script] if setsid else ["sh", "-c", script],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if setsid:
            launcher.wait(timeout=30)
        deadline = time.time() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.time() < deadline:
            time.sleep(0.02)

    def stop(self, path: str, sig: int = signal.SIGINT) -> None:
        """Signal this sweep's live agents (SIGINT: as ctrl-c, they let their runs end and quit)."""
        for pid in self.live(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
