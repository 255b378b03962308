"""Campaign flows on a real Prefect harness, with real runs of a real W&B script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml
from prefect.settings import PREFECT_API_URL

from sweepflow.backends.local import LocalBackend
from sweepflow.config import Pipeline
from sweepflow.flows.campaigns import FineStage, multi_stage_sweep, nested_sweep, warm_start_sweep
from sweepflow.flows.sweep_pipeline import sweep_pipeline
from tests.flows_tests.conftest import coarse_sweep

FINE = {"from": "coarse", "top_k": 3, "narrow": ["quality", "width"], "keep_seen": ["kind"], "warm_start": 3,
        "method": "bayes", "run_cap": 3}  # fmt: skip


def _spec(**stages) -> Pipeline:
    return Pipeline.model_validate({"name": "camp", "stages": stages})


def test_coarse_to_fine_campaign_narrows_around_the_best(tmp_path: Path) -> None:
    spec = _spec(coarse={"sweep": coarse_sweep()}, fine={"needs": ["coarse"], "derive": FINE})
    result = sweep_pipeline(spec, key="c2f", report_dir=str(tmp_path / "report"))
    coarse, fine = result.stages["coarse"], result.stages["fine"]
    assert (coarse.state, fine.state, coarse.runs, fine.runs) == ("finished", "finished", 6, 3)
    backend = LocalBackend()
    fine_space = backend.store.get_sweep(fine.sweep_id).config["parameters"]
    best = coarse.best_config
    # The fine space lies inside the coarse one and contains the coarse best config.
    assert 0.5 <= fine_space["quality"]["min"] <= best["quality"] <= fine_space["quality"]["max"] <= 3.0
    assert 1e-4 <= fine_space["width"]["min"] <= best["width"] <= fine_space["width"]["max"] <= 1e-1
    assert best["kind"] in fine_space["kind"]["values"] and set(fine_space["kind"]["values"]) <= {"a", "b", "c"}
    assert backend.store.get_sweep(fine.sweep_id).prior_runs  # warm-started with coarse runs
    assert result.best_config is not None and (tmp_path / "report" / "summary.md").is_file()
    assert (tmp_path / "report" / "campaign.html").is_file() and (tmp_path / "report" / "coarse.png").is_file()


def test_false_when_skips_its_branch_and_what_needs_it(tmp_path: Path) -> None:
    never = {"stage": "coarse", "metric": "loss", "comparison": "<", "value": -1}
    spec = _spec(
        coarse={"sweep": coarse_sweep(run_cap=2)},
        branch={"sweep": coarse_sweep(run_cap=2), "needs": ["coarse"], "when": never},
        after={"sweep": coarse_sweep(run_cap=2), "needs": ["branch"]},
    )
    result = sweep_pipeline(spec, key="when", report_dir=str(tmp_path))
    assert result.stages["branch"].state == "skipped" and "condition is false" in result.stages["branch"].reason
    assert (
        result.stages["after"].state == "skipped" and "upstream stage branch skipped" in result.stages["after"].reason
    )
    assert len(LocalBackend().store.list_sweeps()) == 1  # skipped stages launch nothing


def test_nested_sweep_fixes_the_architecture_to_the_outer_best() -> None:
    grid = {"kind": {"values": ["a", "b"]}, "quality": {"values": [0.5, 2.0]}, "epochs": {"value": 2}}
    arch = {k: v for k, v in coarse_sweep(method="grid", parameters=grid).items() if k != "run_cap"}
    hparams = coarse_sweep(run_cap=3)
    result = nested_sweep(arch, hparams, fix=["kind", "quality"], key="nested")
    best = result.stages["arch"].best_config
    assert best["quality"] == 0.5
    runs = LocalBackend().runs(result.stages["hparams"].sweep_id)
    assert len(runs) == 3 and all(r.config["kind"] == best["kind"] and r.config["quality"] == 0.5 for r in runs)


def test_multi_stage_and_warm_start_flows() -> None:
    first = multi_stage_sweep(coarse_sweep(), key="ms", fine=FineStage(run_cap=3, warm_start=2))
    assert (first.stages["fine"].state, first.stages["fine"].runs) == ("finished", 3)
    fine_space = LocalBackend().store.get_sweep(first.stages["fine"].sweep_id).config
    assert fine_space["method"] == "bayes" and set(fine_space["parameters"]["kind"]["values"]) <= {"a", "b", "c"}
    seeded = warm_start_sweep(coarse_sweep(run_cap=2), from_sweep=first.stages["coarse"].sweep_id, top_k=3, key="ws")
    sweep = LocalBackend().store.get_sweep(seeded.stages["main"].sweep_id)
    assert sweep.prior_runs and len(sweep.prior_runs) <= 3


def test_a_flow_retry_after_a_task_failure_resumes_the_same_sweeps(collect_fails_once, tmp_path: Path) -> None:
    calls = collect_fails_once
    spec = _spec(
        coarse={"sweep": coarse_sweep(run_cap=3)}, fine={"needs": ["coarse"], "derive": {**FINE, "run_cap": 2}}
    )
    result = sweep_pipeline.with_options(retries=1, retry_delay_seconds=0)(spec, key="retry", report_dir=str(tmp_path))
    sweeps = LocalBackend().store.list_sweeps()
    assert len(calls) >= 3 and len(sweeps) == 2  # one sweep per stage, though the flow ran twice
    assert {s.id for s in sweeps} == {result.stages["coarse"].sweep_id, result.stages["fine"].sweep_id}
    assert [len(LocalBackend().runs(s.id)) for s in sorted(sweeps, key=lambda s: s.key)] == [3, 2]


def test_kill_9_of_the_flow_process_then_a_new_flow_run_resumes(tmp_path: Path) -> None:
    spec_path = tmp_path / "camp.yaml"
    slow = coarse_sweep(run_cap=4, parameters={"quality": {"min": 0.5, "max": 3.0}, "epochs": {"value": 6},
                                               "sleep": {"value": 0.4}})  # fmt: skip
    spec_path.write_text(yaml.safe_dump({"name": "camp", "stages": {"coarse": {"sweep": slow}}}))
    code = textwrap.dedent(f"""
        from sweepflow.flows.sweep_pipeline import sweep_pipeline
        r = sweep_pipeline({str(spec_path)!r}, key="killed", report_dir={str(tmp_path / "r")!r})
        print("DONE", r.stages["coarse"].sweep_id)
    """)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}
    flow = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    backend = LocalBackend()
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        backend.store.counts(s.id).get("running") for s in backend.store.list_sweeps()
    ):
        time.sleep(0.2)
    [sweep] = backend.store.list_sweeps()
    flow.kill()  # SIGKILL while the stage waits
    flow.wait()
    assert flow.returncode == -signal.SIGKILL
    rerun = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert f"DONE {sweep.id}" in rerun.stdout, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    runs = backend.runs(sweep.id)
    assert len(backend.store.list_sweeps()) == 1 and len(runs) == 4
    assert len({tuple(sorted(r.config.items())) for r in runs}) == 4
