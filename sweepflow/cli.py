"""The ``sweepflow`` command line. Thin: it parses arguments, calls the core, and prints.

User mistakes (a bad config, a missing file) end with a readable message and exit code 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sweepflow import __version__
from sweepflow.config import check_file
from sweepflow.config.files import Checked
from sweepflow.states import RunState, SweepState

app = typer.Typer(
    help="Run W&B hyperparameter campaigns (chains of sweeps) as durable Prefect DAGs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)


class TextOrJson(StrEnum):
    TEXT = "text"
    JSON = "json"


class RunsFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def _version(value: bool) -> None:
    if value:
        out.print(f"sweepflow {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run W&B hyperparameter campaigns (chains of sweeps) as durable Prefect DAGs."""


def _summary(checked: Checked) -> str:
    model = checked.model
    if checked.kind == "registry":
        return "valid job registry"
    if checked.kind == "pipeline":
        stages = getattr(model, "stages", {})
        return f"valid pipeline ({len(stages)} stage{'s' * (len(stages) != 1)})"
    method = getattr(model, "method", "?")
    n = len(getattr(model, "parameters", None) or {})
    return f"valid sweep config ({method}, {n} parameter{'s' * (n != 1)})"


def _check(path: Path) -> Checked:
    """A file's verdict: a job registry, a pipeline spec or a sweep config; and whether its backend can run it."""
    from sweepflow.backends.local import check_local
    from sweepflow.config import Pipeline, SweepConfig
    from sweepflow.config.documents import DocumentError, read_document
    from sweepflow.errors import Issue
    from sweepflow.local.registry import check_registry

    try:
        data = read_document(path)
    except DocumentError as exc:
        return Checked(str(path), None, errors=exc.issues)
    if "jobs" in data and not {"method", "parameters", "stages"} & set(data):
        return Checked(str(path), "registry", errors=check_registry(path, data))
    checked = check_file(path)
    if isinstance(checked.model, SweepConfig):
        checked.errors += check_local(checked.model)
    elif isinstance(checked.model, Pipeline) and checked.model.backend == "local":
        for name, stage in checked.model.stages.items():
            if stage.sweep is not None:
                prefix = f"stages.{name}.sweep"
                for issue in check_local(stage.sweep):
                    where = f"{prefix}.{issue.path}" if issue.path else prefix
                    checked.errors.append(Issue(where, issue.message, issue.fix))
    if checked.errors:
        checked.model = None
    return checked


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Sweep configs or pipeline specs (YAML or JSON).")],
    output: Annotated[TextOrJson, typer.Option("--format", help="text or json.")] = TextOrJson.TEXT,
) -> None:
    """Check sweep configs and pipeline specs; print every error and warning. Exit 1 if any is invalid."""
    results = [_check(path) for path in files]
    if output == "json":
        out.print_json(
            json.dumps(
                [
                    {
                        "file": r.source,
                        "kind": r.kind,
                        "valid": r.ok,
                        "errors": [vars(i) for i in r.errors],
                        "warnings": [vars(i) for i in r.warnings],
                    }
                    for r in results
                ]
            )
        )
    else:
        for r in results:
            if r.ok:
                out.print(f"[green]ok[/]   {escape(r.source)}: {_summary(r)}")
            else:
                out.print(f"[red]fail[/] {escape(r.source)}")
            for issue in r.errors:
                out.print(f"  [red]error[/]   {escape(str(issue))}")
            for issue in r.warnings:
                out.print(f"  [yellow]warning[/] {escape(str(issue))}")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


# -- the embedded backend's verbs, mirroring wandb's ---------------------------------------------------------

StoreOption = Annotated[
    str | None, typer.Option("--store", help="Store URL (default: $SWEEPFLOW_STORE_URL, else $SWEEPFLOW_HOME).")
]
FormatOption = Annotated[TextOrJson, typer.Option("--format", help="text or json.")]


def _backend(store: str | None):
    from sweepflow.backends.local import LocalBackend

    return LocalBackend(store)


def _fail(message: str) -> typer.Exit:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(f"[red]error[/] {escape(message)}")
    return typer.Exit(1)


def _guard(func):
    """Turn a user-caused error into one line on stderr and exit code 1 (no traceback)."""
    import functools

    from sweepflow.errors import SweepflowError

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SweepflowError as exc:
            raise _fail(str(exc)) from None

    return wrapper


