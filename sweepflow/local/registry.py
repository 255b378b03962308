"""The local registry of Launch jobs: what a sweep's ``job:`` (``project/name:alias``) runs on this machine.

A Launch job has no program here, so a registry maps job names to local programs: ``sweepflow.yaml`` beside
the sweep config (``jobs: {project/name: {program: train.py, command: [...]}}``), then ``[tool.sweepflow.jobs]``
in the nearest pyproject.toml. :func:`resolve_program` turns a config into the :class:`ResolvedJob` that
:func:`sweepflow.local.command.build_command` runs.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from sweepflow.config.base import ConfigModel
from sweepflow.config.documents import DocumentError, read_document
from sweepflow.config.issues import issues_from, problems_error, render_path
from sweepflow.config.sweep import SweepConfig
from sweepflow.errors import Issue
from sweepflow.local.command import JobError, ResolvedJob, command_template, show_template

REGISTRY_FILE = "sweepflow.yaml"
"""The job registry file looked for beside the sweep config, before ``[tool.sweepflow.jobs]`` in pyproject.toml."""


class JobEntry(ConfigModel):
    """What one registered job's runs execute on this machine."""

    program: str | None = Field(
        None, min_length=1, description="The training script, relative to the registry file (or absolute)."
    )
    command: list[Any] | None = Field(
        None, min_length=1, description="The run's command line, with W&B's ${...} macros (default: W&B's)."
    )

    @model_validator(mode="after")
    def _runs_something(self) -> JobEntry:
        if self.program is None and self.command is None:
            raise problems_error([([], "has neither `program` nor `command`.", "add `program: train.py`.")])
        return self


