"""Files only their owner can read: sweepflow's home, its store and run folders hold every config and metric
(and what a run logs), so they are created 0700 / 0600 whatever the umask, as ssh and gnupg do with theirs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 folders; an existing folder is left as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir()
            os.chmod(folder, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 unless it exists (SQLite then gives its -wal and -shm files the same mode)."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
    return path
