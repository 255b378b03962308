"""Stand-ins for the scheduling tests: a run process the test scripts (as huey's tests fake their workers), and a
store that counts its transactions. Time is whatever the test says ``now`` is; nothing sleeps."""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection

from sweepflow.config import SweepConfig
from sweepflow.local.agent import Agent
from sweepflow.local.controller import Controller, ControllerSettings
from sweepflow.local.runner import RunSpec
from sweepflow.store import Store, Sweep

CURVE = Path(__file__).resolve().parents[1] / "scripts" / "curve.py"


class FakeRun:
    """A run process the test drives: it logs rows and exits when told; a stop is only recorded."""

    def __init__(self, spec: RunSpec, started_at: float):
        self.spec = spec
        self.started_at = started_at
        self.exit_fd: int | None = None
        self.stop_signal: signal.Signals | None = None
        self.code: int | None = None
        self.stop_began: float | None = None
        self.hard_stopped = False  # stop() was called: the agent lost the run
        self.closed = False
        self._rows: list[dict[str, Any]] = []
        self._summary: dict[str, Any] = {}
        self._step = 0
        self.exit_at_poll: int | None = None  # exit (code 0) at this call of returncode(): "while the agent looks"
        self.record_late = False  # wandb-core has not written the exit record yet (it may land after the exit)
        self._polls = 0

    # -- what the test does
    def log(self, **metrics: Any) -> None:
        self._rows.append({"_step": self._step, **metrics})
        self._step += 1
        self._summary.update(metrics)

    def exit(self, code: int = 0) -> None:
        self.code = code

    # -- the RunHandle interface
    @property
    def summary(self) -> dict[str, Any]:
        return dict(self._summary)

    @property
    def stopping(self) -> bool:
        return self.stop_began is not None

    def poll_rows(self) -> list[dict[str, Any]]:
        rows, self._rows = self._rows, []
        return rows

    def returncode(self) -> int | None:
        self._polls += 1
        if self.code is None and self.exit_at_poll is not None and self._polls >= self.exit_at_poll:
            self.code = 0
        return self.code

    def begin_stop(self, grace: float = 10.0, term_grace: float = 5.0, *, now: float | None = None) -> None:
        if self.stop_began is None:
            self.stop_began = now
            self.stop_signal = signal.SIGTERM  # what the runner sends first, as W&B's agent does

    def exit_recorded(self) -> bool:
        return not self.record_late

    def final_log(self, wait: float = 0.0) -> SimpleNamespace:
        """As wandb leaves it: an exit record when the script ended on its own, none when it was killed."""
        recorded = self.code if self.code is not None and self.code >= 0 and self.stop_began is None else None
        if self.record_late:
            recorded = None
        return SimpleNamespace(exit_code=recorded, preempting=False)

    def advance_stop(self, *, now: float | None = None) -> None:
        pass

    def stop(self, grace: float = 10.0, term_grace: float = 5.0) -> int:
        self.hard_stopped = True
        if self.code is None:
            self.code = -9
        return self.code

    def close(self) -> None:
        self.closed = True


class FakeRuns:
    """The agent's ``start_run``: makes :class:`FakeRun` s and keeps them by run id, in start order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.by_id: dict[str, FakeRun] = {}

    def __call__(self, spec: RunSpec, *, preexec_fn: Any = None) -> FakeRun:
        run = FakeRun(spec, self.now)
        self.by_id[spec.run_id] = run
        return run

    def live(self) -> list[FakeRun]:
        return [r for r in self.by_id.values() if r.code is None]


class CountingStore(Store):
    """A real store that counts its write and read transactions (``data_version`` is neither)."""

    def __init__(self, url: str) -> None:
        self.writes = 0
        self.reads = 0
        super().__init__(url)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self.writes += 1
        with super()._write() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self.reads += 1
        with super()._read() as conn:
            yield conn


def make_sweep(store: Store, key: str = "s", **top: Any) -> Sweep:
    """A sweep over tests/scripts/curve.py as the backend stores it; ``top`` overrides top-level keys."""
    config = {
        "method": "random",
        "program": str(CURVE),
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": 3}},
        **top,
    }
    stored = SweepConfig.model_validate(config).to_wandb()  # (load_sweep_config would import wandb: seconds)
    stored["program"] = str(CURVE)
    stored["queue"] = "default"
    sweep, _ = store.create_sweep(key, "test", stored, run_cap=config.get("run_cap"))
    return sweep


def make_controller(store: Store, sweep: Sweep, **settings: Any) -> Controller:
    return Controller(store, sweep.id, settings=ControllerSettings(**settings))


def make_agent(store: Store, runs: FakeRuns, tmp_path: Path, *, max_jobs: int = 1, **kwargs: Any) -> Agent:
    return Agent(store, "default", runs_dir=tmp_path / "runs", max_jobs=max_jobs, start_run=runs, **kwargs)


def loss(quality: float, epoch: int) -> float:
    """tests/scripts/curve.py's learning curve."""
    return math.nan if quality is None else float(quality) * (1 + 1 / epoch)
