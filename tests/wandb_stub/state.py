"""What the stub W&B server remembers: projects, sweeps, agents, runs and their history, in memory.

It also plays W&B's cloud controller: an agent's heartbeat is answered with ``run`` commands chosen by W&B's own
search engine (``sweeps.next_run``), ``stop`` commands from its Hyperband rule (``sweeps.stop_runs``), and
``exit`` when the sweep has ended, which is what W&B's server does for ``wandb agent``. For Launch sweeps it plays
the scheduler and the Launch agents: :meth:`State.tick_launch` starts runs (``num_workers`` at a time) and
finishes them with a metric computed from their config.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sweeps
import yaml

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(n: int = 8) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def plain(value: Any) -> Any:
    """numpy scalars (the engine's suggestions) as JSON types."""
    if hasattr(value, "item"):
        return value.item()
    return value


@dataclass
class StubRun:
    name: str
    entity: str
    project: str
    sweep: str | None = None
    display_name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # W&B's form: {key: {"value": v, "desc": None}}
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    state: str = "pending"
    exitcode: int | None = None
    created_at: float = field(default_factory=time.time)
    heartbeat_at: float = field(default_factory=time.time)
    agent: str | None = None
    should_stop: bool = False
    finish_at: float | None = None  # Launch mode: when the stub's "launch agent" finishes it

    def params(self) -> dict[str, Any]:
        return {k: v.get("value") if isinstance(v, dict) else v for k, v in self.config.items()}


@dataclass
class StubSweep:
    id: str
    name: str
    entity: str
    project: str
    config: dict[str, Any]
    state: str = "RUNNING"
    display_name: str | None = None
    launch_scheduler: dict[str, Any] | None = None
    prior_runs_filters: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    upserts: int = 0

    @property
    def run_cap(self) -> int | None:
        return self.config.get("run_cap")


class State:
    """All the stub knows, behind one lock (the HTTP server is threaded)."""

    def __init__(self, entity: str) -> None:
        self.entity = entity
        self.lock = threading.RLock()
        self.projects: set[tuple[str, str]] = set()
        self.sweeps: dict[str, StubSweep] = {}  # by name (the id users see)
        self.runs: dict[tuple[str, str, str], StubRun] = {}  # (entity, project, name)
        self.agents: dict[str, dict[str, Any]] = {}
        self.queue_items: list[dict[str, Any]] = []  # what Launch sweeps pushed onto run queues
        #: Runs that stop reporting this long are crashed, as W&B's server marks them.
        self.run_timeout_s = 60.0
        #: Launch mode: how long a run takes on the stub's "launch agents".
        self.launch_run_s = 0.3

    # -- sweeps ---------------------------------------------------------------------------------------------

    def sweep_by_gid(self, gid: str) -> StubSweep | None:
        return next((s for s in self.sweeps.values() if s.id == gid), None)

    def sweep(self, entity: str | None, project: str | None, name: str) -> StubSweep | None:
        found = self.sweeps.get(name)
        if found is None or (project and found.project != project) or (entity and found.entity != entity):
            return None
        return found

    def upsert_sweep(self, variables: dict[str, Any]) -> StubSweep:
        with self.lock:
            gid = variables.get("id")
            if gid:
                found = self.sweep_by_gid(gid)
                if found is None:
                    raise KeyError(gid)
                if variables.get("config"):
                    found.config = yaml.safe_load(variables["config"])
                if variables.get("state"):
                    found.state = variables["state"]
                if variables.get("launchScheduler"):
                    found.launch_scheduler = json.loads(variables["launchScheduler"])
                found.upserts += 1
                found.updated_at = time.time()
                self._launch_started(found)
                return found
            entity = variables.get("entityName") or self.entity
            project = variables.get("projectName") or "uncategorized"
            self.projects.add((entity, project))
            config = yaml.safe_load(variables.get("config") or "{}") or {}
            launch = json.loads(variables["launchScheduler"]) if variables.get("launchScheduler") else None
            name = new_id()
            sweep = StubSweep(
                id=f"U3dlZXA6{new_id(12)}",
                name=name,
                entity=entity,
                project=project,
                config=config,
                state=variables.get("state") or "RUNNING",
                display_name=variables.get("displayName") or config.get("name"),
                launch_scheduler=launch,
                prior_runs_filters=json.loads(variables["priorRunsFilters"])
                if variables.get("priorRunsFilters")
                else None,
            )
            self.sweeps[name] = sweep
            self._attach_prior_runs(sweep)
            self._launch_started(sweep)
            return sweep

    def _attach_prior_runs(self, sweep: StubSweep) -> None:
        """W&B's ``priorRunsFilters`` ({"$or": [{"name": id}, ...]}) name runs the new sweep learns from."""
        names = {f.get("name") for f in (sweep.prior_runs_filters or {}).get("$or", [])}
        self.prior: dict[str, list[StubRun]] = getattr(self, "prior", {})
        self.prior[sweep.name] = [
            r for r in self.runs.values() if r.name in names and (r.entity, r.project) == (sweep.entity, sweep.project)
        ]

    def _launch_started(self, sweep: StubSweep) -> None:
        """W&B's server starts a Launch sweep's scheduler: it pushes the scheduler onto the sweep's queue."""
        if sweep.launch_scheduler and sweep.state == "PENDING":
            self.queue_items.append(
                {"queue": sweep.launch_scheduler["queue"], "sweep": sweep.name, "kind": "scheduler"}
            )
            sweep.state = "RUNNING"

    def sweep_runs(self, sweep: StubSweep) -> list[StubRun]:
        return sorted((r for r in self.runs.values() if r.sweep == sweep.name), key=lambda r: r.created_at)

    # -- the cloud controller -------------------------------------------------------------------------------

    def _engine_runs(self, sweep: StubSweep) -> list[sweeps.SweepRun]:
        runs = [*getattr(self, "prior", {}).get(sweep.name, []), *self.sweep_runs(sweep)]
        metric = (sweep.config.get("metric") or {}).get("name")
        return [
            sweeps.SweepRun(
                name=r.name,
                config={k: {"value": v} for k, v in r.params().items()},
                state=r.state,
                summary_metrics=r.summary,
                history=[row for row in r.history if metric is None or metric in row],
            )
            for r in runs
        ]

    def _next_config(self, sweep: StubSweep) -> dict[str, Any] | None:
        """The next config W&B's engine suggests, or None when the search is done or capped."""
        runs = self.sweep_runs(sweep)
        if sweep.run_cap is not None and len(runs) >= sweep.run_cap:
            return None
        config = {k: v for k, v in sweep.config.items() if k not in ("run_cap", "job", "scheduler", "launch")}
        if config.get("method") == "custom":
            config["method"] = "random"
        suggestion = sweeps.next_run(config, self._engine_runs(sweep))
        if suggestion is None:
            return None
        return {k: {"value": plain(v["value"])} for k, v in suggestion.config.items()}

    def _maybe_finish(self, sweep: StubSweep) -> None:
        """A running sweep with nothing left to suggest and nothing in flight is finished, as on W&B."""
        runs = self.sweep_runs(sweep)
        idle = all(r.state not in ("pending", "running") for r in runs)
        if sweep.state == "RUNNING" and idle and self._next_config(sweep) is None:
            sweep.state = "FINISHED"

    def expire(self) -> None:
        """Runs that stopped reporting are crashed (W&B's server does this after its heartbeat timeout)."""
        now = time.time()
        for run in self.runs.values():
            if run.state in ("running", "pending") and now - run.heartbeat_at > self.run_timeout_s:
                run.state = "crashed"

    def create_agent(self, sweep_name: str, host: str) -> str:
        with self.lock:
            agent_id = f"QWdlbnQ6{new_id(10)}"
            self.agents[agent_id] = {"sweep": sweep_name, "host": host, "runs": []}
            return agent_id

    def heartbeat(self, agent_id: str, run_state: dict[str, Any]) -> list[dict[str, Any]]:
        """The commands W&B's server answers an agent's heartbeat with."""
        with self.lock:
            agent = self.agents[agent_id]
            sweep = self.sweeps[agent["sweep"]]
            self.expire()
            mine = [self.runs[k] for k in agent["runs"] if k in self.runs]
            for run in mine:
                if run.name in run_state:
                    run.heartbeat_at = time.time()
                elif run.state in ("pending", "running"):
                    # its process ended without finishing the run: stopped by the sweep (the agent's SIGTERM), or not
                    run.state = "killed" if run.should_stop else "crashed"
            live = [r for r in mine if r.state in ("pending", "running")]
            commands: list[dict[str, Any]] = []
            if sweep.state == "CANCELED":
                return [{"type": "stop", "run_id": r.name} for r in live] + [{"type": "exit"}]
            if sweep.state == "RUNNING" and sweep.config.get("early_terminate"):
                to_stop = sweeps.stop_runs(sweep.config, self._engine_runs(sweep))
                for stopped in to_stop:
                    if any(r.name == stopped.name for r in live):
                        self.runs[(sweep.entity, sweep.project, stopped.name)].should_stop = True
                        commands.append({"type": "stop", "run_id": stopped.name})
            if sweep.state in ("FINISHED", "CANCELED") and not live:
                return [{"type": "exit"}]
            if sweep.state == "RUNNING" and not live:
                args = self._next_config(sweep)
                if args is None:
                    self._maybe_finish(sweep)
                    return [{"type": "exit"}] if sweep.state == "FINISHED" else commands
                run = StubRun(name=new_id(), entity=sweep.entity, project=sweep.project, sweep=sweep.name)
                run.config = {k: {"value": v["value"], "desc": None} for k, v in args.items()}
                run.agent = agent_id
                self.runs[(run.entity, run.project, run.name)] = run
                agent["runs"].append((run.entity, run.project, run.name))
                commands.append(
                    {"type": "run", "run_id": run.name, "program": sweep.config.get("program"), "args": args}
                )
            return commands

    # -- Launch: the stub plays the scheduler and the launch agents --------------------------------------------

    def tick_launch(self) -> None:
        """Advance every Launch sweep: finish runs that are due, start up to ``num_workers`` new ones."""
        with self.lock:
            now = time.time()
            for sweep in self.sweeps.values():
                if not sweep.launch_scheduler:
                    continue
                runs = self.sweep_runs(sweep)
                for run in runs:
                    if run.state == "running" and run.finish_at is not None and now >= run.finish_at:
                        self._finish_launch_run(sweep, run)
                live = [r for r in runs if r.state in ("pending", "running")]
                if sweep.state == "CANCELED":
                    for run in live:
                        run.state = "killed"
                    continue
                if sweep.state != "RUNNING":
                    continue
                workers = int(_run_config(sweep).get("scheduler", {}).get("num_workers", 1))
                while len(live) < workers:
                    args = self._next_config(sweep)
                    if args is None:
                        break
                    run = StubRun(name=new_id(), entity=sweep.entity, project=sweep.project, sweep=sweep.name)
                    run.config = {k: {"value": v["value"], "desc": None} for k, v in args.items()}
                    run.state, run.finish_at = "running", now + self.launch_run_s
                    self.runs[(run.entity, run.project, run.name)] = run
                    self.queue_items.append(
                        {"queue": sweep.launch_scheduler["queue"], "sweep": sweep.name, "kind": "run", "run": run.name}
                    )
                    live.append(run)
                self._maybe_finish(sweep)

    def _finish_launch_run(self, sweep: StubSweep, run: StubRun) -> None:
        """The training job's result: a deterministic function of its config (lower ``quality`` is better)."""
        params = run.params()
        metric = (sweep.config.get("metric") or {}).get("name", "loss")
        epochs = int(params.get("epochs", 3))
        quality = float(params.get("quality", params.get("lr", 1.0)))
        for epoch in range(1, epochs + 1):
            run.history.append({"_step": epoch - 1, "epoch": epoch, metric: quality * (1 + 1 / epoch)})
        run.summary = {**run.history[-1], "_runtime": self.launch_run_s}
        run.state, run.exitcode = "finished", 0

    # -- runs (wandb-core's upserts and file stream) ----------------------------------------------------------

    def upsert_run(self, variables: dict[str, Any]) -> StubRun:
        with self.lock:
            entity = variables.get("entity") or self.entity
            project = variables.get("project") or "uncategorized"
            self.projects.add((entity, project))
            name = variables.get("name") or new_id()
            key = (entity, project, name)
            run = self.runs.get(key)
            if run is None:
                run = self.runs[key] = StubRun(name=name, entity=entity, project=project)
            if variables.get("sweep"):
                run.sweep = variables["sweep"]
            if variables.get("displayName"):
                run.display_name = variables["displayName"]
            if variables.get("config"):
                config = json.loads(variables["config"])
                run.config = {**run.config, **config}
            if run.state == "pending":
                run.state = "running"
            run.heartbeat_at = time.time()
            return run

    def file_stream(self, entity: str, project: str, name: str, body: dict[str, Any]) -> None:
        with self.lock:
            run = self.runs.get((entity, project, name))
            if run is None:
                run = self.runs[(entity, project, name)] = StubRun(name=name, entity=entity, project=project)
            run.heartbeat_at = time.time()
            if run.state == "pending":
                run.state = "running"
            files = body.get("files") or {}
            chunk = files.get("wandb-history.jsonl") or {}
            if chunk.get("content"):  # placed at its offset: a retried post rewrites the same rows, never doubles them
                offset = int(chunk.get("offset", len(run.history)))
                run.history[offset : offset + len(chunk["content"])] = [json.loads(x) for x in chunk["content"]]
            for line in (files.get("wandb-summary.json") or {}).get("content", []):
                run.summary = json.loads(line)
            if body.get("complete"):
                code = body.get("exitcode")
                run.exitcode = code
                if run.should_stop:
                    run.state = "killed"
                else:
                    run.state = "finished" if code == 0 else "failed"
            if run.sweep and run.sweep in self.sweeps:
                sweep = self.sweeps[run.sweep]
                if sweep.state in ("RUNNING", "FINISHED") and not sweep.launch_scheduler:
                    self._maybe_finish(sweep)


def _run_config(sweep: StubSweep) -> dict[str, Any]:
    """The scheduler's ``run_config`` overrides inside a Launch sweep's ``launchScheduler.run_spec``."""
    spec = json.loads((sweep.launch_scheduler or {}).get("run_spec") or "{}")
    return spec.get("overrides", {}).get("run_config", {})
