"""`sweepflow init`: the starter campaign a Prefect user begins from must validate, deploy and run as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

from sweepflow.config import load_sweep_config
from sweepflow.local.registry import resolve_program
from sweepflow.starter import starter_files

FILES = {"digits-campaign.yaml", "digits-coarse.yaml", "train_digits.py", "sweepflow.yaml", "prefect.yaml"}


def _run(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWEEPFLOW_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", *args], capture_output=True, text=True, timeout=180, env=env, cwd=cwd
    )


def test_init_writes_a_campaign_that_validates_and_runs(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "my-project"
    made = _run("init", str(project), cwd=tmp_path, home=home)
    assert made.returncode == 0, made.stderr
    assert {p.name for p in project.iterdir()} == FILES
    checked = _run("validate", "digits-campaign.yaml", "digits-coarse.yaml", "sweepflow.yaml", cwd=project, home=home)
    assert checked.returncode == 0, checked.stdout
    assert "valid pipeline (2 stages)" in checked.stdout and "valid job registry" in checked.stdout
    # The Launch job name in the sweep config resolves to the copied script, through the copied registry.
    resolved = resolve_program(load_sweep_config(project / "digits-coarse.yaml"), project)
    assert Path(resolved.program).resolve() == (project / "train_digits.py").resolve()

    # The same files run: one short run of the coarse stage, as the user would try it first.
    sweep = yaml.safe_load((project / "digits-coarse.yaml").read_text())
    sweep.update(run_cap=1, parameters={**sweep["parameters"], "epochs": {"value": 3}})
    (project / "digits-coarse.yaml").write_text(yaml.safe_dump(sweep))
    launched = _run("launch-sweep", "digits-coarse.yaml", "--wait", "--format", "json", cwd=project, home=home)
    assert launched.returncode == 0, launched.stderr
    result = json.loads(launched.stdout)
    assert result["state"] == "finished" and result["counts"] == {"finished": 1}


def test_prefect_yaml_deploys_sweepflows_installed_flows(tmp_path: Path) -> None:
    spec = yaml.safe_load(starter_files(tmp_path / "proj")["prefect.yaml"])
    assert spec["name"] == "proj"
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"manual", "nightly"}
    for deployment in deployments.values():
        # What `prefect deploy` and the worker do with an entrypoint: module paths, so no flows/ folder is needed.
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        assert deployment["parameters"]["pipeline"] == "digits-campaign.yaml"
        assert "pipeline" in flow.parameters.properties
    assert deployments["nightly"]["schedules"][0]["cron"] == "0 2 * * *"


def test_init_refuses_to_overwrite_and_changes_nothing(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "prefect.yaml").write_text("name: mine\n")
    refused = _run("init", str(project), cwd=tmp_path, home=tmp_path / "home")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "already has prefect.yaml" in refused.stderr and "Fix:" in refused.stderr
    assert [p.name for p in project.iterdir()] == ["prefect.yaml"]
    assert (project / "prefect.yaml").read_text() == "name: mine\n"
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "is a file" in _run("init", str(a_file), cwd=tmp_path, home=tmp_path / "home").stderr
