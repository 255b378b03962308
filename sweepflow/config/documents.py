"""Reading a config file as a mapping, with one plain reason when it cannot be read.

JSON files are read as JSON (as W&B does); YAML files with YAML 1.2 numbers (see :mod:`sweepflow.config.yaml12`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from sweepflow.config.yaml12 import MAX_DEPTH, YamlLimitError, load_yaml
from sweepflow.errors import ConfigError, Issue


class DocumentError(ConfigError):
    """The file cannot be read as a mapping at all (missing, not UTF-8, not YAML/JSON, not a mapping)."""

    def __init__(self, source: str, reason: str):
        super().__init__(source, [Issue("", reason)])

    def __str__(self) -> str:
        return f"{self.source}: {self.issues[0].message}"


def read_document(path: str | Path) -> dict[str, Any]:
    """The file's content as a mapping; :class:`DocumentError` with one plain reason otherwise."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DocumentError(source, "no such file.") from None
    except IsADirectoryError:
        raise DocumentError(source, "is a directory, not a config file.") from None
    except UnicodeDecodeError as exc:
        raise DocumentError(source, f"is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8.") from None
    except OSError as exc:
        raise DocumentError(source, f"cannot be read: {exc.strerror}.") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(source, f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    except RecursionError:  # JSON only: the YAML reader reports its own limit
        raise DocumentError(source, f"is refused: it is nested far deeper than {MAX_DEPTH} levels.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        verdict = "is refused" if isinstance(exc, YamlLimitError) else "is not valid YAML"
        raise DocumentError(source, f"{verdict}: {problem}{where}.") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise DocumentError(source, f"must be a mapping of config keys (`method:`, `parameters:` ...), but is {kind}.")
    return data
