"""A run's command line, built exactly as W&B's agent builds it, and the local registry of Launch jobs.

W&B's rules live in two places of the wandb package, and this module mirrors both:

* ``wandb.sdk.launch.sweeps.utils``: ``create_sweep_command`` (the default command
  ``${env} ${interpreter} ${program} ${args}`` and the ``${envvar:NAME}`` substitution, done first, inside any
  element) and ``create_sweep_command_args`` (the ``args*`` formats of the run's parameters).
* ``wandb.wandb_agent.Agent._command_run``: an element that *is* a macro (starts with ``${`` and ends with ``}``)
  is replaced by its list of values; any other element is kept verbatim (``--cfg=${args_json_file}`` stays literal).

Values are formatted by Python's ``str()`` as W&B does (``True``, ``None``, ``1e-05``), and a nested parameter
is not flattened: W&B passes the whole mapping as one value, ``--optim={'lr': 0.1}`` (its ``${args_json}`` form
is proper JSON). The argv is meant for ``subprocess`` without a shell, so no value is ever shell-interpreted.

Where W&B silently does something no one can mean, we raise :class:`JobError` instead (see ``MACROS``):
an unset ``${envvar:NAME}`` (W&B substitutes the text ``NAME``), an unknown macro element (W&B drops it), an
envvar name W&B would not recognize (it is not upper-case ``[A-Z0-9_]``), and ``${args_dict}`` (W&B splices in
the parameter *names*). ``${project}`` and ``${entity}`` are sweepflow extensions: W&B's agent drops them.

A Launch ``job:`` has no program on this machine, so the registry maps job names to local programs; see
:func:`resolve_program`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweepflow.config.sweep import SweepConfig
from sweepflow.config.yaml12 import load_yaml
from sweepflow.errors import SweepflowError

DEFAULT_COMMAND: tuple[str, ...] = ("${env}", "${interpreter}", "${program}", "${args}")
"""W&B's command when the sweep config has none (or an empty one)."""

WANDB_MACROS: tuple[str, ...] = (
    "env",
    "interpreter",
    "program",
    "args",
    "args_no_equals",
    "args_no_hyphens",
    "args_no_boolean_flags",
    "args_json",
    "args_json_file",
    "args_append_hydra",
    "args_override_hydra",
)
"""Every whole-element macro W&B's agent (wandb 0.31) expands, besides ``${envvar:NAME}``."""

MACROS: tuple[str, ...] = (*WANDB_MACROS, "project", "entity")
"""The macros :func:`build_command` expands: W&B's plus ``project`` and ``entity`` (from the sweep config)."""

ARGS_JSON_FILE = "args.json"
"""Name of the ``${args_json_file}`` file inside the run's work_dir (W&B: ``wandb/sweep-ID/config-RUN.json``)."""

REGISTRY_FILE = "sweepflow.yaml"
"""The job registry file looked for beside the sweep config, before ``[tool.sweepflow.jobs]`` in pyproject.toml."""

# Any ${envvar:...}; W&B's own pattern is r"\$\{envvar\:([A-Z0-9_]*)\}", so a name outside _WANDB_NAME is one
# W&B would leave as literal text, which we refuse rather than pass on.
_ENVVAR = re.compile(r"\$\{envvar:([^}]*)\}")
_WANDB_NAME = re.compile(r"[A-Z0-9_]+")
_ENTRY_KEYS = frozenset({"program", "command"})


class JobError(SweepflowError):
    """A run's command cannot be built or its program found: names the field at fault and the fix."""


@dataclass(frozen=True)
class ResolvedJob:
    """What a sweep's runs execute on this machine.

    ``program`` is what ``${program}`` expands to: an absolute path to an existing file, or None when the
    command does not use ``${program}``. ``command`` is the registry entry's command (used when the sweep config
    has no ``command`` of its own, as a Launch sweep's ``command`` overrides its job's entrypoint). ``source`` is
    the registry file the job was found in (None: no ``job``, the program came from the sweep config itself)
    and ``key`` the registry key that matched.
    """

    program: Path | None
    command: tuple[Any, ...] | None = None
    source: Path | None = None
    key: str | None = None


def command_template(config: SweepConfig, job: ResolvedJob | None = None) -> list[Any]:
    """The command before expansion: the sweep's ``command``, else the job's, else W&B's default.

    An empty ``command: []`` counts as absent, as in W&B (``command or DEFAULT_SWEEP_COMMAND``).
    """
    return list(config.command or (job.command if job else None) or DEFAULT_COMMAND)


def format_args(run_params: Mapping[str, Any]) -> dict[str, list[str]]:
    """The run's parameters in each ``args*`` macro's form, as ``create_sweep_command_args`` makes them.

    Values are first put through JSON, because that is how they reach W&B's agent (from the server): tuples
    become lists and numpy scalars plain numbers, so ``str()`` prints what the agent would print.
    """
    params = _as_json(run_params)
    forms: dict[str, list[str]] = {
        "args": [],
        "args_no_equals": [],
        "args_no_hyphens": [],
        "args_no_boolean_flags": [],
        "args_append_hydra": [],
        "args_override_hydra": [],
    }
    for name, value in params.items():
        flag = f"{name}={value}"
        forms["args"].append(f"--{flag}")
        forms["args_no_hyphens"].append(flag)
        forms["args_no_equals"] += [f"--{name}", str(value)]
        forms["args_append_hydra"].append(f"+{flag}")
        forms["args_override_hydra"].append(f"++{flag}")
        if isinstance(value, bool):
            if value:  # a true boolean is a bare flag, a false one is left out
                forms["args_no_boolean_flags"].append(f"--{name}")
        else:
            forms["args_no_boolean_flags"].append(f"--{flag}")
    forms["args_json"] = [json.dumps(params)]
    return forms


