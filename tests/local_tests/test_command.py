"""Tests for ``sweepflow.local.command``: run command lines against W&B's own agent, and the local job registry.

The oracle is wandb's real ``Agent._command_run`` (wandb 0.31), driven offline: the agent is built without an
API, ``AgentProcess`` is replaced by a recorder, and WANDB_DIR points into tmp_path. It runs W&B's whole path
(``create_sweep_command``, ``create_sweep_command_args`` and the agent's own expansion loop), so any difference
between its argv and ours is a difference in behaviour, not in a re-implementation of W&B.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from wandb import wandb_agent

from sweepflow.config import SweepConfig
from sweepflow.errors import SweepflowError
from sweepflow.local.command import (
    ARGS_JSON_FILE,
    DEFAULT_COMMAND,
    WANDB_MACROS,
    JobError,
    ResolvedJob,
    build_command,
    format_args,
    macro_warnings,
)
from sweepflow.local.registry import resolve_program

ENV = {"SWEEP_PY": "python3", "API_KEY": "k e y", "AS_MACRO": "${args}", "EMPTY": ""}

TEMPLATES: dict[str, list[Any] | None] = {
    "absent": None,
    "empty": [],
    "default": list(DEFAULT_COMMAND),
    "docs-example": ["${env}", "python3", "${program}", "-b", "your-training-config", "${args}"],
    "no-hyphens": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"],
    "boolean-flags": ["${interpreter}", "${program}", "${args_no_boolean_flags}"],
    "json": ["${interpreter}", "${program}", "${args_json}"],
    "json-file": ["${interpreter}", "${program}", "--config", "${args_json_file}"],
    "no-equals": ["${interpreter}", "${program}", "${args_no_equals}"],
    "hydra": ["${interpreter}", "-m", "pkg.train", "${args_append_hydra}", "${args_override_hydra}"],
    "envvars": ["${envvar:SWEEP_PY}", "${program}", "--key=${envvar:API_KEY}", "x${envvar:EMPTY}y", "${args}"],
    "envvar-is-macro": ["${interpreter}", "${program}", "${envvar:AS_MACRO}"],
    "non-strings": ["python", 3, True, 1.5, None, "${program}"],
    "embedded-macros": ["${interpreter}", "--p=${program}", "${args}x", "--cfg=${args_json_file}"],
    "all-macros": ["${" + m + "}" for m in WANDB_MACROS],
    # what no one means, done as W&B's agent does it (issue 9, item 11)
    "unset-envvar": ["${env}", "${envvar:NOT_SET_ANYWHERE}", "${program}", "--k=${envvar:NOT_SET_ANYWHERE}x"],
    "unreadable-envvar": ["${program}", "--k=${envvar:lower_case}", "${envvar:}", "${envvar:lower}"],
    "unknown-macros": ["${program}", "${nope}", "${}", "${args_dict}", "--project", "${project}", "${entity}"],
}

PARAMS: dict[str, dict[str, Any]] = {
    "none": {},
    "plain": {"lr": 0.001, "batch_size": 32, "optimizer": "adam"},
    "booleans": {"on": True, "off": False, "zero": 0, "one": 1},
    "nested": {"optim": {"lr": 0.1, "betas": [0.9, 0.999], "sched": {"kind": "cos"}}, "layers": [64, 32]},
    "awkward": {
        "name": "two words",
        "quote": "say \"hi\" 'there'",
        "subst": "$(rm -rf /)",
        "semi": "; echo pwned",
        "uni": "héllo",
        "null": None,
        "tiny": 1e-05,
        "big": 1e16,
        "dotted.key": -3,
    },
}


def _config(command: list[Any] | None = None, **extra: Any) -> SweepConfig:
    fields: dict[str, Any] = {"method": "grid", "parameters": {"lr": {"value": 0.1}}, **extra}
    if command is not None:
        fields["command"] = command
    return SweepConfig(**fields)


def wandb_argv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[Any] | None, params: dict[str, Any], program: str
) -> tuple[list[str], Path]:
    """The argv wandb's agent starts for this command and run, and its ``${args_json_file}`` path."""
    started: list[list[str]] = []

    class Recorder:
        def __init__(self, command: list[str] | None = None, **_: Any) -> None:
            started.append(command or [])

    monkeypatch.setattr(wandb_agent, "AgentProcess", Recorder)
    # The agent sets WANDB_RUN_ID and WANDB_SWEEP_PARAM_PATH in os.environ: set them here so they are restored.
    for name, value in {"WANDB_DIR": str(tmp_path / "wb"), "WANDB_SWEEP_ID": "sw", **ENV}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_RUN_ID", "")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "")
    agent = wandb_agent.Agent(api=None, queue=None, sweep_id="sw")
    agent._sweep_command = json.loads(json.dumps(command)) if command else []  # what Agent.run would set
    args = {k: {"value": v} for k, v in params.items()}
    agent._command_run({"type": "run", "run_id": "r1", "program": program, "args": args})
    return started[0], tmp_path / "wb" / "wandb" / "sweep-sw" / "config-r1.json"


