"""One run of a user's training script: a subprocess in its own process group, watched through its W&B log.

The script is unmodified W&B code, so the runner speaks to it only the way W&B's agent does: environment
variables (``WANDB_SWEEP_PARAM_PATH`` carries the chosen config, ``WANDB_MODE=offline`` keeps it local) and
signals. Metrics come back from the run's own transaction log, which stays a normal offline run that
``wandb sync`` can upload later.

The param file is written byte for byte as wandb's agent writes it (``wandb.sdk.lib.config_util.
save_config_file_from_dict``: YAML, ``wandb_version: 1``, SafeDumper, keys in order) at the path the agent uses
(``<WANDB_DIR>/wandb/sweep-<sweep>/config-<run>.yaml``), because wandb reads it back with PyYAML (YAML 1.1): a
JSON ``1e-05`` would reach ``wandb.config`` as the string ``'1e-05'``, YAML's ``1.0e-05`` arrives as a float.

Stopping is W&B's agent's (``Agent._command_stop``): SIGTERM to the script, SIGKILL after a grace
(``KILL_DELAY`` = 30 s there, ``SWEEPFLOW_STOP_GRACE`` here), so a user's SIGTERM handler runs as W&B's docs
tell users to write one. One refinement keeps the run's history: a script that does not catch SIGTERM (Python's
default, which dies at once, writes no exit record and loses unflushed rows) but does catch SIGINT (Python's
default KeyboardInterrupt) gets SIGINT instead, so wandb finishes the run and writes its log; SIGTERM follows
after the grace, then SIGKILL. :attr:`RunProcess.stop_signal` says which one was sent (the run's end state
depends on it, see :mod:`sweepflow.local.outcome`). Escalations go to the whole process group, and once the
script has exited whatever it left in its group (dataloader workers, a shell's children) is killed: a run
leaves no process behind. wandb's own service process runs in a session of its own and exits by itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweepflow.local.txlog import RunLog, find_run_file
from sweepflow.private import private_dir

EXIT_RECORD_WAIT = 2.0  # seconds an ended run's exit record may take to reach its log (wandb-core flushes it)


def param_file_text(params: Mapping[str, Any]) -> str:
    """The param file's text, as ``config_util.save_config_file_from_dict`` writes ``{name: {"value": v}}``."""
    text = b"wandb_version: 1"
    if params:  # wandb leaves an empty mapping out (it would not parse back)
        wrapped = {name: {"value": value} for name, value in params.items()}
        text += b"\n\n" + yaml.dump(
            wrapped,
            Dumper=yaml.SafeDumper,
            default_flow_style=False,
            allow_unicode=True,
            encoding="utf-8",
            sort_keys=False,
        )
    return text.decode("utf-8")


def param_file_path(spec: RunSpec) -> Path:
    """Where wandb's agent puts the param file: ``<WANDB_DIR>/wandb/sweep-<sweep>/config-<run>.yaml``."""
    return spec.run_dir / "wandb" / f"sweep-{spec.sweep_id}" / f"config-{spec.run_id}.yaml"


def _catches(pid: int, sig: signal.Signals) -> bool | None:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: ``SigCgt`` in /proc), None if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


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
    # A run starts its own wandb-core, as under W&B's agent (wandb_agent.py pops it too): a WANDB_SERVICE left by a
    # process that used wandb in-process would attach every run to that process's core, where run ids collide.
    env.pop("WANDB_SERVICE", None)
    env.update(spec.env)
    env.update(
        {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": env.get("WANDB_SILENT", "true"),
            "WANDB_RUN_ID": spec.run_id,
            "WANDB_PROJECT": spec.project,
            "WANDB_DIR": str(spec.run_dir),
            "WANDB_SWEEP_PARAM_PATH": str(param_file_path(spec)),
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
        self._unreported: list[dict[str, Any]] = []  # rows read from the log that poll_rows has not returned yet
        self._stop_plan: list[tuple[signal.Signals, float]] | None = None
        self.stop_signal: signal.Signals | None = None  # what a stop sent first (SIGTERM, or SIGINT instead)
        self._code: int | None = None
        self.exit_fd = _pidfd(proc.pid)  # readable when the process exits: lets a loop sleep until then

    @classmethod
    def start(cls, spec: RunSpec, *, preexec_fn: Callable[[], None] | None = None) -> RunProcess:
        """Write the param file and start the script. Values travel in a file, never through a shell."""
        private_dir(spec.run_dir)
        path = param_file_path(spec)
        private_dir(path.parent)
        path.write_text(param_file_text(spec.params), encoding="utf-8")
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
        self._poll()
        rows, self._unreported = self._unreported, []
        return rows

    def _poll(self) -> None:
        if self._log is None:
            path = find_run_file(self.spec.run_dir, self.spec.run_id)
            if path is None:
                return
            self._log = RunLog(path)
        self._unreported += self._log.poll()

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
        """The exit code once the process has ended, else None (negative: killed by that signal).

        The first time the script is seen ended (still unreaped, so its process group id cannot have been
        reused), whatever it left in its process group is killed.
        """
        if self._code is None:
            try:
                ended = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # already reaped elsewhere
                ended = None
            if ended is not None:
                self._signal(signal.SIGKILL)
            self._code = self.proc.poll()
        return self._code

    def exit_recorded(self) -> bool:
        """Whether the run's ending is all in (non-blocking): its log has the exit record, or it has no log.

        wandb-core writes the exit record from its own process, so it can land a moment after the script exits.
        """
        self._poll()
        return self._log is None or self._log.finished

    def final_log(self, wait: float = EXIT_RECORD_WAIT) -> RunLog | None:
        """The run's log once its process has ended, with the exit record if wandb wrote one within ``wait`` s
        (waited for only when the log exists and lacks it)."""
        deadline = time.monotonic() + wait
        while not self.exit_recorded() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._log

    def begin_stop(self, grace: float = 30.0, term_grace: float = 5.0, *, now: float | None = None) -> None:
        """Start stopping without waiting (see the module docstring); :meth:`advance_stop` escalates."""
        if self._stop_plan is None:
            now = time.time() if now is None else now
            caught_term = _catches(self.proc.pid, signal.SIGTERM)
            caught_int = _catches(self.proc.pid, signal.SIGINT)
            if caught_term is False and caught_int:
                self.stop_signal = signal.SIGINT  # SIGTERM would lose its rows: let wandb finish the run
                self._stop_plan = [(signal.SIGTERM, now + grace), (signal.SIGKILL, now + grace + term_grace)]
            else:
                self.stop_signal = signal.SIGTERM
                self._stop_plan = [(signal.SIGKILL, now + grace)]
            # To the script alone, as W&B's agent does (``Popen.terminate``); escalations go to the group.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, self.stop_signal)

    def advance_stop(self, *, now: float | None = None) -> None:
        """Send the next signal of a stop in progress if its grace period is over (non-blocking)."""
        now = time.time() if now is None else now
        while self._stop_plan and self.returncode() is None and now >= self._stop_plan[0][1]:
            self._signal(self._stop_plan.pop(0)[0])

    @property
    def stopping(self) -> bool:
        return self._stop_plan is not None

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 30.0, term_grace: float = 5.0) -> int:
        """Stop as :meth:`begin_stop` does and wait for the end; returns the exit code."""
        self.begin_stop(grace, term_grace)
        while self.returncode() is None:
            self.advance_stop()
            time.sleep(0.02)
        self.final_log()  # the exit record and last rows land as the process ends
        return self.proc.wait()