def build_command(
    config: SweepConfig,
    run_params: Mapping[str, Any],
    *,
    job: ResolvedJob,
    work_dir: Path,
    interpreter: str = sys.executable,
    env_prefix: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The argv of one run, for ``subprocess`` with no shell.

    ``run_params`` maps each top-level parameter to its value (nested parameters as mappings), as the engine
    suggests them. ``job`` comes from :func:`resolve_program`. ``${interpreter}`` is ``interpreter`` (W&B uses
    the bare word ``python``, which finds whatever is first on PATH; this interpreter is the one sweepflow
    runs in). ``${env}`` is ``env_prefix``, by default what W&B uses: ``/usr/bin/env``, nothing on Windows.
    ``${envvar:NAME}`` is read from ``environ`` (default ``os.environ``).

    If the command uses ``${args_json_file}``, the parameters are written as JSON to ``work_dir/args.json``
    (work_dir is created; it should be the run's own directory) and the file's absolute path is substituted.
    """
    env = os.environ if environ is None else environ
    template = [_expand_envvars(str(element), env) for element in command_template(config, job)]
    args = format_args(run_params)
    json_file = Path(os.path.abspath(work_dir / ARGS_JSON_FILE))
    default_env = [] if platform.system() == "Windows" else ["/usr/bin/env"]

    def program() -> list[str]:
        if job.program is None:
            raise JobError(
                f"command: {_show(template)} runs ${{program}}, but no program was resolved for it. "
                "Fix: resolve the job with sweepflow.jobs.resolve_program() for this same config."
            )
        return [str(job.program)]

    macros: dict[str, Callable[[], list[str]]] = {
        "env": lambda: list(default_env if env_prefix is None else env_prefix),
        "interpreter": lambda: [interpreter],
        "program": program,
        "args_json_file": lambda: [str(json_file)],
        "project": lambda: [_config_value(config, "project", template)],
        "entity": lambda: [_config_value(config, "entity", template)],
        **{name: (lambda v=values: list(v)) for name, values in args.items()},
    }
    argv: list[str] = []
    for element in template:
        if element.startswith("${") and element.endswith("}"):
            name = element[2:-1]
            if name not in macros:
                raise JobError(_unknown_macro(name, template))
            argv += macros[name]()
        else:
            argv.append(element)
    if "${args_json_file}" in template:  # W&B writes the file only in this case, too
        _write_atomically(json_file, args["args_json"][0])
    return argv


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
            f"{_show(template)} runs ${{program}}. Fix: add `program: train.py` to jobs[{key!r}] there, "
            "or give the job a `command` that does not use ${program}."
        )
    else:
        raise JobError(
            f"program: missing. The command {_show(template)} runs ${{program}}, and the sweep config has "
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


def _expand_envvars(element: str, environ: Mapping[str, str]) -> str:
    """Substitute every ``${envvar:NAME}`` in one element, as ``create_sweep_command`` does (but strictly)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _WANDB_NAME.fullmatch(name):
            raise JobError(
                f"command: {match.group(0)} is not a variable W&B's agent can read (it substitutes only "
                "upper-case names of A-Z, 0-9 and _, and would pass this text on literally). "
                "Fix: use an upper-case variable name."
            )
        if name not in environ:
            raise JobError(
                f"command: ${{envvar:{name}}} needs the environment variable {name}, which is not set "
                f"(W&B's agent would pass the literal text {name!r} instead). Fix: export {name}=... before "
                "starting the sweep, or remove it from `command`."
            )
        return environ[name]

    return _ENVVAR.sub(value, element)


def _config_value(config: SweepConfig, field: str, template: list[str]) -> str:
    value = getattr(config, field)
    if not value:
        raise JobError(
            f"{field}: missing, and the command {_show(template)} uses ${{{field}}}. "
            f"Fix: add `{field}:` to the sweep config, or remove ${{{field}}} from `command`."
        )
    return str(value)


def _unknown_macro(name: str, template: list[str]) -> str:
    hint = " (use ${args_json} for the parameters as one JSON value)" if name == "args_dict" else ""
    return (
        f"command: ${{{name}}} in {_show(template)} is not a macro{hint}; W&B's agent would silently drop it. "
        f"Fix: use one of {', '.join('${' + m + '}' for m in MACROS)}, or ${{envvar:NAME}}."
    )


def _show(template: Sequence[Any]) -> str:
    return json.dumps([str(element) for element in template])


def _as_json(run_params: Mapping[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if hasattr(value, "tolist"):  # numpy scalars and arrays
            return value.tolist()
        raise TypeError(type(value).__name__)

    out: dict[str, Any] = {}
    for name, value in run_params.items():
        try:
            out[str(name)] = json.loads(json.dumps(value, default=plain))
        except (TypeError, ValueError) as exc:
            raise JobError(
                f"parameters.{name}: value {value!r} is not a JSON value ({exc}); W&B hands runs their "
                "parameters as JSON. Fix: give it as a number, string, boolean, null, list or mapping."
            ) from None
    return out


def _write_atomically(path: Path, text: str) -> None:
    # A run reading the file must never see half of it.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
