"""The embedded backend end to end: real controller, real agents, real subprocess runs of W&B scripts."""

from __future__ import annotations

import collections
import itertools
import json
from pathlib import Path

import pytest

from sweepflow.backends.local import LocalBackend
from sweepflow.errors import SweepflowError
from sweepflow.local.drive import drive
from tests.backend_tests.conftest import curve_config, sweep


def _finish(backend: LocalBackend, config: dict, key: str = "k") -> tuple[str, list]:
    handle = backend.launch(sweep(config), key=key, drive="none")
    drive(backend, handle.id)
    return handle.id, backend.runs(handle.id)


def test_grid_of_six_points_with_two_workers_runs_each_config_exactly_once(backend: LocalBackend) -> None:
    config = curve_config(
        method="grid",
        scheduler={"num_workers": 2},
        parameters={"quality": {"values": [0.5, 1.0, 1.5]}, "epochs": {"values": [2, 3]}, "sleep": {"value": 0.0}},
    )
    sweep_id, runs = _finish(backend, config)
    configs = [(r.config["quality"], r.config["epochs"]) for r in runs]
    assert len(runs) == 6 and len(set(configs)) == 6
    assert all(r.state == "finished" and r.exit_code == 0 for r in runs)
    status = backend.status(sweep_id)
    assert (status.state, status.reason) == ("finished", "search space exhausted")
    assert status.best_value == pytest.approx(0.5 * (1 + 1 / 3))  # quality 0.5, 3 epochs: the lowest summary loss
    # Two runs were in flight at once at some point: their lifetimes overlap.
    spans = sorted((r.started_at, r.ended_at) for r in runs)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def test_random_with_run_cap_seven_runs_exactly_seven(backend: LocalBackend) -> None:
    sweep_id, runs = _finish(backend, curve_config(run_cap=7, scheduler={"num_workers": 3}))
    assert len(runs) == 7 and backend.status(sweep_id).reason == "run_cap 7 reached"
    assert len({json.dumps(r.config, sort_keys=True) for r in runs}) == 7


def test_bayes_completes_and_records_its_suggestions(backend: LocalBackend) -> None:
    _sweep_id, runs = _finish(backend, curve_config(method="bayes", run_cap=5))
    assert len(runs) == 5 and all(r.state == "finished" for r in runs)
    infos = [backend.store.get_run(r.id).search_info for r in runs]
    assert all(info and "expected_improvement" in info for info in infos[1:]), infos


def test_hyperband_stops_the_clearly_worse_run_and_records_why(backend: LocalBackend) -> None:
    config = curve_config(
        method="grid",
        early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2},
        # 12 epochs of 0.3 s: the bad run still trains when its first rows reach the store (wandb flushes its log
        # about once a second and the agent reports once a second), also on a busy box.
        parameters={"quality": {"values": [1.0, 1.1, 50.0]}, "epochs": {"value": 12}, "sleep": {"value": 0.3}},
    )
    _sweep_id, runs = _finish(backend, config)
    by_quality = {r.config["quality"]: r for r in runs}
    bad = by_quality[50.0]
    assert bad.state == "killed" and bad.stop_reason.startswith("hyperband:")
    assert f"Run: {bad.id}" in bad.stop_reason and "Threshold" in bad.stop_reason
    assert len(backend.store.history(bad.id)) < 12  # it was cut short
    assert by_quality[1.0].state == "finished"


def test_unknown_job_and_missing_program_fail_before_anything_is_created(backend: LocalBackend, tmp_path) -> None:
    no_program = {k: v for k, v in curve_config().items() if k != "program"}
    with pytest.raises(SweepflowError, match="job: 'proj/nope:latest' is not in the local job registry"):
        backend.launch(sweep({**no_program, "job": "proj/nope:latest", "source_dir": str(tmp_path)}), key="a")
    with pytest.raises(SweepflowError, match="method: 'custom' has no search engine in the local backend"):
        backend.launch(sweep({**curve_config(), "method": "custom"}), key="c")
    with pytest.raises(SweepflowError, match="program"):
        backend.launch(sweep(curve_config(program=str(tmp_path / "absent.py"))), key="b")
    assert backend.store.list_sweeps() == []


