"""The exceptions sweepflow raises on purpose.

Everything a user can cause derives from :class:`SweepflowError`, so the CLI (and later the Prefect tasks) can
turn it into one readable message instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem (or warning) in a config, located the way the user wrote it.

    ``path`` is the dotted path of the field in the user's file (``parameters.optim.parameters.lr.max``),
    never W&B's internal schema names, so the user can find the line to change.
    """

    path: str
    message: str
    fix: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{where}{self.message}{fix}"


class SweepflowError(Exception):
    """Base class of every error a user can cause; its message is meant to be shown as is."""


class ConfigError(SweepflowError):
    """A sweep config or pipeline spec is invalid; carries every issue found, not just the first."""

    def __init__(self, source: str, issues: list[Issue]):
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{source} is not a valid config:\n{lines}")