@app.command("launch-sweep")
@_guard
def launch_sweep(
    config: Annotated[Path | None, typer.Argument(help="The sweep config (YAML or JSON).")] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Queue for the runs.")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project of the sweep.")] = None,
    resume_id: Annotated[str | None, typer.Option("--resume_id", "-r", help="Resume this sweep.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Drive the sweep here and show progress until it ends.")] = False,
    output: FormatOption = TextOrJson.TEXT,
    store: StoreOption = None,
) -> None:
    """Create a sweep (or resume one) on the embedded backend and start driving it."""
    from sweepflow.local.processes import interrupt_on_signals

    backend = _backend(store)
    try:
        with interrupt_on_signals() if wait else contextlib.nullcontext():
            _launch_sweep(backend, config, queue, project, resume_id, wait, output)
    except KeyboardInterrupt:  # the runs were stopped and recorded; the sweep stays resumable
        raise typer.Exit(130) from None


def _launch_sweep(backend, config, queue, project, resume_id, wait, output) -> None:
    from sweepflow.config import load_sweep_config

    if resume_id:  # as `wandb launch-sweep --resume_id`: a running sweep is refused, any other resumes
        if config is not None:
            out.print("[yellow]warning[/] resuming the stored sweep; the config given is ignored (as W&B does).")
        if wait and backend.controller_alive(resume_id):  # e.g. the standby of a killed --wait took it over
            out.print(f"sweep {resume_id} is running, driven by another controller of this store: watching it.")
        else:
            backend.resume(resume_id, drive="none" if wait else "process")
        handle_id = resume_id
    else:
        if config is None:
            raise _fail("give a sweep config file, or --resume_id ID.")
        handle = backend.launch(
            load_sweep_config(config), project=project, queue=queue, drive="none" if wait else "process"
        )
        handle_id = handle.id
    if wait:  # progress goes to stderr when stdout is for machines
        _wait_with_progress(backend, handle_id, Console(stderr=True) if output == "json" else out)
    status = backend.status(handle_id)
    if output == "json":
        out.print_json(json.dumps({"sweep_id": status.id, **status.model_dump(mode="json")}))
    else:
        out.print(f"sweep {status.id}: {status.state}" + (f" ({status.reason})" if status.reason else ""))
    if wait and status.state is SweepState.FAILED:
        raise typer.Exit(1)


def _wait_with_progress(backend, sweep_id: str, console: Console) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sweepflow.local.controller import ControllerLeaseTaken
    from sweepflow.local.drive import drive

    status = backend.status(sweep_id)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(f"sweep {sweep_id}", total=status.run_cap)
        last = [0.0]

        def show() -> None:
            if time.time() - last[0] < 0.25:
                return
            last[0] = time.time()
            s = backend.status(sweep_id)
            ended, depth = s.ended, s.counts.get(RunState.PENDING, 0)
            best = f"best {s.metric}={s.best_value:.4g}" if s.best_value is not None else "no result yet"
            progress.update(task, completed=ended, description=f"sweep {sweep_id} · {best} · queued {depth}")

        try:
            drive(backend, sweep_id, on_tick=show, keep_standby=True)
        except ControllerLeaseTaken:  # another controller drives it: watch, keeping it driven as the flows do
            try:
                checked = 0.0
                while not backend.status(sweep_id).done:
                    show()
                    if time.time() - checked >= 2.0:  # as often as the flows' sensor at most
                        backend.ensure_driven(sweep_id)
                        checked = time.time()
                    time.sleep(0.25)
            except KeyboardInterrupt:
                console.print(f"stopped watching; sweep {sweep_id} goes on (`sweepflow sweep --stop {sweep_id}`).")
                raise
        last[0] = 0.0
        show()


@app.command("controller", hidden=True)
@_guard
def controller(
    sweep_id: str,
    store: StoreOption = None,
    standby: Annotated[bool, typer.Option("--standby", help="Wait for the driver to die, then take over.")] = False,
) -> None:
    """Drive one sweep until it ends, or (``--standby``) stand by to take it over the moment its driver dies.

    Started detached: to drive, by the flows' sensor and ``launch-sweep``; to stand by, by the driving loop."""
    from sweepflow.local.controller import ControllerLeaseTaken
    from sweepflow.local.drive import drive
    from sweepflow.local.processes import interrupt_on_signals

    backend = _backend(store)
    try:
        with interrupt_on_signals():
            drive(backend, sweep_id, stand_by=standby, keep_standby=True)
    except ControllerLeaseTaken as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command("launch-agent")
