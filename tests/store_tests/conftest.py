"""Store fixtures: every contract test runs on an in-memory database and on a WAL file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sweepflow.store import Store, get_store


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = "sqlite://" if request.param == "memory" else f"sqlite:///{tmp_path / 'store.db'}"
    with get_store(url) as opened:
        yield opened


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh database file, for tests that open it from several processes."""
    return f"sqlite:///{tmp_path / 'shared.db'}"
