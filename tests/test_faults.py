"""Fault injection, kept in the suite so none of it can come back: a dozen ``kill -9`` s of controllers, agents,
campaign processes, ``launch-sweep --wait`` and training runs, at moments a fixed seed draws, each recovered the
documented way (``bench/bench_faults.py`` says how; its long version injects 50+ and records the recovery times in
``bench/RESULTS.md``). Real processes, real wandb runs; nothing here asserts a timing."""

from __future__ import annotations

from pathlib import Path

from tests.benches import load_bench


def test_kill_9_anything_at_random_moments_and_every_campaign_completes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SWEEPFLOW_STANDBY", "1")  # recovered as in production: a standby behind every driver
    # Two-stage campaigns, two at once: one whose runs an external agent serves (controller, agent, campaign process
    # and runs to kill), one run by `launch-sweep --wait` (itself and runs to kill).
    args = "--injections 10 --per-campaign 5 --parallel 2 --shapes agent,cli --stages 2 --runs 3 --epochs 3 --span 3"
    args += " --overlap"  # a fault may fall into the previous one's recovery: ten of them in two short campaigns
    result = load_bench("bench_faults").main([*args.split(), "--seed", "5", "--out", str(tmp_path / "faults.json")])
    assert result["injections"] >= 10 and len(result["by_part"]) >= 3, result["by_part"]
    assert result["duplicates"] == 0  # no config ran twice, no sweep created twice
    assert result["finished_runs_lost"] == 0  # every run log with a clean exit record belongs to a finished run
    assert result["run_cap_exceeded"] == 0 and result["store_problems"] == []
    assert result["campaigns_completed"] == result["campaigns"], result["sweeps"]
    # Every sweep delivered run_cap finished runs, but for training runs killed themselves (crashed, as in W&B) and
    # runs lost with their agent more often than they may be re-queued (SWEEPFLOW_LOST_RUN_RETRIES).
    assert result["sweeps_short_unexplained"] == [], result["sweeps"]
    # Every fault was followed by a run started again (or the campaign had nothing left to start).
    assert all(f["next_run_started_s"] is not None or f["note"] for f in result["faults"]), result["faults"]
    assert result["processes_left"] == []  # nothing outlived its campaign
