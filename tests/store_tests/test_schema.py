"""Opening a store: URL resolution, SQLite settings, schema creation and the version check."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sweepflow.store import (
    SCHEMA_VERSION,
    RunState,
    SchemaVersionError,
    Store,
    StoreError,
    SweepState,
    default_url,
    get_store,
)

ASSETS = Path(__file__).parent / "assets"


def _schema(path: Path) -> dict[str, object]:
    """What a database's schema is, not how its SQL was spelled (a migration's ALTER TABLE spells a column
    differently from a fresh CREATE TABLE): each table's columns, indexes (with their columns) and triggers."""
    with sqlite3.connect(path) as con:
        out: dict[str, object] = {}
        for kind, name, table, sql in con.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ):
            if kind == "table":
                out[name] = con.execute(f"PRAGMA table_xinfo({name})").fetchall()
            elif kind == "index":
                found = [i[1:] for i in con.execute(f"PRAGMA index_list({table})") if i[1] == name]  # not its seq
                out[name] = (table, found, con.execute(f"PRAGMA index_xinfo({name})").fetchall())
            else:
                out[name] = sql
    con.close()
    return out


def test_none_is_the_file_under_sweepflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "not" / "yet" / "there"
    monkeypatch.setenv("SWEEPFLOW_HOME", str(home))
    with get_store() as store:
        assert store.url == f"sqlite:///{home / 'sweepflow.db'}"
        store.create_sweep("k", "p", {})
    assert (home / "sweepflow.db").is_file()  # the directory was created on first use
    with get_store(None) as again:
        assert again.find_sweep("k") is not None


def test_sweepflow_home_defaults_to_dot_sweepflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEPFLOW_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_url() == f"sqlite:///{tmp_path / '.sweepflow' / 'sweepflow.db'}"


def test_urls_and_instances(tmp_path: Path) -> None:
    with get_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        assert get_store(store) is store
    with get_store("sqlite://") as memory, get_store("sqlite:///:memory:") as other:
        memory.create_sweep("k", "p", {})
        assert other.find_sweep("k") is None  # each in-memory store is its own database
        assert memory.find_sweep("k") is not None
    with pytest.raises(StoreError, match="SQLite URLs only"):
        get_store("postgresql://localhost/sweepflow")


def test_file_connections_use_wal_fk_and_a_busy_timeout(tmp_path: Path) -> None:
    with get_store(f"sqlite:///{tmp_path / 's.db'}") as store, store._engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 30_000
        assert pragma("synchronous") == 1  # NORMAL: WAL's crash-safe setting


def test_schema_creation_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(f"sqlite:///{path}").close()
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    con.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    con.close()
    with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION + 1}, newer than .*\\({SCHEMA_VERSION}\\)"):
        get_store(f"sqlite:///{path}")


def test_an_older_version_without_a_migration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "past.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at FLOAT NOT NULL)")
        con.execute("INSERT INTO schema_version VALUES (0, 0)")
    con.close()
    with pytest.raises(SchemaVersionError, match="no upgrade path"):
        get_store(f"sqlite:///{path}")


def _asset_db(tmp_path: Path, version: int) -> Path:
    path = tmp_path / f"v{version}.db"
    with sqlite3.connect(path) as con:
        con.executescript((ASSETS / f"store_v{version}.sql").read_text())
    con.close()
    return path


@pytest.fixture
def v1_db(tmp_path: Path) -> Path:
    return _asset_db(tmp_path, 1)


@pytest.fixture
def v2_db(tmp_path: Path) -> Path:
    return _asset_db(tmp_path, 2)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_migrated_database_has_the_schema_of_a_fresh_one(tmp_path: Path, version: int) -> None:
    """Changing a table without bumping SCHEMA_VERSION and adding a migration (and an asset of the version it
    migrates from) fails here."""
    assert SCHEMA_VERSION == 4  # the asset of every earlier version is in assets/
    old = _asset_db(tmp_path, version)
    Store(f"sqlite:///{old}").close()
    Store(f"sqlite:///{tmp_path / 'fresh.db'}").close()
    assert _schema(old) == _schema(tmp_path / "fresh.db")


