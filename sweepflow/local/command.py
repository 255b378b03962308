"""A run's command line, built exactly as W&B's agent builds it.

W&B's rules live in two places of the wandb package, and this module mirrors both:

* ``wandb.sdk.launch.sweeps.utils``: ``create_sweep_command`` (the default command
  ``${env} ${interpreter} ${program} ${args}`` and the ``${envvar:NAME}`` substitution, done first, inside any
  element) and ``create_sweep_command_args`` (the ``args*`` formats of the run's parameters).
* ``wandb.wandb_agent.Agent._command_run``: an element that *is* a macro (starts with ``${`` and ends with ``}``)
  is replaced by its list of values; any other element is kept verbatim (``--cfg=${args_json_file}`` stays literal).

Values are formatted by Python's ``str()`` as W&B does (``True``, ``None``, ``1e-05``), and a nested parameter
is not flattened: W&B passes the whole mapping as one value, ``--optim={'lr': 0.1}`` (its ``${args_json}`` form
is proper JSON). The argv is meant for ``subprocess`` without a shell, so no value is ever shell-interpreted.

What W&B does with a macro no one can mean, this module does too, so a command runs here as it runs under
``wandb agent`` (``sweepflow validate`` warns about each, see :func:`macro_warnings`): an unknown macro element
(``${foo}``, ``${project}``, ``${entity}``) is dropped, an unset ``${envvar:NAME}`` becomes the text ``NAME``, a
name W&B's pattern does not match (not upper-case ``[A-Z0-9_]``) stays literal text, and ``${args_dict}``
splices in the parameter *names*.

A Launch ``job:`` has no program on this machine: :mod:`sweepflow.local.registry` maps job names to local
programs and returns the :class:`ResolvedJob` this module runs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepflow.config.sweep import SweepConfig
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

MACROS: tuple[str, ...] = WANDB_MACROS
"""The macros :func:`build_command` expands: W&B's (``${args_dict}`` too, though only its keys survive)."""

ARGS_JSON_FILE = "args.json"
"""Name of the ``${args_json_file}`` file inside the run's work_dir (W&B: ``wandb/sweep-ID/config-RUN.json``)."""

# W&B's own pattern (wandb.sdk.launch.sweeps.utils.SWEEP_COMMAND_ENV_VAR_REGEX), and any ${envvar:...} at all.
_ENVVAR = re.compile(r"\$\{envvar\:([A-Z0-9_]*)\}")
_ANY_ENVVAR = re.compile(r"\$\{envvar:([^}]*)\}")


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
                f"command: {show_template(template)} runs ${{program}}, but no program was resolved for it. "
                "Fix: resolve the job with sweepflow.local.registry.resolve_program() for this same config."
            )
        return [str(job.program)]

    macros: dict[str, Callable[[], list[str]]] = {
        "env": lambda: list(default_env if env_prefix is None else env_prefix),
        "interpreter": lambda: [interpreter],
        "program": program,
        "args_json_file": lambda: [str(json_file)],
        "args_dict": lambda: [str(name) for name in run_params],  # W&B: `list += dict` adds the keys
        **{name: (lambda v=values: list(v)) for name, values in args.items()},
    }
    argv: list[str] = []
    for element in template:
        if element.startswith("${") and element.endswith("}"):
            expand = macros.get(element[2:-1])
            argv += expand() if expand else []  # W&B drops an element that is an unknown macro
        else:
            argv.append(element)
    if "${args_json_file}" in template:  # W&B writes the file only in this case, too
        _write_atomically(json_file, args["args_json"][0])
    return argv


def _expand_envvars(element: str, environ: Mapping[str, str]) -> str:
    """Substitute every ``${envvar:NAME}`` in one element as ``create_sweep_command`` does: unset is ``NAME``."""
    return _ENVVAR.sub(lambda m: environ.get(m.group(1), m.group(1)), element)


def macro_warnings(command: Sequence[Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """What W&B's agent (and so this module) does with each macro of ``command`` that is likely a mistake."""
    env = os.environ if environ is None else environ
    found: list[str] = []
    for raw in command:
        element = str(raw)
        whole = element.startswith("${") and element.endswith("}")
        for match in _ANY_ENVVAR.finditer(element):
            name = match.group(1)
            if not _ENVVAR.fullmatch(match.group(0)):
                if whole and match.group(0) == element:
                    continue  # a whole element: dropped as an unknown macro, said below
                found.append(
                    f"{match.group(0)} is passed on as literal text: W&B's agent substitutes only upper-case names "
                    "of A-Z, 0-9 and _. Fix: use an upper-case variable name."
                )
            elif name not in env:
                found.append(
                    f"${{envvar:{name}}}: {name} is not set here, and W&B's agent then passes the text {name!r}. "
                    f"Fix: export {name}=... where the agents run, or remove it from `command`."
                )
        expanded = _expand_envvars(element, env)
        if expanded.startswith("${") and expanded.endswith("}"):
            name = expanded[2:-1]
            if name == "args_dict":
                found.append(
                    "${args_dict} becomes the parameter *names* (W&B's agent splices in the keys of a dict). "
                    "Fix: use ${args_json} for the parameters as one JSON value."
                )
            elif name not in MACROS:
                found.append(
                    f"{expanded} is not a macro of W&B's agent, which drops it from the command. Fix: use one of "
                    f"{', '.join('${' + m + '}' for m in MACROS)}, or ${{envvar:NAME}}."
                )
    return found


def show_template(template: Sequence[Any]) -> str:
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