def test_a_script_that_always_fails_stops_the_agent_as_wandb_agent_quits(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # W&B's agent quits (the sweep stays resumable): 3 failures in its first 60 s ("flapping"), or, with that
    # rule off, WANDB_AGENT_MAX_INITIAL_FAILURES failures no fewer than the runs before them.
    config = curve_config(run_cap=20, parameters={"quality": {"min": 0.5, "max": 2.0}, "fail": {"value": True}})
    sweep_id, runs = _finish(backend, config)
    status = backend.status(sweep_id)
    assert status.state == "paused", status
    assert "agent quit: 3 failed runs in the agent's first 60 s" in status.reason
    assert collections.Counter(r.state for r in runs if r.state.is_terminal) == {"failed": 3}
    assert all("exit code 1" in r.stop_reason for r in runs if r.state == "failed")

    monkeypatch.setenv("WANDB_AGENT_DISABLE_FLAPPING", "true")
    monkeypatch.setenv("WANDB_AGENT_MAX_INITIAL_FAILURES", "2")
    backend.resume(sweep_id, drive="none")
    drive(backend, sweep_id)
    status = backend.status(sweep_id)
    assert status.state == "paused" and "2 of the 2 runs it ran failed" in status.reason, status
    assert status.counts["failed"] == 5


def test_metric_never_logged_and_nan_metric_end_with_a_clear_message(backend: LocalBackend) -> None:
    never = curve_config(run_cap=2, parameters={"quality": {"min": 0.5, "max": 2.0}, "metric": {"value": "other"}})
    sweep_id, runs = _finish(backend, never, key="never")
    status = backend.status(sweep_id)
    assert status.state == "finished" and "no run logged the metric 'loss'" in status.reason
    assert status.best_run_id is None
    nan = curve_config(run_cap=2, parameters={"quality": {"min": 0.5, "max": 2.0}, "nan": {"value": True}})
    sweep_id, runs = _finish(backend, nan, key="nan")
    assert "NaN" in backend.status(sweep_id).reason
    assert collections.Counter(r.state for r in runs) == {"finished": 2}


def test_higher_priority_runs_are_claimed_first_and_queues_price_runs(backend: LocalBackend) -> None:
    from sweepflow.local.controller import Controller, ControllerSettings

    store = backend.store
    store.ensure_queue("shared", cost_per_hour=3600.0)  # $1 per second of run time
    low = backend.launch(sweep(curve_config(run_cap=1, queue="shared")), key="low", drive="none")
    high = backend.launch(
        sweep(curve_config(run_cap=1, queue="shared", launch={"priority": "high"})), key="high", drive="none"
    )
    for handle, priority in ((low, None), (high, "high")):  # the low one is queued first
        controller = Controller(store, handle.id, settings=ControllerSettings(queue="shared", priority=priority))
        controller.tick()
        controller.release()
    claim = store.claim_next("shared", "probe", lease_ttl=5)
    assert claim is not None and claim.run.sweep_id == high.id
    store.mark_run_started(claim.run.id, "probe", item_id=claim.item.id)
    drive(backend, low.id)
    [run] = backend.runs(low.id)
    assert run.cost_usd == pytest.approx(run.runtime_s, rel=0.05)


def test_a_sweep_whose_runs_all_failed_ends_failed_and_says_why(backend: LocalBackend) -> None:
    # run_cap 2 < W&B's agent's 3 failures to quit: the sweep reaches its cap with nothing finished.
    config = curve_config(run_cap=2, parameters={"quality": {"min": 0.5, "max": 2.0}, "fail": {"value": True}})
    sweep_id, runs = _finish(backend, config, key="all-fail")
    status = backend.status(sweep_id)
    assert [r.state for r in runs] == ["failed", "failed"]
    assert status.state == "failed" and status.reason.startswith("every run failed or crashed: run_cap 2 reached")
    assert f"2 of 2 runs failed or crashed (run {runs[0].id}: exit code 1; see " in status.reason


def test_a_preempted_run_runs_again_with_the_same_id_and_config(backend: LocalBackend, tmp_path) -> None:
    """W&B re-queues a run that called ``mark_preempting()`` and ended non-zero (its agent gets a ``resume``): here
    too, and it does not count twice against ``run_cap``."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "preempted.py"
    config = curve_config(
        program=str(script),
        run_cap=2,
        parameters={"quality": {"values": [0.5, 1.5]}, "marker_dir": {"value": str(tmp_path)}},
        method="grid",
    )
    sweep_id, _ = _finish(backend, config)
    runs = backend.store.runs(sweep_id)
    assert [(r.state.value, r.attempt) for r in runs] == [("finished", 2), ("finished", 2)]
    assert sorted(r.config["quality"] for r in runs) == [0.5, 1.5]
    assert backend.status(sweep_id).state == "finished"
