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

import yaml

from sweepflow.config.sweep import SweepConfig
from sweepflow.config.yaml12 import load_yaml
from sweepflow.local.command import JobError, ResolvedJob, command_template, show_template

REGISTRY_FILE = "sweepflow.yaml"
"""The job registry file looked for beside the sweep config, before ``[tool.sweepflow.jobs]`` in pyproject.toml."""

_ENTRY_KEYS = frozenset({"program", "command"})


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
    for path, jobs in _registries(config_dir):
        looked.append(path)
        for key in candidates:
            if key in jobs:
                program, command = _entry(jobs[key], key, path)
                return path, key, program, command
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


def check_registry(path: Path, data: Mapping[str, Any]) -> list[str]:
    """Every problem of a ``sweepflow.yaml`` job registry (entries malformed, programs missing); [] if fine."""
    problems = []
    try:
        table = _jobs_table(data.get("jobs"), path, "jobs")
    except JobError as exc:
        return [str(exc)]
    for key, raw in table.items():
        try:
            program, _ = _entry(raw, key, path)
            if program is not None:
                _locate(program, path.parent, f"jobs[{key!r}].program in {path}")
        except JobError as exc:
            problems.append(str(exc))
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


def _registries(config_dir: Path) -> list[tuple[Path, Mapping[str, Any]]]:
    """The ``jobs`` tables that exist, in lookup order."""
    found: list[tuple[Path, Mapping[str, Any]]] = []
    beside = config_dir / REGISTRY_FILE
    if beside.is_file():
        try:
            data = load_yaml(beside.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise JobError(f"{beside}: cannot be read as YAML ({exc}). Fix: correct the file.") from None
        found.append((beside, _jobs_table(data.get("jobs") if isinstance(data, dict) else None, beside, "jobs")))
    pyproject = next(
        (d / "pyproject.toml" for d in (config_dir, *config_dir.parents) if (d / "pyproject.toml").is_file()), None
    )
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise JobError(f"{pyproject}: cannot be read as TOML ({exc}). Fix: correct the file.") from None
        table = data.get("tool", {}).get("sweepflow", {}).get("jobs")
        found.append((pyproject, _jobs_table(table, pyproject, "[tool.sweepflow.jobs]")))
    return found


def _jobs_table(table: Any, path: Path, name: str) -> Mapping[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise JobError(f"{name} in {path}: must map job names to {{program: ..., command: [...]}}, not {table!r}.")
    return table


def _entry(raw: Any, key: str, path: Path) -> tuple[str | None, tuple[Any, ...] | None]:
    """One registry entry, checked: (program, command)."""
    where = f"jobs[{key!r}] in {path}"
    if not isinstance(raw, dict):
        raise JobError(f"{where}: must be a mapping like {{program: train.py}}, not {raw!r}.")
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise JobError(f"{where}: unknown key(s) {', '.join(unknown)}. Fix: keep only `program` and `command`.")
    program, command = raw.get("program"), raw.get("command")
    if program is not None and (not isinstance(program, str) or not program):
        raise JobError(f"{where}: `program` must be a file path, not {program!r}.")
    if command is not None and (not isinstance(command, list) or not command):
        raise JobError(f"{where}: `command` must be a non-empty list of arguments, not {command!r}.")
    if program is None and command is None:
        raise JobError(f"{where}: has neither `program` nor `command`. Fix: add `program: train.py`.")
    return program, tuple(command) if command else None


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