def ours(
    config: SweepConfig, params: dict[str, Any], tmp_path: Path, program: str = "train.py", **kwargs: Any
) -> list[str]:
    kwargs.setdefault("environ", ENV)
    job = ResolvedJob(program=Path(program))
    return build_command(config, params, job=job, work_dir=tmp_path / "run", **kwargs)


# --- differential: our argv against wandb's agent -------------------------------------------------------------


@pytest.mark.parametrize("params_name", PARAMS)
@pytest.mark.parametrize("template_name", TEMPLATES)
def test_matches_wandb_agent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, template_name: str, params_name: str
) -> None:
    command, params = TEMPLATES[template_name], PARAMS[params_name]
    expected, wandb_json = wandb_argv(monkeypatch, tmp_path, command, params, "train.py")
    got = ours(_config(command), params, tmp_path, interpreter="python")
    # The one intended difference: where ${args_json_file} is written (W&B: under WANDB_DIR/wandb/sweep-ID).
    ours_json = tmp_path / "run" / ARGS_JSON_FILE
    assert [ours_json.name if a == str(ours_json) else a for a in got] == [
        ours_json.name if a == str(wandb_json) else a for a in expected
    ]
    assert ours_json.exists() == wandb_json.exists()
    if wandb_json.exists():
        assert ours_json.read_text() == wandb_json.read_text()


def test_numpy_values_print_as_wandb_prints_json_values(tmp_path: Path) -> None:
    # Values reach W&B's agent as JSON; numpy scalars from a local engine must print the same.
    params = {"lr": np.float64(0.1), "n": np.int64(3), "ok": np.bool_(True), "shape": (2, 3), "arr": np.array([1])}
    assert ours(_config(), params, tmp_path, env_prefix=[])[2:] == [
        "--lr=0.1",
        "--n=3",
        "--ok=True",
        "--shape=[2, 3]",
        "--arr=[1]",
    ]


def test_non_json_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"parameters\.bad: .*not a JSON value"):
        ours(_config(), {"bad": object()}, tmp_path)


# --- macros W&B accepts and no one means: run as W&B runs them, and `validate` warns -------------------------


def test_wandb_own_macro_behaviour_pinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Pins what the differential cases above compare against, so a wandb upgrade that changes it shows up here.
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    monkeypatch.setenv("lower_case", "x")
    for name, expected in {
        "unset-envvar": ["/usr/bin/env", "NOT_SET_ANYWHERE", "train.py", "--k=NOT_SET_ANYWHEREx"],
        "unreadable-envvar": ["train.py", "--k=${envvar:lower_case}", ""],  # a whole-element one is dropped
        "unknown-macros": ["train.py", "a", "--project"],
    }.items():
        assert wandb_argv(monkeypatch, tmp_path / name, TEMPLATES[name], {"a": 1}, "train.py")[0] == expected


