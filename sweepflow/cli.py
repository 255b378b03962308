"""The ``sweepflow`` command line. Thin: it parses arguments, calls the core, and prints.

User mistakes (a bad config, a missing file) end with a readable message and exit code 1, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sweepflow import __version__
from sweepflow.config import check_file
from sweepflow.config.files import Checked

app = typer.Typer(
    help="Run W&B hyperparameter campaigns (chains of sweeps) as durable Prefect DAGs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)


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
    if checked.kind == "pipeline":
        stages = getattr(model, "stages", {})
        return f"valid pipeline ({len(stages)} stage{'s' * (len(stages) != 1)})"
    method = getattr(model, "method", "?")
    n = len(getattr(model, "parameters", None) or {})
    return f"valid sweep config ({method}, {n} parameter{'s' * (n != 1)})"


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Sweep configs or pipeline specs (YAML or JSON).")],
    output: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Check sweep configs and pipeline specs; print every error and warning. Exit 1 if any is invalid."""
    results = [check_file(path) for path in files]
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