def test_version_3_agents_serve_their_whole_queue(tmp_path: Path) -> None:
    """Before v4 every agent served its whole queue: a migrated store's agents still do, and still count as the
    queue's servers; a sweep's own agent (v4) does not."""
    with get_store(f"sqlite:///{_asset_db(tmp_path, 3)}") as store:
        assert store.schema_version == 4 and store.check() == []
        [old] = store.live_agents("gpu", now=1800000002.0)
        assert (old.id, old.sweep_id) == ("agent-1", None)
        sweep = store.find_sweep("v3/stage")
        store.register_agent("gpu", agent_id="own", sweep_id=sweep.id, now=1800000002.0)
        assert [a.id for a in store.live_agents("gpu", now=1800000002.0)] == ["agent-1", "own"]
        assert [a.id for a in store.live_agents("gpu", now=1800000002.0, queue_wide=True)] == ["agent-1"]


def test_version_2_gains_the_change_counter_and_a_view_reads_what_changed(v2_db: Path) -> None:
    """v3 numbers every write to a run (runs.change_seq): a migrated store's runs are read whole once, then only
    as they change."""
    with get_store(f"sqlite:///{v2_db}") as store:
        assert store.schema_version == SCHEMA_VERSION and store.check() == []
        sweep = store.find_sweep("v2/stage")
        first = store.run_changes(sweep.id, since=None)
        done, running, waiting = first.runs
        assert first.runs == store.runs(sweep.id)
        assert [r.state for r in first.runs] == [RunState.FINISHED, RunState.RUNNING, RunState.PENDING]
        assert store.run_changes(sweep.id, since=first.since).runs == []
        item = store.claims()[0].item
        store.mark_run_finished(running.id, "finished", summary={"loss": 0.25}, item_id=item.id)
        fourth = store.add_run(sweep.id, {"lr": 0.4}, queue="gpu")
        changed = store.run_changes(sweep.id, since=first.since)
        assert [(r.id, r.state) for r in changed.runs] == [
            (running.id, RunState.FINISHED),
            (fourth.id, RunState.PENDING),
        ]
        assert changed.runs[0].summary == {"loss": 0.25} and changed.since > first.since
        assert store.get_run(done.id) == done and store.get_run(waiting.id) == waiting


def test_version_1_state_names_become_wandbs(v1_db: Path) -> None:
    """v1 wrote sweepflow's own names (queued, stopped, cancelled); v2 reads W&B's (pending, killed, canceled)."""
    with sqlite3.connect(v1_db) as con:
        sweep_id = con.execute("SELECT id FROM sweeps").fetchone()[0]
        con.execute(
            "INSERT INTO sweeps (id, key, project, config, state, created_at, updated_at) VALUES "
            "('s2', 'k2', 'p', '{}', 'cancelled', 0, 0), ('s3', 'k3', 'p', '{}', 'stopped', 0, 0)"
        )
        con.execute("UPDATE runs SET state = 'stopped', stop_reason = 'hyperband' WHERE state = 'finished'")
    con.close()
    with get_store(f"sqlite:///{v1_db}") as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.get_sweep("s2").state is SweepState.CANCELED
        assert store.get_sweep("s3").state is SweepState.FINISHED
        states = {r.state: r.stop_reason for r in store.runs(sweep_id)}
        assert states == {RunState.KILLED: "hyperband", RunState.PENDING: None}


def test_a_version_1_database_opens_and_works(v1_db: Path) -> None:
    with get_store(f"sqlite:///{v1_db}") as store:
        assert store.check() == []
        sweep = store.find_sweep("v1/stage")
        assert sweep.state is SweepState.RUNNING and sweep.run_cap == 3 and sweep.lease_owner == "ctl"
        assert sweep.prior_runs == [{"config": {"lr": 0.5}, "summary": {"loss": 0.3}}]
        done, waiting = store.runs(sweep.id)
        assert (done.state, done.summary, done.search_info) == (RunState.FINISHED, {"loss": 0.5}, {"method": "grid"})
        assert store.history(done.id) == [{"_step": 0, "loss": 1.0}, {"_step": 1, "loss": 0.5}]
        assert waiting.state is RunState.PENDING
        assert store.get_queue("gpu").resource_args == {"gpus": 1}
        claim = store.claim_next("gpu", "agent-2", lease_ttl=30)
        assert claim.run.id == waiting.id and claim.item.id == 2
        third = store.add_run(sweep.id, {"lr": 0.5}, queue="gpu")
        assert third.number == 3 and max(i.id for i in store.queue_items("gpu")) == 3  # AUTOINCREMENT kept