@pytest.mark.parametrize(
    ("element", "says"),
    [
        ("${envvar:NOT_SET_ANYWHERE}", r"NOT_SET_ANYWHERE is not set here, and W&B's agent then passes the text"),
        ("--k=${envvar:lower}", r"\$\{envvar:lower\} is passed on as literal text"),
        ("${args_dict}", r"becomes the parameter \*names\*.*Fix: use \$\{args_json\}"),
        ("${project}", r"\$\{project\} is not a macro of W&B's agent, which drops it"),
        ("${foo}", r"\$\{foo\} is not a macro"),
        ("${envvar:lower}", r"\$\{envvar:lower\} is not a macro of W&B's agent, which drops it"),
    ],
)
def test_macro_warnings_name_the_macro_and_the_fix(element: str, says: str) -> None:
    (warning,) = macro_warnings(["${program}", element], environ={})
    assert re.search(says, warning) and "Fix:" in warning


def test_no_macro_warning_for_what_is_meant() -> None:
    command = [*DEFAULT_COMMAND, "${args_json}", "--key=${envvar:API_KEY}", "${envvar:AS_MACRO}"]
    assert macro_warnings(command, environ=ENV) == []


def test_interpreter_and_env_prefix(tmp_path: Path) -> None:
    assert ours(_config(), {"a": 1}, tmp_path) == ["/usr/bin/env", sys.executable, "train.py", "--a=1"]
    assert ours(_config(), {}, tmp_path, interpreter="py3", env_prefix=["env", "-u", "X"])[:4] == [
        "env",
        "-u",
        "X",
        "py3",
    ]


# --- the argv reaches the program verbatim -----------------------------------------------------------------------

ECHO = """\
import json, sys
out = {"argv": sys.argv[1:]}
if "--config" in sys.argv:
    out["file"] = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
print(json.dumps(out))
"""


def _run(argv: list[str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True, timeout=30)
    return json.loads(done.stdout)


def test_values_arrive_verbatim_as_one_argument_each(tmp_path: Path) -> None:
    (tmp_path / "echo.py").write_text(ECHO)
    canary = tmp_path / "pwned"
    params = {**PARAMS["awkward"], "sub2": f"$(touch {canary})", "tick": f"`touch {canary}`", "on": True}
    config = _config(program="echo.py")
    job = resolve_program(config, tmp_path)
    argv = build_command(config, params, job=job, work_dir=tmp_path / "run")
    assert argv[:3] == ["/usr/bin/env", sys.executable, str(tmp_path / "echo.py")]
    assert _run(argv, cwd=tmp_path)["argv"] == argv[3:] == format_args(params)["args"]
    assert "--subst=$(rm -rf /)" in argv and "--name=two words" in argv
    assert not canary.exists()


def test_json_macros_arrive_as_json(tmp_path: Path) -> None:
    (tmp_path / "echo.py").write_text(ECHO)
    params = {**PARAMS["nested"], **PARAMS["awkward"], "flag": False}
    command = ["${interpreter}", "${program}", "${args_json}", "--config", "${args_json_file}", "${envvar:EMPTY}"]
    config = _config(command, program="echo.py")
    argv = build_command(config, params, job=resolve_program(config, tmp_path), work_dir=tmp_path / "r", environ=ENV)
    out = _run(argv, cwd=tmp_path)
    assert json.loads(out["argv"][0]) == out["file"] == params
    assert out["argv"][1:] == ["--config", str(tmp_path / "r" / ARGS_JSON_FILE), ""]


def test_boolean_flags_and_nested_values(tmp_path: Path) -> None:
    command = ["${program}", "${args_no_boolean_flags}"]
    params = {"amp": True, "compile": False, "optim": {"lr": 0.1, "nesterov": True}, "lr": 0.5}
    assert ours(_config(command), params, tmp_path)[1:] == [
        "--amp",
        "--optim={'lr': 0.1, 'nesterov': True}",  # W&B does not flatten nested parameters: one Python-repr value
        "--lr=0.5",
    ]


def test_args_json_file_only_written_when_used(tmp_path: Path) -> None:
    ours(_config(["${program}", "--cfg=${args_json_file}"]), {"a": 1}, tmp_path)
    assert not (tmp_path / "run" / ARGS_JSON_FILE).exists()


# --- job registry ---------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("job", "key"),
    [
        ("my-project/training-job:latest", "my-project/training-job"),
        ("my-project/training-job", "my-project/training-job"),
        ("my-project/pinned:v3", "my-project/pinned:v3"),
        ("my-project/pinned", "my-project/pinned:latest"),
        ("acme/my-project/training-job:latest", "my-project/training-job"),
        ("acme/my-project/exact:v1", "acme/my-project/exact"),
    ],
)
def test_job_from_sweepflow_yaml(tmp_path: Path, job: str, key: str) -> None:
    registry = _write(
        tmp_path / "sweeps" / "sweepflow.yaml",
        """\
        jobs:
          my-project/training-job: {program: ../src/train.py}
          my-project/pinned:v3: {program: ../src/train.py}
          my-project/pinned:latest: {program: ../src/train.py}
          acme/my-project/exact: {program: ../src/train.py}
        """,
    )
    _write(tmp_path / "src" / "train.py", "")
    resolved = resolve_program(_config(job=job), tmp_path / "sweeps")
    assert resolved == ResolvedJob(program=tmp_path / "src" / "train.py", source=registry, key=key)


