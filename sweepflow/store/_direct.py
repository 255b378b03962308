"""The statements of a scheduling decision, compiled once and sent straight to ``sqlite3`` (issue 13, "Scale").

A controller reads what changed, queues a run and reads its sweep on every decision. Through SQLAlchemy Core each
of those statements costs ~0.2-0.5 ms of Python before SQLite sees it (building the statement, its cache key,
the result's rows) against ~10-50 µs of SQLite's own work; at 500 runs in flight that was most of a decision
(``bench/bench_scale.py``). Here the same Core statements (the tables stay the one definition of the schema)
are compiled to SQL text once, at import, and executed on the driver connection of the store's own transaction,
so they keep its BEGIN IMMEDIATE and its snapshot. What this skips is SQLAlchemy's type processing, so JSON
columns are encoded and decoded here, by the store's own :func:`dumps` / :func:`loads`.

Only statements on that path belong here: everything else goes through Core, where it is easier to read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import fields
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, func, literal_column, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from sweepflow.store import _schema as t
from sweepflow.store._json import loads
from sweepflow.store._records import Run, RunState, Sweep, SweepState

_DIALECT = sqlite.dialect(paramstyle="named")  # ":name" parameters, bound from a dict
_R = TypeVar("_R", Run, Sweep)


def compiled(statement: ClauseElement) -> str:
    """The statement's SQL text, once: its parameters are the ``bindparam`` names (values are not compiled in)."""
    return str(statement.compile(dialect=_DIALECT))


def execute(conn: Connection, sql: str, params: Mapping[str, Any]) -> sqlite3.Cursor:
    """Run compiled SQL on the connection's own ``sqlite3`` connection, inside its transaction. A driver error
    is raised as SQLAlchemy would raise it (``OperationalError`` for a busy database...), so callers handle the
    direct path's errors as every other statement's."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    try:
        return driver.execute(sql, params)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, dict(params), exc, sqlite3.Error) from exc


def _decoder(kind: type[_R], table: Any, **enums: type[StrEnum]) -> Callable[[list[Any]], list[_R]]:
    """Rows of ``table`` (all its columns, in its order, as ``select(table)`` reads them) as ``kind`` records."""
    names = [column.name for column in table.c]
    wanted = {f.name for f in fields(kind)}
    json = {column.name for column in table.c if isinstance(column.type, t.JSONText)}

    def convert(name: str) -> Callable[[Any], Any] | None:
        if name in json:
            return lambda value: None if value is None else loads(value)
        return enums.get(name)

    plan = [(i, name, convert(name)) for i, name in enumerate(names) if name in wanted]

    def decode(rows: list[Any]) -> list[_R]:
        return [kind(**{name: row[i] if fn is None else fn(row[i]) for i, name, fn in plan}) for row in rows]

    return decode


decode_runs = _decoder(Run, t.runs, state=RunState)
decode_sweeps = _decoder(Sweep, t.sweeps, state=SweepState)
_CHANGE_SEQ = [c.name for c in t.runs.c].index("change_seq")


def runs_and_top(cursor: sqlite3.Cursor) -> tuple[list[Run], int]:
    """The runs a ``select(t.runs)`` cursor holds, and the highest change counter among them (0: none)."""
    rows = cursor.fetchall()
    return decode_runs(rows), max((row[_CHANGE_SEQ] for row in rows), default=0)


def sweeps_of(cursor: sqlite3.Cursor) -> list[Sweep]:
    return decode_sweeps(cursor.fetchall())


_r, _sw = t.runs.c, t.sweeps.c

#: :meth:`Store.get_sweep`: the sweep (every column).
SWEEP = compiled(select(t.sweeps).where(_sw.id == bindparam("sweep_id")))

#: :meth:`Store.run_changes`: the sweep's runs by number, all of them or those written since a change counter.
RUNS = compiled(select(t.runs).where(_r.sweep_id == bindparam("sweep_id")).order_by(_r.number))
RUNS_SINCE = compiled(
    select(t.runs).where(_r.sweep_id == bindparam("sweep_id"), _r.change_seq > bindparam("since")).order_by(_r.number)
)

#: :meth:`Store.add_run`: what its guards read, in one statement (the sweep's state, cap and lease; a run with the
#: same config; the highest number; the queue's default priority).
ADD_RUN_CHECKS = compiled(
    select(
        _sw.state,
        _sw.run_cap,
        _sw.lease_owner,
        _sw.lease_expires_at,
        select(_r.id)
        .where(_r.sweep_id == bindparam("sweep_id"), _r.config_hash == bindparam("digest"))
        .scalar_subquery(),
        select(func.coalesce(func.max(_r.number), literal_column("0")))
        .where(_r.sweep_id == bindparam("sweep_id"))
        .scalar_subquery(),
        select(t.queues.c.priority).where(t.queues.c.name == bindparam("queue")).scalar_subquery(),
    ).where(_sw.id == bindparam("sweep_id"))
)

#: A new run (JSON columns given as their text; the change counter is the database's); nothing if the random id
#: is taken.
RUN_INSERT_COLUMNS = [c.name for c in t.runs.c if c.name != "change_seq"]
INSERT_RUN = compiled(
    insert(t.runs)
    .values({name: bindparam(name) for name in RUN_INSERT_COLUMNS})
    .on_conflict_do_nothing(index_elements=["id"])
)

#: A queue item for a run.
INSERT_ITEM = compiled(
    insert(t.queue_items).values(
        {name: bindparam(name) for name in ("queue", "run_id", "priority", "enqueued_at", "state")}
    )
)