@_guard
def launch_agent(
    queue: Annotated[str, typer.Option("--queue", "-q", help="The queue to serve.")],
    max_jobs: Annotated[int, typer.Option("--max-jobs", "-j", min=1, help="Runs at once.")] = 1,
    store: StoreOption = None,
) -> None:
    """Run an agent in the foreground: claim runs from QUEUE and run them (Ctrl-C stops it cleanly)."""
    if not queue.strip():
        raise _fail("--queue: give the name of a queue (`sweepflow queue` lists them).")
    from sweepflow.local.agent import Agent
    from sweepflow.local.processes import interrupt_on_signals

    backend = _backend(store)
    s = backend.settings
    agent = Agent(
        backend.store,
        queue,
        runs_dir=s.runs_dir,
        max_jobs=max_jobs,
        lease_ttl=s.lease_ttl,
        stop_grace=s.stop_grace,
        term_grace=s.term_grace,
        max_consecutive_failed_runs=s.max_consecutive_failures,
    )
    out.print(f"agent {agent.id} serving queue {queue!r} with {max_jobs} slot(s)")
    with interrupt_on_signals() as signals:
        try:
            while agent.quit_reason is None:
                agent.tick()
                agent.wait(s.poll_interval * 5)
            out.print(f"agent quits: {agent.quit_reason}")
        except KeyboardInterrupt as exc:
            out.print(f"{exc or 'interrupted'}: stopping the running runs (SIGTERM, then SIGKILL)...")
        finally:
            agent.shutdown(hurry=lambda: len(signals) > 1)


@app.command("sweep")
@_guard
def sweep_cmd(
    sweep_id: str,
    stop: Annotated[bool, typer.Option("--stop", help="No new runs; running runs finish.")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="No new runs; running runs are stopped.")] = False,
    pause: Annotated[bool, typer.Option("--pause", help="No new runs until --resume.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Resume a paused or stopped sweep.")] = False,
    store: StoreOption = None,
) -> None:
    """Stop, cancel, pause or resume a sweep."""
    chosen = [name for name, flag in (("stop", stop), ("cancel", cancel), ("pause", pause), ("resume", resume)) if flag]
    if len(chosen) != 1:
        raise _fail("give exactly one of --stop, --cancel, --pause, --resume.")
    status = _backend(store).set_state(sweep_id, chosen[0])
    out.print(f"sweep {status.id}: {status.state}")


@app.command("sweeps")
@_guard
def sweeps_cmd(output: FormatOption = TextOrJson.TEXT, store: StoreOption = None) -> None:
    """List the sweeps in the store."""
    backend = _backend(store)
    rows = [backend.status(s.id).model_dump(mode="json") for s in backend.store.list_sweeps()]
    if output == "json":
        out.print_json(json.dumps(rows))
        return
    from rich.table import Table

    table = Table("id", "state", "runs", "best", "cost $", "reason")
    for r in rows:
        best = "" if r["best_value"] is None else f"{r['metric']}={r['best_value']:.4g}"
        table.add_row(
            r["id"], r["state"], str(sum(r["counts"].values())), best, f"{r['cost_usd']:.4f}", r["reason"] or ""
        )
    out.print(table)


@app.command("status")
@_guard
def status_cmd(sweep_id: str, output: FormatOption = TextOrJson.TEXT, store: StoreOption = None) -> None:
    """A sweep's state, run counts, best run and cost."""
    status = _backend(store).status(sweep_id)
    if output == "json":
        out.print_json(status.model_dump_json())
        return
    out.print(f"sweep {status.id}: {status.state}" + (f" ({status.reason})" if status.reason else ""))
    out.print("runs: " + ", ".join(f"{k} {v}" for k, v in sorted(status.counts.items())) or "none")
    if status.best_run_id:
        out.print(f"best: run {status.best_run_id}, {status.metric}={status.best_value:.6g}")
    out.print(f"cost: ${status.cost_usd:.4f}")