def test_job_alias_must_match_when_the_key_has_one(tmp_path: Path) -> None:
    _write(tmp_path / "sweepflow.yaml", "jobs: {p/train:v1: {program: train.py}}")
    with pytest.raises(JobError, match=r"job: 'p/train:v2' is not in the local job registry"):
        resolve_program(_config(job="p/train:v2"), tmp_path)


def test_job_command_from_registry(tmp_path: Path) -> None:
    _write(
        tmp_path / "sweepflow.yaml",
        """\
        other: setting
        jobs:
          p/train:
            program: train.py
            command: ["${env}", "${interpreter}", "${program}", "--fixed", "${args_no_hyphens}"]
          p/module:
            command: ["${interpreter}", "-m", "pkg.train", "${args}"]
        """,
    )
    _write(tmp_path / "train.py", "")
    job = resolve_program(_config(job="p/train:latest"), tmp_path)
    argv = build_command(_config(job="p/train:latest"), {"a": 1}, job=job, work_dir=tmp_path, env_prefix=[])
    assert argv == [sys.executable, str(tmp_path / "train.py"), "--fixed", "a=1"]
    module = resolve_program(_config(job="p/module"), tmp_path)
    assert module.program is None and module.command == ("${interpreter}", "-m", "pkg.train", "${args}")
    # The sweep's own command and program win over the job's, as in `wandb launch-sweep`.
    _write(tmp_path / "mine.py", "")
    config = _config(["${program}", "${args}"], job="p/train", program="mine.py")
    job = resolve_program(config, tmp_path)
    assert build_command(config, {"a": 1}, job=job, work_dir=tmp_path) == [str(tmp_path / "mine.py"), "--a=1"]


def test_job_from_pyproject_walking_up(tmp_path: Path) -> None:
    pyproject = _write(
        tmp_path / "pyproject.toml",
        """\
        [project]
        name = "x"
        [tool.sweepflow.jobs]
        "my-project/training-job" = {program = "src/train.py"}
        """,
    )
    _write(tmp_path / "src" / "train.py", "")
    config_dir = tmp_path / "configs" / "deep"
    config_dir.mkdir(parents=True)
    resolved = resolve_program(_config(job="my-project/training-job:latest"), config_dir)
    assert resolved == ResolvedJob(tmp_path / "src" / "train.py", None, pyproject, "my-project/training-job")
    # sweepflow.yaml beside the config comes first.
    _write(config_dir / "train.py", "")
    registry = _write(config_dir / "sweepflow.yaml", "jobs: {my-project/training-job: {program: train.py}}")
    resolved = resolve_program(_config(job="my-project/training-job:latest"), config_dir)
    assert (resolved.program, resolved.source) == (config_dir / "train.py", registry)


