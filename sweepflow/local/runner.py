"""One run of a user's training script: a subprocess in its own process group, watched through its W&B log.

The script is unmodified W&B code, so the runner speaks to it only the way W&B's agent does: environment
variables (``WANDB_SWEEP_PARAM_PATH`` carries the chosen config, ``WANDB_MODE=offline`` keeps it local) and
signals. Metrics come back from the run's own transaction log, which stays a normal offline run that
``wandb sync`` can upload later. Stopping sends SIGINT first, to the script alone, because only SIGINT makes
wandb write its exit record (SIGTERM loses unflushed rows) and wandb's service process must outlive the script's
shutdown; then SIGTERM, then SIGKILL, each after a grace period, to the whole process group so the script's
own workers (dataloaders, MPI) stop too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweepflow.local.txlog import RunLog, find_run_file
from sweepflow.private import private_dir


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: callers fall back to polling
        return None


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
        self._stop_plan: list[tuple[signal.Signals, float]] | None = None
        self.exit_fd = _pidfd(proc.pid)  # readable when the process exits: lets a loop sleep until then

    @classmethod
    def start(cls, spec: RunSpec, *, preexec_fn: Callable[[], None] | None = None) -> RunProcess:
        """Write the param file and start the script. Values travel in a JSON file, never through a shell."""
        private_dir(spec.run_dir)
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
                preexec_fn=preexec_fn,
            )
        return cls(spec, proc)

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

    def close(self) -> None:
        """Release the process's pidfd (call once it has ended)."""
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None

    def returncode(self) -> int | None:
        """The exit code once the process has ended, else None (negative: killed by that signal)."""
        return self.proc.poll()

    def begin_stop(self, grace: float = 10.0, term_grace: float = 5.0, *, now: float | None = None) -> None:
        """Start stopping without waiting: SIGINT now; :meth:`advance_stop` escalates when a grace runs out."""
        if self._stop_plan is None:
            now = time.time() if now is None else now
            self._stop_plan = [(signal.SIGTERM, now + grace), (signal.SIGKILL, now + grace + term_grace)]
            # SIGINT to the script alone: wandb's own service process (in the same group) must stay up while
            # the script's KeyboardInterrupt handler finishes the run and writes its exit record.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)

    def advance_stop(self, *, now: float | None = None) -> None:
        """Send the next signal of a stop in progress if its grace period is over (non-blocking)."""
        now = time.time() if now is None else now
        while self._stop_plan and self.proc.poll() is None and now >= self._stop_plan[0][1]:
            self._signal(self._stop_plan.pop(0)[0])

    @property
    def stopping(self) -> bool:
        return self._stop_plan is not None

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 10.0, term_grace: float = 5.0) -> int:
        """SIGINT, then SIGTERM after ``grace`` s, then SIGKILL after ``term_grace`` s; returns the exit code."""
        self.begin_stop(grace, term_grace)
        while self.proc.poll() is None:
            self.advance_stop()
            time.sleep(0.02)
        code = self.proc.wait()
        self.poll_rows()  # the exit record and last rows land as the process ends
        return code
