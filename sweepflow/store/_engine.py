"""Opening SQLite the deliberate way: WAL, a busy timeout, foreign keys, and BEGIN issued by us.

Why each piece is here:

* Python's ``sqlite3`` (3.11) runs in "legacy transaction control": it emits BEGIN lazily, only before
  INSERT/UPDATE/DELETE. A claim that SELECTs a pending item and then UPDATEs it would read *outside* any
  transaction, and two agents could pick the same item. So the driver's own BEGIN is switched off
  (``isolation_level = None``) and a ``begin`` event emits ours: ``BEGIN IMMEDIATE`` for writes (the write lock
  is taken up front, so the SELECT and the UPDATE are one atomic step) and plain ``BEGIN`` for reads (a
  consistent WAL snapshot across several SELECTs). sqlite3 still sends COMMIT / ROLLBACK correctly.
* ``BEGIN IMMEDIATE`` also avoids the WAL trap where a *deferred* transaction that read first and then
  writes gets ``SQLITE_BUSY`` at once, without waiting on the busy timeout, if someone committed meanwhile.
* WAL lets readers (the CLI, the controller's polls) run while an agent writes. ``synchronous=NORMAL`` is the
  WAL setting SQLite recommends: a crash of the *process* (kill -9) never loses or tears a committed
  transaction; only a power cut can roll back the last few commits, and the file stays consistent.
* The pool: each process opens its own engine (controller, agents, CLI); a small :class:`QueuePool` keeps a
  connection per thread in use. Connections must not cross ``fork()``: the child drops the inherited pool
  without closing the parent's connections (SQLAlchemy's documented recipe), so a forked agent is safe too.
* In-memory URLs get one shared connection (:class:`StaticPool`): every :class:`Store` method then sees the
  same database. Good for fast single-process tests, not for concurrency.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool, StaticPool

from sweepflow.private import private_file
from sweepflow.settings import Settings
from sweepflow.store._errors import StoreError

#: How long a writer waits for another process's write transaction before giving up (seconds).
BUSY_TIMEOUT_S = 30.0
#: Execution option telling the ``begin`` hook which BEGIN to send.
BEGIN_OPTION = "sweepflow_begin"

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}


def default_url() -> str:
    """The store URL of :class:`~sweepflow.settings.Settings`: ``$SWEEPFLOW_STORE_URL``, else
    ``sqlite:///$SWEEPFLOW_HOME/sweepflow.db`` (home defaults to ``~/.sweepflow``)."""
    return Settings().url


def is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def create_sqlite_engine(url_text: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine for a SQLite URL, configured as the module docstring explains."""
    url = make_url(url_text)
    if url.drivername not in _SQLITE_DRIVERS:
        raise StoreError(
            f"the store supports SQLite URLs only for now (sqlite:///path/to/file.db), not {url.drivername!r}."
        )
    memory = is_memory(url)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool
    else:
        database = Path(url.database).expanduser()  # type: ignore[arg-type]
        try:
            private_file(database)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store at {database}: {exc.strerror}. Fix: point SWEEPFLOW_HOME or --store "
                "at a folder you can write to."
            ) from None
        kwargs.update(poolclass=QueuePool, pool_size=2, max_overflow=8)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we send BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            if not memory:
                # journal_mode is stored in the file; switching needs a lock, so only ask when it is not WAL yet.
                if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    if not memory:
        ref = weakref.ref(engine)

        def _after_fork() -> None:
            live = ref()
            if live is not None:
                live.dispose(close=False)

        os.register_at_fork(after_in_child=_after_fork)
    return engine
