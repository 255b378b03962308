"""Read a config file from disk and say everything that is wrong with it, without ever raising a traceback.

A file is a pipeline spec when it has top-level ``stages``, else a W&B sweep config. JSON files are read as JSON
(as W&B does); YAML files with YAML 1.2 numbers (see :mod:`sweepflow.config.yaml12`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from sweepflow.config.issues import issues_from
from sweepflow.config.lint import warnings_for
from sweepflow.config.pipeline import Pipeline
from sweepflow.config.sweep import SweepConfig
from sweepflow.config.wandb_check import wandb_violations
from sweepflow.config.yaml12 import load_yaml
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
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DocumentError(source, f"is not valid YAML: {problem}{where}.") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise DocumentError(source, f"must be a mapping of config keys (`method:`, `parameters:` ...), but is {kind}.")
    return data


@dataclass
class Checked:
    """The verdict on one config: the parsed model when valid, every error otherwise, and warnings."""

    source: str
    kind: Literal["sweep", "pipeline", "registry"] | None
    model: SweepConfig | Pipeline | None = None
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        if self.errors:
            raise ConfigError(self.source, self.errors)


def check_sweep(data: dict[str, Any], source: str = "<config>") -> Checked:
    """Validate a sweep config mapping: our models first, then W&B's own validator as a second opinion."""
    try:
        config = SweepConfig.model_validate(data)
    except ValidationError as exc:
        return Checked(source, "sweep", errors=issues_from(exc))
    errors = wandb_violations(config.engine_config())
    return Checked(source, "sweep", None if errors else config, errors, warnings_for(config))


def check_pipeline(data: dict[str, Any], source: str = "<pipeline>", base_dir: Path | None = None) -> Checked:
    """Validate a pipeline spec; stage sweep paths are read relative to ``base_dir``."""
    try:
        pipeline = Pipeline.model_validate(data, context={"base_dir": base_dir or Path(".")})
    except ValidationError as exc:
        return Checked(source, "pipeline", errors=issues_from(exc))
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for name, stage in pipeline.stages.items():
        if stage.sweep is None:
            continue
        prefix = f"stages.{name}.sweep."
        errors += [
            Issue(prefix + i.path if i.path else prefix[:-1], i.message, i.fix)
            for i in wandb_violations(stage.sweep.engine_config())
        ]
        warnings += [Issue(prefix + i.path, i.message, i.fix) for i in warnings_for(stage.sweep)]
    return Checked(source, "pipeline", None if errors else pipeline, errors, warnings)


def check_file(path: str | Path) -> Checked:
    """Validate a file, detecting whether it is a pipeline spec or a sweep config."""
    path = Path(path)
    try:
        data = read_document(path)
    except DocumentError as exc:
        return Checked(str(path), None, errors=exc.issues)
    if "stages" in data:
        return check_pipeline(data, str(path), path.parent)
    if "jobs" in data and not {"method", "parameters"} & set(data):
        from sweepflow.local.registry import check_registry  # the local job registry (sweepflow.yaml)

        return Checked(str(path), "registry", errors=[Issue("", p) for p in check_registry(path, data)])
    return check_sweep(data, str(path))


def load_sweep_config(source: str | Path | dict[str, Any]) -> SweepConfig:
    """A valid :class:`SweepConfig` from a path or mapping, or :class:`ConfigError` with every issue."""
    checked = check_sweep(source, "<config>") if isinstance(source, dict) else check_file(source)
    checked.raise_for_errors()
    if not isinstance(checked.model, SweepConfig):
        raise ConfigError(checked.source, [Issue("", "is a pipeline spec, not a sweep config.")])
    return checked.model


def load_pipeline(source: str | Path | dict[str, Any], base_dir: Path | None = None) -> Pipeline:
    """A valid :class:`Pipeline` from a path or mapping, or :class:`ConfigError` with every issue."""
    checked = check_pipeline(source, "<pipeline>", base_dir) if isinstance(source, dict) else check_file(source)
    checked.raise_for_errors()
    if not isinstance(checked.model, Pipeline):
        raise ConfigError(checked.source, [Issue("", "is a sweep config, not a pipeline spec (no `stages`).")])
    return checked.model
