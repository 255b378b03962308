"""The W&B backend: a campaign's stages as real W&B sweeps on the user's W&B server (cloud or self-hosted).

Two ways to execute runs, both W&B's own:

- **agents** (a config with a ``program`` or ``command``): the sweep is created as ``wandb sweep`` creates it and
  W&B's cloud controller picks every run's config; :meth:`WandbBackend.ensure_driven` keeps ``num_workers`` real
  ``wandb agent`` processes on this machine (:mod:`~sweepflow.backends.wandb_agents`), and anyone may point more
  agents at the same sweep from other machines.
- **launch** (a config with a ``job`` or ``image_uri``, and a queue): the sweep is created as
  ``wandb launch-sweep CONFIG --queue Q`` creates it; W&B runs its scheduler on the queue, which pushes the
  training runs onto the queue for Launch agents on any resource. Nothing runs on this machine.

A stage's identity is the sweep's display name (``sweepflow:<key>``), looked up before anything is created, so a
crash between "created" and "recorded" never makes a second sweep. Reads go through wandb's public API; the few
private calls live in :mod:`~sweepflow.backends._wandb_api`; what W&B is sent, :mod:`~sweepflow.backends.wandb_config`;
faults, :mod:`~sweepflow.backends.wandb_faults`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from sweepflow.backends import _wandb_api as private
from sweepflow.backends.base import (
    Backend,
    PriorRun,
    RunRecord,
    SweepAction,
    SweepHandle,
    SweepNotFound,
    SweepStatus,
)
from sweepflow.backends.local import search_changes
from sweepflow.backends.wandb_agents import AgentPool
from sweepflow.backends.wandb_config import (
    NAME_PREFIX,
    Mode,
    as_stored,
    check_wandb,
    mode_of,
    sweep_name,
    wandb_config,
)
from sweepflow.backends.wandb_credentials import WandbAuth
from sweepflow.backends.wandb_faults import WandbAuthError, retrying
from sweepflow.config import Metric, SweepConfig
from sweepflow.errors import SweepflowError
from sweepflow.ranking import best
from sweepflow.settings import Settings
from sweepflow.states import RunState, SweepState

T = TypeVar("T")
#: Agents started per worker before sweepflow stops restarting agents that keep quitting.
RESTARTS = 3


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _run_state(value: str | None) -> RunState:
    try:
        return RunState((value or "").lower())
    except ValueError:
        return RunState.CRASHED  # a state this sweepflow does not know is not a result


def _sweep_state(value: str | None) -> SweepState:
    try:
        return SweepState((value or "").lower())
    except ValueError:
        return SweepState.FAILED


class WandbBackend(Backend):
    """Sweeps on a W&B server. ``auth`` defaults to ``WANDB_API_KEY`` / ``WANDB_BASE_URL`` / ``WANDB_ENTITY``."""

    name = "wandb"

    def __init__(
        self,
        auth: WandbAuth | None = None,
        *,
        settings: Settings | None = None,
        attempts: int = 5,
        first_delay: float = 0.5,
        timeout: float | None = None,
    ) -> None:
        self.auth = auth or WandbAuth.from_env()
        self.settings = settings or Settings()
        self.agents = AgentPool(self.settings.home_dir / "wandb-agents", self.auth)
        self._attempts, self._first_delay = attempts, first_delay
        # How long one call may take, wandb-core's own retries included (None: wandb's default, WANDB_HTTP_TIMEOUT
        # or 19 s); past it the call counts as transient and is retried here.
        self._timeout = timeout
        self._api: Any = None

    # -- plumbing -------------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(api)`` with retries; the client is built inside the attempt, so a failed login is retried too."""

        def attempt() -> T:
            return fn(self.api())

        return retrying(
            attempt, base_url=self.auth.base_url, what=what, attempts=self._attempts, first_delay=self._first_delay
        )

    def api(self) -> Any:
        """wandb's public API client for this server, logged in with the key (built once, on first use)."""
        if self._api is None:
            if self.auth.api_key is None:
                raise WandbAuthError(
                    f"no W&B API key for {self.auth.base_url}: set WANDB_API_KEY, or save a WandbCredentials "
                    "block and pass its name."
                )
            from wandb.sdk.launch.api import LaunchApi  # the public Api plus run queues; imported when first used

            overrides = {"base_url": self.auth.base_url, "entity": self.auth.entity, "project": self.auth.project}
            key = self.auth.api_key.get_secret_value()
            self._api = LaunchApi(api_key=key, overrides=overrides, timeout=self._timeout)
        return self._api

    def entity(self) -> str:
        return self.auth.entity or self._call("read the key's default entity", lambda api: api.default_entity)

    def _project(self, config: SweepConfig | None = None, project: str | None = None) -> str:
        return project or (config.project if config else None) or self.auth.project or "sweepflow"

    def _path(self, sweep_id: str) -> tuple[str, str, str]:
        """``entity/project/sweep`` from a sweep id (:meth:`launch` returns the full path)."""
        parts = sweep_id.split("/")
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
        if len(parts) == 1:
            return self.entity(), self._project(), parts[0]
        raise SweepflowError(f"sweep id {sweep_id!r}: use entity/project/sweep_id, as `wandb agent` takes it.")

    # -- Backend --------------------------------------------------------------------------------------------

    def check(self, config: SweepConfig, queue: str | None = None) -> None:
        problems = check_wandb(config, queue)
        if problems:
            raise SweepflowError("the wandb backend cannot run this sweep: " + "; ".join(map(str, problems)))
        if self.auth.api_key is None:
            raise WandbAuthError(
                f"no W&B API key for {self.auth.base_url}: set WANDB_API_KEY, or save a WandbCredentials block "
                "and pass its name."
            )

    def find(self, key: str, *, entity: str, project: str) -> list[Any]:
        """Sweeps of ``project`` named for ``key``, oldest first (W&B keeps no unique names: there may be two)."""
        wanted = sweep_name(key)

        def look(api: Any) -> list[Any]:
            from wandb.errors import UnsupportedError

            api.flush()
            try:
                try:
                    found = list(api.project(project, entity).sweeps(filters={"displayName": wanted}))
                except UnsupportedError:  # a server before 0.81.4 cannot filter: list them all
                    found = list(api.project(project, entity).sweeps())
            except ValueError as exc:
                if "Could not find project" in str(exc):
                    return []  # a new project has no sweeps yet
                raise
            # Oldest first, ties (W&B's createdAt has whole seconds) broken by id: every process picks the same one.
            return sorted((s for s in found if s.name == wanted), key=lambda s: (s._attrs.get("createdAt") or "", s.id))

        return self._call(f"list the sweeps of {entity}/{project}", look)

    def launch(
        self,
        config: SweepConfig,
        *,
        key: str | None = None,
        project: str | None = None,
        queue: str | None = None,
        prior_runs: Sequence[PriorRun] = (),
        drive: Literal["process", "none"] = "process",
    ) -> SweepHandle:
        """Check, find the sweep named for ``key`` or create it, then make sure it is driven.

        An existing sweep follows W&B's resume rules: the search space must be the one it was created with;
        ``run_cap`` may change (the sweep's config is updated, as ``wandb sweep --update`` does); a paused one is
        resumed; a Launch sweep that is not running is resumed as ``launch-sweep --resume_id`` does, with the new
        scheduler settings.
        """
        self.check(config, queue)
        mode = mode_of(config)
        entity, project = config.entity or self.entity(), self._project(config, project)
        wanted = wandb_config(config, key)
        existing = self.find(key, entity=entity, project=project) if key is not None else []
        if existing:
            sweep = existing[0]
            sweep_id = f"{entity}/{project}/{sweep.id}"
            created = False
            state = self._relaunch(sweep_id, sweep, wanted, config, queue, mode)
        else:
            sweep_id = self._create(config, wanted, entity=entity, project=project, queue=queue, priors=prior_runs)
            created = True
            if key is not None:
                sweep_id = self._settle_race(key, sweep_id, entity=entity, project=project)
            state = self.status(sweep_id).state
        if mode == "agents":
            self.agents.remember(sweep_id, num_workers=config.num_workers, cwd=str(config.folder))
            if drive == "process":
                self.ensure_driven(sweep_id)
        return SweepHandle(id=sweep_id, key=key, created=created, state=state)

    def _create(
        self,
        config: SweepConfig,
        wanted: dict[str, Any],
        *,
        entity: str,
        project: str,
        queue: str | None,
        priors: Sequence[PriorRun],
    ) -> str:
        prior_ids = [p.source_run_id for p in priors if p.source_run_id]
        if mode_of(config) == "agents":
            body = {k: v for k, v in wanted.items() if k not in ("job", "queue", "launch", "image_uri")}
            sid = self._call(
                f"create a sweep in {entity}/{project}",
                lambda api: private.upsert_sweep(api, body, entity=entity, project=project, prior_runs=prior_ids),
            )
            return f"{entity}/{project}/{sid}"
        target_queue = queue or config.launch_queue or ""

        def create(api: Any) -> str:
            author = api.viewer.username if self.auth.entity is None else entity
            body, payload = private.launch_scheduler_payload(
                api, wanted, queue=target_queue, entity=entity, project=project, author=author
            )
            return private.upsert_sweep(
                api,
                body,
                entity=entity,
                project=project,
                state="PENDING",
                prior_runs=prior_ids,
                launch_scheduler=payload,
            )

        return f"{entity}/{project}/{self._call(f'create a Launch sweep in {entity}/{project}', create)}"

    def _settle_race(self, key: str, sweep_id: str, *, entity: str, project: str) -> str:
        """Two processes that created the same stage at once keep the oldest sweep; the other is cancelled."""
        found = self.find(key, entity=entity, project=project)
        if len(found) < 2:
            return sweep_id
        keep = f"{entity}/{project}/{found[0].id}"
        if keep != sweep_id:
            self.set_state(sweep_id, "cancel")
        return keep

    def _relaunch(
        self, sweep_id: str, sweep: Any, wanted: dict[str, Any], config: SweepConfig, queue: str | None, mode: Mode
    ) -> SweepState:
        entity, project, _ = self._path(sweep_id)
        before = sweep.config or {}
        changed = search_changes(as_stored(before), as_stored(wanted))
        if changed:
            raise SweepflowError(
                f"the sweep of key {wanted.get('name', '')[len(NAME_PREFIX) :]!r} ({sweep_id}) was created with a "
                f"different search space: {', '.join(changed[:6])}. Fix: use a new campaign key to search a new "
                "space (run_cap, num_workers and queue may change under the same key)."
            )
        state = _sweep_state(sweep.state)
        if mode == "launch" and state is not SweepState.RUNNING and not state.is_terminal:
            self._resume_launch(sweep_id, wanted, config, queue)
            return SweepState.RUNNING
        if before.get("run_cap") != wanted.get("run_cap"):
            body = {**before, "run_cap": wanted.get("run_cap")}
            gid = sweep._attrs.get("id")
            self._call(
                f"update sweep {sweep_id}",
                lambda api: private.upsert_sweep(api, body, entity=entity, project=project, obj_id=gid),
            )
        if state is SweepState.PAUSED and mode == "agents":
            self.set_state(sweep_id, "resume")
            return SweepState.RUNNING
        return state

    def _resume_launch(self, sweep_id: str, wanted: dict[str, Any], config: SweepConfig, queue: str | None) -> None:
        """``wandb launch-sweep --resume_id``: refused for a running sweep; new scheduler settings take effect."""
        entity, project, name = self._path(sweep_id)

        def resume(api: Any) -> str:
            found = private.sweep_with_runs(api, name, entity=entity, project=project)
            if found.get("state") == "RUNNING":
                raise SweepflowError(f"cannot resume sweep {sweep_id}: it is already running.")
            author = api.viewer.username if self.auth.entity is None else entity
            body, payload = private.launch_scheduler_payload(
                api, wanted, queue=queue or config.launch_queue or "", entity=entity, project=project, author=author
            )
            return private.upsert_sweep(
                api, body, entity=entity, project=project, obj_id=found["id"], state="PENDING", launch_scheduler=payload
            )

        self._call(f"resume Launch sweep {sweep_id}", resume)

    def _sweep(self, sweep_id: str) -> Any:
        entity, project, name = self._path(sweep_id)

        def read(api: Any) -> Any:
            try:
                sweep = api.sweep(f"{entity}/{project}/{name}")
                sweep.load(force=True)  # the client caches sweeps by path; a poll wants the server's state now
                return sweep
            except Exception as exc:  # wandb says so in a ValueError, or a CommError wrapping one
                if "Could not find sweep" in str(exc):
                    raise SweepNotFound(f"no sweep {sweep_id} on {self.auth.base_url}.") from None
                raise

        return self._call(f"read sweep {sweep_id}", read)

    def _runs(self, sweep_id: str) -> list[Any]:
        entity, project, name = self._path(sweep_id)

        def read(api: Any) -> list[Any]:
            api.flush()
            return list(api.runs(f"{entity}/{project}", filters={"sweep": name}, order="+created_at", lazy=False))

        return self._call(f"read the runs of sweep {sweep_id}", read)

    def status(self, sweep_id: str) -> SweepStatus:
        sweep = self._sweep(sweep_id)
        config = sweep.config or {}
        records = self.runs(sweep_id, sweep=sweep)
        metric = Metric.model_validate(config["metric"]) if config.get("metric") else None
        found = best(records, metric, state=lambda r: r.state, summary=lambda r: r.summary) if metric else None
        counts: dict[RunState, int] = {}
        for record in records:
            counts[record.state] = counts.get(record.state, 0) + 1
        state = _sweep_state(sweep.state)
        reason = None
        if state is SweepState.FINISHED and config.get("run_cap") and len(records) >= config["run_cap"]:
            reason = f"run_cap {config['run_cap']} reached"
        return SweepStatus(
            id=sweep_id,
            state=state,
            reason=reason,
            counts=counts,
            run_cap=config.get("run_cap"),
            best_run_id=found[0].id if found else None,
            best_value=found[1] if found else None,
            metric=metric.name if metric else None,
        )

    def runs(self, sweep_id: str, *, sweep: Any = None) -> list[RunRecord]:
        """Every run of the sweep, oldest first: its parameters, whole recorded config, summary and times."""
        sweep = sweep or self._sweep(sweep_id)
        params = list((sweep.config or {}).get("parameters") or {})
        records = []
        for run in self._runs(sweep_id):
            recorded = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
            summary = {k: v for k, v in dict(run.summary_metrics).items() if k != "_wandb"}
            state = _run_state(run.state)
            started = _time(run._attrs.get("createdAt"))
            runtime = summary.get("_runtime")
            ended = None
            if state.is_terminal:
                ended = _time(run._attrs.get("heartbeatAt"))
                if started and isinstance(runtime, int | float):
                    ended = datetime.fromtimestamp(started.timestamp() + runtime, UTC)
            records.append(
                RunRecord(
                    id=run.id,
                    sweep_id=sweep_id,
                    state=state,
                    config={k: recorded[k] for k in params if k in recorded},
                    wandb_config=recorded or None,
                    summary=summary,
                    started_at=started,
                    ended_at=ended,
                )
            )
        return records

    def history(self, sweep_id: str, run_id: str, metric: str) -> list[float]:
        """The values of ``metric`` a run logged, in order (what Hyperband bands and learning curves read)."""
        entity, project, _ = self._path(sweep_id)

        def read(api: Any) -> list[float]:
            api.flush()
            rows = api.run(f"{entity}/{project}/{run_id}").history(keys=[metric], pandas=False)
            return [row[metric] for row in rows if metric in row]

        return self._call(f"read the history of run {run_id}", read)

    def set_state(self, sweep_id: str, action: SweepAction) -> SweepStatus:
        """As ``wandb sweep --pause/--resume/--stop/--cancel`` (the same call, and the same refusals)."""
        entity, project, name = self._path(sweep_id)
        state = self.status(sweep_id).state
        if action == "resume" and state in (SweepState.RUNNING, SweepState.PENDING):
            raise SweepflowError(f"cannot resume sweep {sweep_id}: it is already running.")
        if action != "resume" and state.is_terminal:
            raise SweepflowError(f"sweep {sweep_id} is already {state}; `--resume` it first.")
        if action == "pause" and state is SweepState.PAUSED:
            raise SweepflowError(f"sweep {sweep_id} is already paused.")
        self._call(
            f"{action} sweep {sweep_id}",
            lambda api: private.set_sweep_state(api, name, action, entity=entity, project=project),
        )
        if action == "resume":
            self.ensure_driven(sweep_id)
        return self.status(sweep_id)

    def ensure_driven(self, sweep_id: str) -> None:
        """Agents mode: keep ``num_workers`` ``wandb agent`` processes on this machine while the sweep runs.
        Launch mode: W&B's scheduler drives the sweep; nothing to do."""
        recalled = self.agents.recalled(sweep_id)
        sweep = self._sweep(sweep_id)
        config = sweep.config or {}
        if config.get("job") or config.get("image_uri") or _sweep_state(sweep.state) is not SweepState.RUNNING:
            return
        scheduler = config.get("scheduler") or {}
        workers = int((recalled or {}).get("num_workers") or scheduler.get("num_workers") or 1)
        live = self.agents.live(sweep_id)
        if not live and self.agents.started(sweep_id) >= RESTARTS * workers:
            # wandb's agent quits on its own only when runs keep failing (3 in its first minute, or as many
            # failures as successes); starting more would fail the same way until the run cap.
            raise SweepflowError(
                f"the wandb agents of sweep {sweep_id} keep quitting ({self.agents.started(sweep_id)} started): "
                f"its runs fail. Fix the training script (agent logs: {self.agents.folder(sweep_id)}), then resume."
            )
        self.agents.ensure(sweep_id, num_workers=workers, cwd=(recalled or {}).get("cwd") or os.getcwd())


def wandb_backend_from_env(store: str | None = None) -> WandbBackend:
    """The registry's factory: credentials from the environment (``store`` is the local backend's; unused)."""
    return WandbBackend()
