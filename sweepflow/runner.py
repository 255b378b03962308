"""One run of a user's training script: a subprocess in its own process group, watched through its W&B log.

The script is unmodified W&B code, so the runner speaks to it only the way W&B's agent does: environment
variables (``WANDB_SWEEP_PARAM_PATH`` carries the chosen config, ``WANDB_MODE=offline`` keeps it local) and
signals. Metrics come back from the run's own transaction log, which stays a normal offline run that
``wandb sync`` can upload later. Stopping sends SIGINT first, because only SIGINT makes wandb write its exit
record (SIGTERM loses unflushed rows), then SIGTERM, then SIGKILL, each after a grace period; signals go to the
whole process group so a script's own workers (dataloaders, MPI) stop too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweepflow.txlog import RunLog, find_run_file


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to start one run."""

    run_id: str
    argv: Sequence[str]
    params: Mapping[str, Any]  # parameter -> value, as the sweep chose them
    project: str
    run_dir: Path  # the run's own folder: its param file, stdout log, and wandb files
    sweep_id: str | None = None
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def run_env(spec: RunSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a run: the caller's, plus what W&B's agent sets for an offline sweep run."""
    env = dict(os.environ if base is None else base)
    env.update(spec.env)
    env.update(
        {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": env.get("WANDB_SILENT", "true"),
            "WANDB_RUN_ID": spec.run_id,
            "WANDB_PROJECT": spec.project,
            "WANDB_DIR": str(spec.run_dir),
            "WANDB_SWEEP_PARAM_PATH": str(spec.run_dir / "params.json"),
            # Bring each logged row to disk within ~1 s instead of 15 s, so the controller sees it live.
            "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "1",
        }
    )
    if spec.sweep_id:
        env["WANDB_SWEEP_ID"] = spec.sweep_id
    return env


class RunProcess:
    """A started run: poll its metrics, stop it politely or not, and learn how it ended."""

    def __init__(self, spec: RunSpec, proc: subprocess.Popen[bytes]):
        self.spec = spec
        self.proc = proc
        self.started_at = time.time()
        self._log: RunLog | None = None

    @classmethod
    def start(cls, spec: RunSpec) -> RunProcess:
        """Write the param file and start the script. Values travel in a JSON file, never through a shell."""
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        params = {name: {"value": value} for name, value in spec.params.items()}
        (spec.run_dir / "params.json").write_text(json.dumps(params))
        with open(spec.run_dir / "output.log", "ab") as output:
            proc = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=run_env(spec),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: signals reach the script's children too
            )
        return cls(spec, proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll_rows(self) -> list[dict[str, Any]]:
        """History rows logged since the last call (empty until wandb has written its log)."""
        if self._log is None:
            path = find_run_file(self.spec.run_dir, self.spec.run_id)
            if path is None:
                return []
            self._log = RunLog(path)
        return self._log.poll()

    @property
    def summary(self) -> dict[str, Any]:
        """The run's latest summary (empty until its log exists)."""
        return dict(self._log.summary) if self._log else {}

    def returncode(self) -> int | None:
        """The exit code once the process has ended, else None (negative: killed by that signal)."""
        return self.proc.poll()

    def stop(self, grace: float = 10.0, term_grace: float = 5.0) -> int:
        """SIGINT, then SIGTERM after ``grace`` s, then SIGKILL after ``term_grace`` s; returns the exit code."""
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, term_grace), (signal.SIGKILL, None)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        code = self.proc.wait()
        self.poll_rows()  # the exit record and last rows land as the process ends
        return code
