"""``sweepflow init``: a starter campaign in the user's folder, copied from the demo that ships with sweepflow.

A Prefect user starts from something that runs: the demo's pipeline spec and sweep config, its training script
(plain ``wandb.init`` / ``wandb.log``), a job registry naming that script, and a ``prefect.yaml`` whose
deployments point at sweepflow's installed flows (module entrypoints, so no ``flows/`` folder is needed).
"""

from __future__ import annotations

from pathlib import Path

from sweepflow.errors import SweepflowError
from sweepflow.shipped import DEMO_SPEC, deployments_dir, examples_dir

COPIED = {
    DEMO_SPEC: deployments_dir,
    "digits-coarse.yaml": deployments_dir,
    "train_digits.py": examples_dir,
}

REGISTRY = """\
# The job registry: what a Launch `job:` name runs on this machine (paths relative to this file).
jobs:
  digits/train-digits:
    program: train_digits.py
"""

PREFECT_YAML = """\
# Deployments of this campaign on a local `process` work pool, written by `sweepflow init`. Set-up:
#   prefect work-pool create sweepflow --type process
#   prefect --no-prompt deploy --all
#   prefect worker start --pool sweepflow
# Then run "manual" from the Prefect UI (Run > Custom run: run caps, parallelism), or wait for "nightly".
name: {name}
prefect-version: 3.9.1

# Flow runs execute in this folder, where the campaign's files are.
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $PWD }}}}"

definitions:
  work_pool: &pool
    name: sweepflow
    work_queue_name: default
    job_variables:
      env:
        WANDB_MODE: offline  # remove to log the runs to your W&B account

deployments:
  - name: manual
    description: Run the campaign by hand, with run caps, parallelism or queue overridden.
    entrypoint: sweepflow.flows.deployed:tune
    parameters:
      pipeline: {spec}
    enforce_parameter_schema: true
    work_pool: *pool

  - name: nightly
    description: Re-tune the campaign every night; a retry resumes that night's sweeps.
    entrypoint: sweepflow.flows.deployed:nightly_retune
    parameters:
      pipeline: {spec}
    schedules:
      - cron: "0 2 * * *"
        timezone: UTC
    concurrency_limit: 1
    work_pool: *pool
"""


def starter_files(folder: Path) -> dict[str, str]:
    """Every file of the starter campaign for ``folder``: name -> text."""
    files = {name: (where() / name).read_text(encoding="utf-8") for name, where in COPIED.items()}
    files["sweepflow.yaml"] = REGISTRY
    files["prefect.yaml"] = PREFECT_YAML.format(name=folder.resolve().name or "sweepflow", spec=DEMO_SPEC)
    return files


def write_starter(folder: Path) -> list[Path]:
    """Write the starter campaign into ``folder``; refuse (changing nothing) if any of its files exists."""
    if folder.exists() and not folder.is_dir():
        raise SweepflowError(f"init: {folder} is a file. Fix: name a folder (new or existing).")
    files = starter_files(folder)
    taken = sorted(name for name in files if (folder / name).exists())
    if taken:
        raise SweepflowError(
            f"init: {folder} already has {', '.join(taken)}. Fix: choose another folder, or move those files away."
        )
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written
