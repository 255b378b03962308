"""``python -m sweepflow`` is the ``sweepflow`` command."""

from sweepflow.cli import app

app(prog_name="sweepflow")
