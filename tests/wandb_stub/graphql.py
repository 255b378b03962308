"""The GraphQL operations the stub answers, by the operation name the real wandb 0.31 client sends.

Each answer has the shape the client's own query asks for (read from wandb's source and checked against the
recordings in ``tests/wandb_stub/recordings/``). An operation the stub does not know is answered with a GraphQL
error and stays in the request log, so a new client version shows up as a clear failure, not a silent pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml

from tests.wandb_stub.state import StubRun, StubSweep, iso

if TYPE_CHECKING:
    from tests.wandb_stub.server import StubServer

Handler = Callable[["StubServer", dict[str, Any], str], Any]
HANDLERS: dict[str, Handler] = {}


def op(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


def handle_graphql(stub: StubServer, name: str, query: str, variables: dict[str, Any]) -> tuple[int, Any]:
    handler = HANDLERS.get(name)
    if handler is None:
        return 200, {"data": None, "errors": [{"message": f"stub: unknown operation {name}"}]}
    try:
        with stub.state.lock:
            return 200, {"data": handler(stub, variables, query)}
    except _NotFound as exc:
        return 404, {"errors": [{"message": str(exc)}]}
    except _Invalid as exc:
        return 200, {"data": None, "errors": [{"message": str(exc)}]}


class _NotFound(Exception):
    """Answered with HTTP 404, as W&B answers an unknown sweep or run."""


class _Invalid(Exception):
    """A request W&B would refuse: answered with a GraphQL error."""


# -- viewer, projects ------------------------------------------------------------------------------------------


def _viewer(stub: StubServer) -> dict[str, Any]:
    return {
        "id": "VXNlcjox",
        "name": "Stub User",
        "entity": stub.state.entity,
        "username": "stub-user",
        "email": "stub@example.invalid",
        "admin": False,
        "flags": "{}",
        "deletedAt": None,
        "apiKeys": {"edges": []},
        "teams": {"edges": [{"node": {"name": stub.state.entity}}]},
        "defaultEntity": {"id": "RW50aXR5OjE=", "name": stub.state.entity},
    }


@op("Viewer", "GetViewer", "GetDefaultEntity", "DefaultEntity")
def viewer(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    return {"viewer": _viewer(stub)}


@op("ServerFeaturesQuery")
def server_features(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    return {"serverInfo": {"features": [{"name": "SWEEPS_QUERY_FILTERING", "isEnabled": True}]}}


@op("OrganizationCoreWeaveOrganizationID")
def coreweave_org(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    return {"entity": {"organization": None}}


@op("ServerInfo", "Probe", "ProbeServerCapabilities")
def server_info(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    return {
        "serverInfo": {
            "cliVersionInfo": {},
            "latestLocalVersionInfo": None,
            "features": [],
            "frontendHost": stub.url,
        },
        "QueryType": None,
        "UpsertBucketInputType": None,
    }


# -- sweeps --------------------------------------------------------------------------------------------------


def _project(stub: StubServer, sweep: StubSweep) -> dict[str, Any]:
    return {
        "id": "UHJvamVjdDox",
        "name": sweep.project,
        "entity": {"id": "RW50aXR5OjE=", "name": sweep.entity},
    }


def _sweep_node(stub: StubServer, sweep: StubSweep, query: str) -> dict[str, Any]:
    runs = stub.state.sweep_runs(sweep)
    node: dict[str, Any] = {
        "__typename": "Sweep",
        "id": sweep.id,
        "name": sweep.name,
        "displayName": sweep.display_name,
        "method": sweep.config.get("method"),
        "state": sweep.state,
        "description": sweep.config.get("description"),
        "bestLoss": None,
        "config": yaml.safe_dump(sweep.config),
        "createdAt": iso(sweep.created_at),
        "updatedAt": iso(sweep.updated_at),
        "heartbeatAt": iso(sweep.updated_at),
        "earlyStopJobRunning": False,
        "runCount": len(runs),
        "runCountExpected": sweep.config.get("run_cap"),
        "controller": None,
        "scheduler": json.dumps(sweep.launch_scheduler) if sweep.launch_scheduler else None,
        "priorRunsCount": len(getattr(stub.state, "prior", {}).get(sweep.name, [])),
        "project": _project(stub, sweep),
        "user": {"id": "VXNlcjox", "username": "stub-user"},
    }
    if "runs" in query:
        node["runs"] = {"edges": [{"node": _sweep_run_node(r)} for r in runs], "pageInfo": _page()}
    return node


def _sweep_run_node(run: StubRun) -> dict[str, Any]:
    return {
        "name": run.name,
        "state": run.state,
        "config": json.dumps(run.config),
        "exitcode": run.exitcode,
        "heartbeatAt": iso(run.heartbeat_at),
        "shouldStop": run.should_stop,
        "failed": run.state == "failed",
        "stopped": run.state == "killed",
        "running": run.state == "running",
        "summaryMetrics": json.dumps(run.summary),
        "sampledHistory": [[]],
    }


def _page() -> dict[str, Any]:
    return {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False}


def _find_sweep(stub: StubServer, variables: dict[str, Any]) -> StubSweep | None:
    name = variables.get("sweep") or variables.get("name") or variables.get("sweepName")
    return stub.state.sweep(variables.get("entity"), variables.get("project"), name)


@op("UpsertSweep")
def upsert_sweep(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    if variables.get("launchScheduler"):
        launch = json.loads(variables["launchScheduler"])
        if not launch.get("queue") or "run_spec" not in launch:
            raise _Invalid("launchScheduler needs a queue and a run_spec")
        json.loads(launch["run_spec"])
    try:
        sweep = stub.state.upsert_sweep(variables)
    except KeyError as exc:
        raise _NotFound(f"sweep {exc} not found") from None
    return {
        "upsertSweep": {
            "sweep": {"name": sweep.name, "project": _project(stub, sweep)},
            "configValidationWarnings": [],
        }
    }


@op("SweepWithRuns", "GetSweep", "GetSweepLegacy", "GetSweepState", "Sweep")
def get_sweep(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    stub.state.expire()
    stub.state.tick_launch()
    sweep = _find_sweep(stub, variables)
    return {"project": {"sweep": _sweep_node(stub, sweep, query) if sweep else None}}


@op("GetSweeps")
def get_sweeps(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    found = [
        s
        for s in stub.state.sweeps.values()
        if (s.entity, s.project) == (variables.get("entity"), variables.get("project"))
    ]
    filters = json.loads(variables.get("filters") or "{}")
    if "displayName" in filters:
        found = [s for s in found if s.display_name == filters["displayName"]]
    if (variables.get("entity"), variables.get("project")) not in stub.state.projects:
        return {"project": None}
    return {
        "project": {
            "totalSweeps": len(found),
            "sweeps": {
                "pageInfo": _page(),
                "edges": [{"node": _sweep_node(stub, s, "")} for s in sorted(found, key=lambda s: s.created_at)],
            },
        }
    }


@op("CreateAgent")
def create_agent(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    if variables["sweep"] not in stub.state.sweeps:
        raise _NotFound(f"sweep {variables['sweep']} not found")
    return {"createAgent": {"agent": {"id": stub.state.create_agent(variables["sweep"], variables["host"])}}}


@op("Heartbeat")
def heartbeat(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    run_state = json.loads(variables.get("runState") or "{}")
    commands = stub.state.heartbeat(variables["id"], run_state)
    return {"agentHeartbeat": {"agent": {"id": variables["id"]}, "commands": json.dumps(commands)}}


# -- runs ----------------------------------------------------------------------------------------------------


def _run_node(run: StubRun) -> dict[str, Any]:
    return {
        "__typename": "Run",
        "id": f"UnVuOnYx{run.name}",
        "projectId": 1,
        "tags": [],
        "name": run.name,
        "displayName": run.display_name or run.name,
        "sweepName": run.sweep,
        "state": run.state,
        "config": json.dumps(run.config),
        "group": None,
        "jobType": None,
        "commit": None,
        "readOnly": False,
        "createdAt": iso(run.created_at),
        "heartbeatAt": iso(run.heartbeat_at),
        "description": None,
        "notes": None,
        "systemMetrics": "{}",
        "summaryMetrics": json.dumps(run.summary),
        "historyLineCount": len(run.history),
        "user": {"name": "Stub User", "username": "stub-user"},
        "historyKeys": {"keys": {k: {} for row in run.history for k in row}, "lastStep": len(run.history) - 1},
    }


def _matches(run: StubRun, filters: dict[str, Any]) -> bool:
    if "$and" in filters:
        return all(_matches(run, f) for f in filters["$and"])
    if "$or" in filters:
        return any(_matches(run, f) for f in filters["$or"])
    if "sweep" in filters:
        return run.sweep == filters["sweep"]
    if "name" in filters:
        return run.name == filters["name"]
    return True


@op("Runs")
def runs(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    stub.state.expire()
    stub.state.tick_launch()
    filters = json.loads(variables.get("filters") or "{}")
    found = [
        r
        for r in stub.state.runs.values()
        if (r.entity, r.project) == (variables["entity"], variables["project"]) and _matches(r, filters)
    ]
    found.sort(key=lambda r: r.created_at)
    return {
        "project": {
            "internalId": 1,
            "runCount": len(found),
            "readOnly": False,
            "runs": {"edges": [{"node": _run_node(r), "cursor": r.name} for r in found], "pageInfo": _page()},
        }
    }


def _run(stub: StubServer, variables: dict[str, Any]) -> StubRun:
    run = stub.state.runs.get((variables["entity"], variables["project"], variables["name"]))
    if run is None:
        raise _NotFound(f"run {variables['name']} not found")
    return run


@op("Run")
def run(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    return {"project": {"run": _run_node(_run(stub, variables))}}


@op("RunFullHistory")
def run_full_history(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    found = _run(stub, variables)
    return {"project": {"run": {"history": [json.dumps(row) for row in found.history], "events": []}}}


@op("RunSampledHistory")
def run_sampled_history(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    found = _run(stub, variables)
    out = []
    for spec in variables.get("specs") or []:
        keys = json.loads(spec)["keys"]
        out.append([{k: row[k] for k in keys if k in row} for row in found.history if all(k in row for k in keys)])
    return {"project": {"run": {"sampledHistory": out}}}


@op("UpsertBucket")
def upsert_bucket(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    found = stub.state.upsert_run(variables)
    return {
        "upsertBucket": {
            "bucket": {
                "id": f"UnVuOnYx{found.name}",
                "name": found.name,
                "displayName": found.display_name or found.name,
                "description": None,
                "config": json.dumps(found.config),
                "sweepName": found.sweep,
                "historyLineCount": len(found.history),
                "eventsLineCount": 0,
                "summaryMetrics": json.dumps(found.summary),
                "project": {
                    "id": "UHJvamVjdDox",
                    "name": found.project,
                    "entity": {"id": "RW50aXR5OjE=", "name": found.entity},
                },
            },
            "inserted": True,
        }
    }


@op("RunResumeStatus")
def run_resume_status(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    return {
        "model": {
            "id": "UHJvamVjdDox",
            "name": variables.get("project"),
            "entity": {"id": "RW50aXR5OjE=", "name": variables.get("entity")},
            "bucket": None,
        }
    }


@op("CreateRunFiles")
def create_run_files(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    files = variables.get("files") or []
    return {
        "createRunFiles": {
            "runID": f"UnVuOnYx{variables.get('run')}",
            "uploadHeaders": [],
            "files": [{"name": f, "uploadUrl": f"{stub.url}/upload/{variables.get('run')}/{f}"} for f in files],
        }
    }


@op("pushToRunQueueByName")
def push_to_run_queue(stub: StubServer, variables: dict[str, Any], query: str) -> Any:
    """What W&B's Launch scheduler sends for every training run (``LaunchApi.push_to_run_queue_by_name``)."""
    item = {"queue": variables["queueName"], "kind": "pushed", "run_spec": json.loads(variables["runSpec"])}
    stub.state.queue_items.append(item)
    item_id = f"UnVuUXVldWVJdGVtOj{len(stub.state.queue_items)}"
    return {"pushToRunQueueByName": {"runQueueItemId": item_id, "runSpec": variables["runSpec"]}}
