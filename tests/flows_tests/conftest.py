"""One Prefect test harness for the whole session (it costs ~15 s to start), and a fresh sweepflow home per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from tests.backend_tests.conftest import CURVE


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def sweepflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for key, value in {"HOME": str(home), "LEASE_TTL": "3", "STOP_GRACE": "5"}.items():
        monkeypatch.setenv(f"SWEEPFLOW_{key}", value)
    return home


def coarse_sweep(**top) -> dict:
    """A small coarse stage over tests/scripts/curve.py: loss grows with `quality`; `width` is a log-scale knob."""
    return {
        "method": "random",
        "program": str(CURVE),
        "run_cap": 6,
        "scheduler": {"num_workers": 2},
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {
            "quality": {"min": 0.5, "max": 3.0},
            "width": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
            "kind": {"values": ["a", "b", "c"]},
            "epochs": {"value": 3},
            "sleep": {"value": 0.0},
        },
        **top,
    }


@pytest.fixture
def collect_fails_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the first `collect_runs` of the test fail after its sweep finished (a task failure a flow retry must
    resume from); returns the list of calls, so a test can check the flow really ran twice."""
    import sweepflow.tasks.collect_runs as collect_module

    real, calls = collect_module.runs_frame, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected failure after the sweep finished")
        return real(*args, **kwargs)

    monkeypatch.setattr(collect_module, "runs_frame", flaky)
    return calls
