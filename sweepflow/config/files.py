"""Read a config file from disk and say everything that is wrong with it, without ever raising a traceback.

A file is a pipeline spec when it has top-level ``stages``, else a W&B sweep config. JSON files are read as JSON
(as W&B does); YAML files with YAML 1.2 numbers (see :mod:`sweepflow.config.yaml12`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from sweepflow.config.documents import DocumentError, read_document
from sweepflow.config.issues import issues_from
from sweepflow.config.lint import warnings_for
from sweepflow.config.pipeline import Pipeline
from sweepflow.config.sweep import SweepConfig
from sweepflow.config.wandb_check import wandb_violations
from sweepflow.errors import ConfigError, Issue


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
        checked = check_pipeline(data, str(path), path.parent)
    else:
        checked = check_sweep({**data, "source_dir": str(path.resolve().parent)}, str(path))
    if path.suffix.lower() != ".json":
        checked.warnings += yaml11_strings(path.read_text(encoding="utf-8"), data)
    return checked


def yaml11_strings(text: str, ours: Any) -> list[Issue]:
    """Numbers we read (YAML 1.2) that W&B reads as strings: wandb loads sweep files with PyYAML (YAML 1.1), where
    ``1e-4`` (no dot in the mantissa) is the string ``'1e-4'``, so such a file will not run unchanged under
    ``wandb sweep``."""
    import yaml

    try:
        theirs = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    found: list[Issue] = []

    def walk(a: Any, b: Any, where: tuple[str, ...]) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in a.keys() & b.keys():
                walk(a[key], b[key], (*where, str(key)))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, (*where, str(i)))
        elif isinstance(a, int | float) and not isinstance(a, bool) and isinstance(b, str):
            mantissa, e, exponent = b.lower().partition("e")
            fixed = f"{mantissa}.0e{exponent}" if e and "." not in mantissa else repr(float(a))
            found.append(
                Issue(
                    ".".join(where),
                    f"`{b}` is the number {a!r} here, but W&B reads sweep files as YAML 1.1 and gets the string "
                    f"{b!r}: this config will not run unchanged under `wandb sweep`.",
                    f"write `{fixed}`, which both read as a number.",
                )
            )

    walk(ours, theirs, ())
    return found


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
