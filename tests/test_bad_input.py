"""Bad input, as a hostile or careless user gives it: one clear line each, exit code != 0, no traceback, and no
change to the store. The corpus is ``tests/data/bad`` (each file's expected error in its ``expected.yaml``)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sweepflow.cli import app
from sweepflow.store import Store

BAD = Path(__file__).parent / "data" / "bad"
EXPECTED: dict[str, str] = yaml.safe_load((BAD / "expected.yaml").read_text())
LAUNCHABLE = sorted(n for n in EXPECTED if not n.startswith(("pipeline-", "registry-")))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300", **(env or {})},
    )


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return list(con.iterdump())


def test_the_corpus_is_large_and_every_file_has_its_expected_error() -> None:
    files = {p.name for p in BAD.iterdir()} - {"expected.yaml", "ok-sweep.yaml"}
    assert files == set(EXPECTED) and len(files) >= 40


def test_validate_gives_each_bad_file_its_one_line() -> None:
    result = _cli("validate", "--format", "json", *(str(BAD / name) for name in EXPECTED))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    verdicts = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    for name, expected in EXPECTED.items():
        first = verdicts[name]["errors"][0]
        line = f"{first['path']}: {first['message']}" if first["path"] else first["message"]
        assert not verdicts[name]["valid"] and line.startswith(expected), (name, line)
        assert "\n" not in line, (name, line)


def test_launching_a_bad_config_fails_in_one_line_and_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    with Store(f"sqlite:///{db}") as store:  # a store with something in it, to see that nothing changes
        store.create_sweep("k", "p", {"method": "grid"}, run_cap=1)
    before = _dump(db)
    runner = CliRunner()
    for name in LAUNCHABLE:
        result = runner.invoke(app, ["launch-sweep", str(BAD / name), "--store", f"sqlite:///{db}"])
        assert result.exit_code == 1, (name, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.exception)
        assert result.stderr.startswith("error ") and "Traceback" not in result.output, (name, result.stderr)
    assert _dump(db) == before


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["sweeps"], {"SWEEPFLOW_LEASE_TTL": "abc"}, "SWEEPFLOW_LEASE_TTL='abc': input should be a valid number"),
        (["sweeps"], {"SWEEPFLOW_POLL_INTERVAL": "-1"}, "SWEEPFLOW_POLL_INTERVAL='-1': input should be greater than 0"),
        (["sweeps"], {"SWEEPFLOW_HOME": "{file}"}, "SWEEPFLOW_HOME='{file}': is a file, not a folder"),
        (["sweeps", "--store", "postgresql://db/x"], {}, "the store supports SQLite URLs only for now"),
        (["sweeps", "--store", "sqlite:///{file}/x.db"], {}, "cannot create the store at {file}/x.db"),
        (["launch-agent", "--queue", "q", "--max-jobs", "0"], {}, "Invalid value for '--max-jobs'"),
        (["launch-agent", "--queue", " "], {}, "--queue: give the name of a queue"),
        (["queue", "gpu", "--cost-per-hour", "-5"], {}, "Invalid value for '--cost-per-hour'"),
        (["sweeps", "--format", "xml"], {}, "Invalid value for '--format'"),
        (["runs", "nope", "--format", "yaml"], {}, "Invalid value for '--format'"),
        (["status", "nope"], {}, "no sweep 'nope' in"),
        (["sweep", "nope", "--stop", "--cancel"], {}, "give exactly one of --stop, --cancel, --pause, --resume"),
    ],
)
def test_bad_commands_and_settings_fail_in_one_line(tmp_path: Path, args: list[str], env: dict, says: str) -> None:
    file = tmp_path / "a-file"
    file.write_text("")
    home = tmp_path / "home"
    fill = {"file": str(file)}
    result = _cli(
        *(a.format(**fill) for a in args),
        env={"SWEEPFLOW_HOME": str(home)} | {k: v.format(**fill) for k, v in env.items()},
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert says.format(**fill) in " ".join((result.stderr + result.stdout).split()), result.stderr
    assert not (home / "sweepflow.db").exists() or args[0] == "status"  # refused before any store was made