class JobRegistry(ConfigModel):
    """A job registry file (``sweepflow.yaml``) or the ``[tool.sweepflow]`` table of pyproject.toml.

    Only ``jobs`` is read; other top-level keys are left to whatever else keeps settings in the same file.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    jobs: dict[str, JobEntry] = Field(
        default_factory=dict, description="Launch job name (`project/name`, optionally `:alias`) -> what it runs."
    )


def resolve_program(config: SweepConfig, config_dir: Path) -> ResolvedJob:
    """What the sweep's runs execute: the config's ``program``, or its ``job`` looked up in the local registry.

    The registry, first match wins: ``sweepflow.yaml`` beside the config (``jobs: {project/name: {program:
    train.py, command: [...]}}``), then ``[tool.sweepflow.jobs]`` in the nearest pyproject.toml above the
    config's directory. A job name matches a key written with or without its alias (no alias means
    ``latest``, as in W&B), and ``entity/project/name`` also matches a key without the entity.

    The sweep config's own ``program`` and ``command`` win over the job's (as in ``wandb launch-sweep``, where
    they override the job's entrypoint). A relative program is looked up relative to the file that names it
    (the sweep config, or the registry file), then the current directory: the first keeps a config and its
    script together wherever the sweep is started from, the second is where W&B's agent looks
    (it runs ``python train.py`` in its working directory). The program is only required, and checked,
    when the command uses ``${program}``.
    """
    config_dir = Path(os.path.abspath(config_dir))
    source: Path | None = None
    key: str | None = None
    job_program: str | None = None
    job_command: tuple[Any, ...] | None = None
    if config.job:
        source, key, job_program, job_command = _lookup(config.job, config_dir)
    resolved = ResolvedJob(program=None, command=job_command, source=source, key=key)
    template = command_template(config, resolved)
    if "${program}" not in (str(element) for element in template):
        return resolved
    if config.program:
        program, base, field = config.program, config_dir, "program"
    elif job_program and source is not None:
        program, base, field = job_program, source.parent, f"jobs[{key!r}].program in {source}"
    elif config.job:
        raise JobError(
            f"job: {config.job!r} is registered in {source} without a `program`, and the command "
            f"{show_template(template)} runs ${{program}}. Fix: add `program: train.py` to jobs[{key!r}] there, "
            "or give the job a `command` that does not use ${program}."
        )
    else:
        raise JobError(
            f"program: missing. The command {show_template(template)} runs ${{program}}, and the sweep config has "
            "neither `program` nor `job`. Fix: add `program: train.py` (relative to the config's directory), "
            "a `job:` listed in the local job registry (sweepflow.yaml beside the config), or a `command:` "
            "that does not use ${program}."
        )
    return ResolvedJob(program=_locate(program, base, field), command=job_command, source=source, key=key)


def _lookup(job: str, config_dir: Path) -> tuple[Path, str, str | None, tuple[Any, ...] | None]:
    """Find ``job`` in the registries: (file, key, program, command)."""
    candidates = _job_keys(job)
    looked: list[Path] = []
    for path, registry in _registries(config_dir):
        looked.append(path)
        for key in candidates:
            if key in registry.jobs:
                entry = registry.jobs[key]
                return path, key, entry.program, tuple(entry.command) if entry.command else None
    bare = candidates[1] if ":" in job else job
    where = (
        f"looked in {', '.join(map(str, looked))}"
        if looked
        else f"there is no {REGISTRY_FILE} in {config_dir} and no pyproject.toml above it"
    )
    raise JobError(
        f"job: {job!r} is not in the local job registry ({where}). Fix: add it to {REGISTRY_FILE} beside the "
        f"config as jobs: {{{bare}: {{program: train.py}}}}, or to pyproject.toml as [tool.sweepflow.jobs] "
        f'"{bare}" = {{program = "train.py"}}.'
    )


def check_registry(path: Path, data: Mapping[str, Any]) -> list[Issue]:
    """Every problem of a ``sweepflow.yaml`` job registry (entries malformed, programs missing); [] if fine."""
    jobs = data.get("jobs")
    if not isinstance(jobs, Mapping):
        try:
            JobRegistry.model_validate(data)
        except ValidationError as exc:
            return issues_from(exc)
        return []
    problems: list[Issue] = []
    for key, raw in jobs.items():  # entry by entry, so one bad entry does not hide another's missing program
        try:
            entry = JobEntry.model_validate(raw)
        except ValidationError as exc:
            problems += issues_from(exc, prefix=["jobs", key])
            continue
        if entry.program is not None:
            try:
                _locate(entry.program, path.parent, "program")
            except JobError as exc:
                problems.append(Issue(render_path(["jobs", key, "program"]), str(exc).removeprefix("program: ")))
    return problems


def _job_keys(job: str) -> list[str]:
    """Registry keys that name ``job``, most specific first: with and without the alias, then without entity."""
    path, alias = job.rsplit(":", 1) if ":" in job else (job, "latest")
    keys = [job, path] if ":" in job else [job, f"{job}:{alias}"]
    parts = path.split("/")
    if len(parts) == 3:
        short = "/".join(parts[1:])
        keys += [f"{short}:{alias}", short]
    return list(dict.fromkeys(keys))


def _registries(config_dir: Path) -> list[tuple[Path, JobRegistry]]:
    """The registries that exist, in lookup order, validated (a broken one is an error, never skipped)."""
    found: list[tuple[Path, JobRegistry]] = []
    beside = config_dir / REGISTRY_FILE
    if beside.is_file():
        try:
            data = read_document(beside)
        except DocumentError as exc:
            raise JobError(f"{exc} Fix: correct the file.") from None
        found.append((beside, _validated(data, beside)))
    pyproject = next(
        (d / "pyproject.toml" for d in (config_dir, *config_dir.parents) if (d / "pyproject.toml").is_file()), None
    )
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise JobError(f"{pyproject}: cannot be read as TOML ({exc}). Fix: correct the file.") from None
        table = data.get("tool", {}).get("sweepflow", {}).get("jobs")
        found.append((pyproject, _validated({} if table is None else {"jobs": table}, pyproject, "[tool.sweepflow]")))
    return found


def _validated(data: Mapping[str, Any], path: Path, prefix: str = "") -> JobRegistry:
    try:
        return JobRegistry.model_validate(data)
    except ValidationError as exc:
        issues = "; ".join(f"{prefix}{'.' if prefix else ''}{issue}" for issue in issues_from(exc))
        raise JobError(f"{path}: {issues}") from None


def _locate(program: str, base: Path, field: str) -> Path:
    """The program's absolute path: relative to ``base`` first, then the current directory."""
    given = Path(program)
    candidates = [given] if given.is_absolute() else list(dict.fromkeys([base / given, Path.cwd() / given]))
    for candidate in candidates:
        if candidate.exists():
            return Path(os.path.abspath(candidate))
    looked = " and ".join(str(Path(os.path.abspath(c))) for c in candidates)
    raise JobError(
        f"{field}: {program!r} does not exist (looked for {looked}). Fix: give the path relative to "
        f"{base}, or an absolute path."
    )
