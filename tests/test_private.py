"""sweepflow's home, store and run folders are the owner's alone, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sweepflow.local.runner import RunProcess, RunSpec
from sweepflow.store import Store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_store_and_run_folders_are_private_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)  # the worst case: everything would be world-writable
    try:
        home = tmp_path / "home"
        Store(f"sqlite:///{home / 'sweepflow.db'}").close()
        run_dir = home / "runs" / "s1" / "r1"
        proc = RunProcess.start(RunSpec(run_id="r1", argv=["true"], params={"x": 1}, project="p", run_dir=run_dir))
        proc.proc.wait()
        proc.close()
    finally:
        os.umask(old)
    assert _mode(home) == 0o700 and _mode(home / "sweepflow.db") == 0o600
    assert {_mode(p) for p in (home / "runs", home / "runs" / "s1", run_dir)} == {0o700}
    wal = home / "sweepflow.db-wal"
    assert not wal.exists() or _mode(wal) == 0o600
