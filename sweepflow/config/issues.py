"""Turn pydantic's validation errors into :class:`~sweepflow.errors.Issue` records a person can act on.

Pydantic reports locations as tuples and messages in its own words ("Input should be a valid number"). Users
of W&B think in YAML paths and W&B's vocabulary, so every error is re-worded here, in one place, and custom
checks raised inside the models carry their own sub-paths in the error context (``ctx["issues"]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from sweepflow.errors import Issue

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

# A problem found by a model validator: (sub-path below the model, message, fix).
Problem = tuple[Sequence[str | int], str, str | None]


def render_path(loc: Iterable[str | int]) -> str:
    """``("parameters", "optim", "parameters", "lr", "max")`` -> ``parameters.optim.parameters.lr.max``.

    Keys that are not plain identifiers (W&B allows dots in parameter names) are quoted so the path stays
    unambiguous: ``parameters["optimizer.lr"].max``.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def problems_error(problems: list[Problem]) -> PydanticCustomError:
    """Pack several problems found by one model validator into one pydantic error (expanded again later)."""
    summary = "; ".join(message for _, message, _ in problems)
    return PydanticCustomError("sweepflow", "{summary}", {"summary": summary, "issues": problems})


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", str: "a string", list: "a list", dict: "a mapping", type(None): "null"}.get(
        type(value), type(value).__name__
    )
    shown = repr(value) if not isinstance(value, dict | list) else ""
    return f"{shown} ({kind})" if shown else kind


def _word(error: dict[str, Any], path: str) -> Issue:
    """Re-word one of pydantic's built-in errors."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    name = path.rsplit(".", 1)[-1] if path else "the config"
    if kind == "missing":
        return Issue(path, "is required but missing.", f"add `{name}`.")
    if kind == "value_error":  # a plain ValueError raised by a validator: its text is the message
        return Issue(path, f"{ctx.get('error', error['msg'])}.")
    if kind == "extra_forbidden":
        return Issue(path, "is not a known key here.", "remove it, or check its spelling and indentation.")
    if kind in ("literal_error", "enum"):
        return Issue(path, f"{_describe(value)} is not allowed; use one of {ctx.get('expected')}.")
    if kind == "string_pattern_mismatch":
        return Issue(
            path,
            f"{value!r} is not a valid name: names start with a letter or `_` and use only letters, digits, "
            "`_`, `.` and `-`.",
            "rename it.",
        )
    if kind.endswith("_type") or kind.endswith("_parsing"):
        wanted = {
            "string": "text",
            "list": "a list",
            "dict": "a mapping",
            "model": "a mapping",
            "model_attributes": "a mapping",
            "int": "a whole number",
            "bool": "true or false",
        }.get(kind.split("_")[0], kind.split("_")[0])
        return Issue(path, f"must be {wanted}, got {_describe(value)}.")
    if kind in ("too_short", "too_long"):
        return Issue(path, f"has the wrong length: {error['msg'].lower()}.")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return Issue(path, f"{_describe(value)} is out of range: {error['msg'].lower()}.")
    return Issue(path, error["msg"].rstrip(".") + ".")


def issues_from(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[Issue]:
    """Every problem in ``exc``, each located by the user's own path (``prefix`` is prepended)."""
    issues: list[Issue] = []
    for error in exc.errors():
        # Drop pydantic's own markers: "[key]" for dict keys, "<... form>" union tags.
        loc = [*prefix, *(p for p in error["loc"] if not (isinstance(p, str) and p[:1] in "[<"))]
        ctx = error.get("ctx") or {}
        if error["type"] == "sweepflow":
            issues.extend(Issue(render_path([*loc, *sub]), msg, fix) for sub, msg, fix in ctx["issues"])
        elif error["type"].startswith("sweepflow_"):  # raised by our own validators, already worded
            issues.append(Issue(render_path(loc), error["msg"]))
        else:
            issues.append(_word(error, render_path(loc)))
    return issues
