"""The private wandb functions the W&B backend cannot avoid, in one place. Read from wandb 0.31.0.

wandb's public API reads sweeps and runs, and ``wandb.sweep`` creates a plain sweep, but three things sweepflow
needs exist only behind underscores:

- ``wandb.apis.public.sweeps._upsert_sweep``: the one call that can carry a Launch scheduler
  (``launchScheduler``), resume a sweep by id (``launch-sweep --resume_id``), update a sweep's config
  (``wandb sweep --update``) and name prior runs;
- ``wandb.apis.public.sweeps._set_sweep_state``: what ``wandb sweep --pause/--resume/--stop/--cancel`` calls;
- ``wandb.sdk.launch.sweeps.utils.construct_scheduler_args`` and ``wandb.sdk.launch.utils.construct_launch_spec``:
  how ``wandb launch-sweep`` builds the scheduler's payload (its ``run_spec``).

:data:`SIGNATURES` records what they looked like in wandb :data:`READ_FROM`; ``tests/wandb_tests/test_adapter.py``
fails loudly when an installed wandb changes any of them, before a campaign does.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

READ_FROM = "0.31.0"

#: Parameter names of each private function, as read from wandb 0.31.0.
# fmt: off
SIGNATURES: dict[str, tuple[str, ...]] = {
    "wandb.apis.public.sweeps._upsert_sweep": (
        "api", "config", "controller", "launch_scheduler", "scheduler", "obj_id", "project", "entity", "state",
        "prior_runs", "display_name", "template_variable_values",
    ),
    "wandb.apis.public.sweeps._set_sweep_state": ("api", "sweep", "state", "entity", "project"),
    "wandb.apis.public.sweeps._sweep_with_runs": ("api", "sweep", "specs", "project", "entity"),
    "wandb.sdk.launch.sweeps.utils.construct_scheduler_args": (
        "sweep_config", "queue", "project", "author", "return_job",
    ),
    "wandb.sdk.launch.utils.construct_launch_spec": (
        "uri", "job", "api", "name", "project", "entity", "docker_image", "resource", "entry_point", "version",
        "resource_args", "launch_config", "run_id", "repository", "author", "sweep_id",
    ),
}
# fmt: on

#: States ``wandb sweep`` sets, by sweepflow's verb.
STATE_OF = {"stop": "FINISHED", "cancel": "CANCELED", "pause": "PAUSED", "resume": "RUNNING"}


def _resolve(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def signature_drift() -> list[str]:
    """How the installed wandb differs from :data:`SIGNATURES` (empty when it matches)."""
    drift = []
    for path, expected in SIGNATURES.items():
        try:
            found = tuple(inspect.signature(_resolve(path)).parameters)
        except (ImportError, AttributeError) as exc:
            drift.append(f"{path} is gone ({exc})")
            continue
        if found != expected:
            drift.append(f"{path}{found} != {expected} (read from wandb {READ_FROM})")
    return drift


def upsert_sweep(
    api: Any,
    config: dict[str, Any],
    *,
    entity: str,
    project: str,
    obj_id: str | None = None,
    state: str | None = None,
    prior_runs: list[str] | None = None,
    launch_scheduler: str | None = None,
    display_name: str | None = None,
) -> str:
    """Create (or, with ``obj_id``, update) a sweep; the sweep's id."""
    from wandb.apis.public.sweeps import _upsert_sweep

    sweep, _warnings = _upsert_sweep(
        api,
        config,
        entity=entity,
        project=project,
        obj_id=obj_id,
        state=state,
        prior_runs=prior_runs or None,
        launch_scheduler=launch_scheduler,
        display_name=display_name,
    )
    return sweep["name"]


def sweep_with_runs(api: Any, sweep_id: str, *, entity: str, project: str) -> dict[str, Any]:
    """The sweep as ``wandb agent`` and ``launch-sweep --resume_id`` read it (its GraphQL id, state, scheduler)."""
    from wandb.apis.public.sweeps import _sweep_with_runs

    return _sweep_with_runs(api, sweep_id, "{}", entity=entity, project=project)


def set_sweep_state(api: Any, sweep_id: str, action: str, *, entity: str, project: str) -> None:
    """What ``wandb sweep --<action>`` does (its own checks included: it raises on e.g. pausing a finished sweep)."""
    from wandb.apis.public.sweeps import _set_sweep_state

    _set_sweep_state(api, sweep_id, STATE_OF[action], entity=entity, project=project)


def launch_scheduler_payload(
    api: Any,
    config: dict[str, Any],
    *,
    queue: str,
    entity: str,
    project: str,
    author: str | None,
) -> tuple[dict[str, Any], str]:
    """What ``wandb launch-sweep CONFIG --queue Q`` sends: the sweep config without the ``launch`` and
    ``scheduler`` keys, and the ``launchScheduler`` JSON (queue, run queue project, and the scheduler's run spec
    whose ``overrides.run_config.scheduler`` carries ``num_workers``). Mirrors ``wandb/cli/cli.py:launch_sweep``."""
    from wandb.sdk.launch import utils as launch_utils
    from wandb.sdk.launch.sweeps import utils as sweep_utils
    from wandb.sdk.launch.sweeps.scheduler import Scheduler

    sweep_config = json.loads(json.dumps(config))
    launch_args: dict[str, Any] = sweep_config.pop("launch", {}) or {}
    scheduler_args: dict[str, Any] = sweep_config.pop("scheduler", {}) or {}
    settings: dict[str, Any] = scheduler_args.pop("settings", {}) or {}
    sweep_config.pop("queue", None)
    scheduler_job = scheduler_args.get("job")
    method = sweep_config.get("method")
    if scheduler_job and not method:
        sweep_config["method"] = "custom"
    elif scheduler_job and method != "custom":
        settings["method"] = method
    if settings.get("method"):
        sweep_config["method"] = settings["method"]
    args = sweep_utils.construct_scheduler_args(
        return_job=scheduler_job is not None, sweep_config=sweep_config, queue=queue, project=project, author=author
    )
    if not args:
        raise ValueError("the config needs exactly one of `job` and `image_uri` for a Launch sweep")
    overrides: dict[str, Any] = {"run_config": {}}
    if launch_args:
        overrides["run_config"]["launch"] = launch_args
    if scheduler_args:
        overrides["run_config"]["scheduler"] = scheduler_args
    if settings:
        overrides["run_config"]["settings"] = settings
    if scheduler_job:
        overrides["run_config"]["sweep_args"] = args
    else:
        overrides["args"] = args
    resource = scheduler_args.get("resource") or ("local-process" if not scheduler_job else "local-container")
    spec = launch_utils.construct_launch_spec(
        uri=Scheduler.PLACEHOLDER_URI,
        api=api,
        name="Scheduler.WANDB_SWEEP_ID",
        project=project,
        entity=entity,
        docker_image=scheduler_args.get("docker_image"),
        resource=resource,
        entry_point=Scheduler.ENTRYPOINT if not scheduler_job else None,
        resource_args=scheduler_args.get("resource_args", {}),
        repository=launch_args.get("registry", {}).get("url", None),
        job=scheduler_job,
        version=None,
        launch_config={"overrides": overrides},
        run_id="WANDB_SWEEP_ID",
        author=None,
    )
    payload = json.dumps(
        {"queue": queue, "run_queue_project": launch_utils.LAUNCH_DEFAULT_PROJECT, "run_spec": json.dumps(spec)}
    )
    return sweep_config, payload