@app.command("runs")
@_guard
def runs_cmd(
    sweep_id: str,
    output: Annotated[RunsFormat, typer.Option("--format", help="table, csv or json.")] = RunsFormat.TABLE,
    store: StoreOption = None,
) -> None:
    """Every run of a sweep: the config it recorded (sweep parameters marked *), state and summary metrics."""
    runs = _backend(store).runs(sweep_id)
    if output == "json":
        out.print_json(json.dumps([r.model_dump(mode="json") for r in runs]))
        return
    from sweepflow.campaign.analysis import runs_frame

    swept = {f"config.{name}" for r in runs for name in r.config}
    # What the run recorded (its whole wandb.config), as W&B's API reports it; the sweep's choice until it has.
    frame = runs_frame(r.model_copy(update={"config": r.wandb_config or r.config}) for r in runs)
    frame = frame.rename(columns={c: f"{c}*" for c in frame.columns if c in swept})
    if output == "csv":
        print(frame.to_csv(index=False), end="")
        return
    from rich.table import Table

    table = Table(*frame.columns)
    for row in frame.itertuples(index=False):
        table.add_row(*("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    out.print(table)


@app.command("demo")
def demo(
    key: Annotated[str | None, typer.Option("--key", help="Campaign key; the same key resumes (default: new).")] = None,
    run_cap: Annotated[
        int | None, typer.Option("--run-cap", min=1, help="Run cap of each stage, for a quicker demo.")
    ] = None,
) -> None:
    """Run the demo campaign: a coarse random stage with Hyperband, then a bayes stage on the narrowed space."""
    import os
    import sys

    # The demo is a Prefect flow (flows/demo.py): the core CLI becomes that program (exec, same process, so a
    # signal to `sweepflow demo` reaches the flow) rather than importing Prefect code into the core.
    sys.stdout.flush()
    options = [*(["--key", key] if key else []), *(["--run-cap", str(run_cap)] if run_cap else [])]
    os.execv(sys.executable, [sys.executable, "-m", "sweepflow.flows.demo", *options])


@app.command("init")
@_guard
def init_cmd(
    folder: Annotated[Path, typer.Argument(help="Where to write the starter campaign (created if missing).")] = Path(),
) -> None:
    """Write a starter campaign: pipeline spec, sweep config, W&B-style training script, job registry, prefect.yaml."""
    from sweepflow.starter import write_starter

    for path in write_starter(folder):
        out.print(f"wrote {escape(str(path))}")
    spec = escape(str(folder / "digits-campaign.yaml"))
    out.print(f"next: sweepflow validate {spec}; then `prefect --no-prompt deploy --all` in {escape(str(folder))}")


@app.command("queue")
@_guard
def queue_cmd(
    name: Annotated[str | None, typer.Argument(help="Queue to create or update; omit to list queues.")] = None,
    priority: Annotated[str | None, typer.Option("--priority", help="low, medium, high, critical or a number.")] = None,
    cost_per_hour: Annotated[
        float | None, typer.Option("--cost-per-hour", min=0.0, help="Price of one run-hour, USD.")
    ] = None,
    resource_arg: Annotated[
        list[str] | None, typer.Option("--resource-arg", help="KEY=VALUE passed to the queue's runs (repeatable).")
    ] = None,
    output: FormatOption = TextOrJson.TEXT,
    store: StoreOption = None,
) -> None:
    """Create or update a queue (priority, cost per hour, resource args), or list the queues."""
    backend = _backend(store)
    if name is not None:
        if not name.strip():
            raise _fail("NAME: give the queue a name.")
        args = dict(item.split("=", 1) for item in resource_arg or [] if "=" in item)
        if resource_arg and len(args) != len(resource_arg):
            raise _fail("--resource-arg takes KEY=VALUE.")
        backend.store.ensure_queue(name, priority=priority, cost_per_hour=cost_per_hour, resource_args=args or None)
    queues = backend.store.list_queues()
    if output == "json":
        out.print_json(json.dumps([dataclasses.asdict(q) for q in queues]))
        return
    for q in queues:
        out.print(f"{q.name}: priority {q.priority}, ${q.cost_per_hour or 0:g}/h, resource args {q.resource_args}")