def test_only_the_nearest_pyproject_counts(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", '[tool.sweepflow.jobs]\n"p/t" = {program = "t.py"}\n')
    inner = _write(tmp_path / "sub" / "pyproject.toml", '[project]\nname = "sub"\n')
    with pytest.raises(JobError, match=f"looked in {inner}"):
        resolve_program(_config(job="p/t"), tmp_path / "sub")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobs: [p/t]", r"sweepflow.yaml: jobs: must be a mapping, got a list"),
        ("jobs: {p/t: train.py}", r'jobs\["p/t"\]: must be a mapping, got \'train.py\' \(a string\)'),
        ("jobs: {p/t: {program: t.py, args: [1]}}", r'jobs\["p/t"\]\.args: is not a known key here'),
        ("jobs: {p/t: {}}", r"has neither `program` nor `command`"),
        ("jobs: {p/t: {command: []}}", r'jobs\["p/t"\]\.command: has the wrong length'),
        ("jobs: {p/t: {command: [python, '${program}']}}", r"registered in .* without a `program`"),
        ("jobs: {p/t: [", r"sweepflow.yaml: is not valid YAML: .* at line 1, column 14\. Fix: correct the file\."),
    ],
)
def test_malformed_registry(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path / "sweepflow.yaml", text)
    with pytest.raises(JobError, match=message):
        resolve_program(_config(job="p/t"), tmp_path)


# --- the three user errors ------------------------------------------------------------------------------------


def test_unknown_job(tmp_path: Path) -> None:
    fix = (
        "Fix: add it to sweepflow.yaml beside the config as jobs: {x/y: {program: train.py}}, "
        'or to pyproject.toml as [tool.sweepflow.jobs] "x/y" = {program = "train.py"}.'
    )
    with pytest.raises(JobError) as caught:
        resolve_program(_config(job="x/y:latest"), tmp_path)
    assert isinstance(caught.value, SweepflowError)
    assert str(caught.value) == (
        f"job: 'x/y:latest' is not in the local job registry (there is no sweepflow.yaml in {tmp_path} "
        f"and no pyproject.toml above it). {fix}"
    )
    registry = _write(tmp_path / "sweepflow.yaml", "jobs: {x/z: {program: train.py}}")
    with pytest.raises(JobError, match=f"registry \\(looked in {registry}\\)"):
        resolve_program(_config(job="x/y:latest"), tmp_path)


@pytest.mark.parametrize("command", [None, ["${env}", "python", "${program}", "${args}"]])
def test_nothing_to_run(tmp_path: Path, command: list[str] | None) -> None:
    with pytest.raises(JobError, match=r"^program: missing\. The command .* runs \$\{program\}.*neither `program`"):
        resolve_program(_config(command), tmp_path)


def test_command_without_program_needs_none(tmp_path: Path) -> None:
    config = _config(["python", "-m", "pkg.train", "${args}"], program="not-there.py")
    assert resolve_program(config, tmp_path) == ResolvedJob(program=None)


def test_program_missing(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"program: 'train.py' does not exist \(looked for .*train.py and .*"):
        resolve_program(_config(program="train.py"), tmp_path / "cfg")


def test_program_relative_to_config_dir_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir, cwd = tmp_path / "cfg", tmp_path / "cwd"
    _write(cwd / "train.py", "")
    monkeypatch.chdir(cwd)
    assert resolve_program(_config(program="train.py"), config_dir).program == cwd / "train.py"
    _write(config_dir / "train.py", "")
    assert resolve_program(_config(program="train.py"), config_dir).program == config_dir / "train.py"
    absolute = _config(program=str(cwd / "train.py"))
    assert resolve_program(absolute, Path("relative/elsewhere")).program == cwd / "train.py"
