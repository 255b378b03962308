"""The store: every state change of the local engine, each one SQLite transaction.

A ``kill -9`` between two methods loses nothing committed; a ``kill -9`` inside one rolls it back whole. So each
method that changes state does all of its writes in one ``BEGIN IMMEDIATE`` transaction (the write lock is taken
first, so the checks it makes still hold when it writes) and every read-only method reads one WAL snapshot.

Time is an argument: methods that compare or record times take ``now`` (Unix seconds, default
``time.time()``), so tests drive lease expiry without sleeping.
"""

from __future__ import annotations

import os
import secrets
import socket
import string
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, Text, and_, delete, func, inspect, or_, select, type_coerce, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.types import NullType

from sweepflow.store import _direct as direct
from sweepflow.store import _schema as t
from sweepflow.store._engine import BEGIN_OPTION, BUSY_TIMEOUT_S, create_sqlite_engine, default_url
from sweepflow.store._errors import (
    DuplicateConfigError,
    LeaseLostError,
    NotFoundError,
    RunCapReachedError,
    RunRefusedError,
    SchemaVersionError,
    StoreError,
    SweepInactiveError,
)
from sweepflow.store._json import config_hash, dumps, loads
from sweepflow.store._records import (
    REQUEUEABLE,
    Agent,
    Claim,
    Heartbeat,
    ItemState,
    Queue,
    QueueItem,
    Run,
    RunChanges,
    RunState,
    Sweep,
    SweepState,
    priority_value,
)

#: Why the reaper ended a run (the agent holding it stopped heart-beating).
LEASE_EXPIRED_REASON = "agent lost (lease expired)"
#: An agent silent for longer than this is not live (seconds).
AGENT_STALE_AFTER_S = 60.0

_ID_ALPHABET = string.ascii_lowercase + string.digits
_E = TypeVar("_E", SweepState, RunState, ItemState)
_R = TypeVar("_R", Sweep, Run, QueueItem, Queue, Agent)


def new_id(length: int = 8) -> str:
    """A W&B-style id: 8 random lowercase letters and digits (36^8 ≈ 2.8e12 values)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


def _enum(kind: type[_E], value: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(s.value for s in kind)
        raise StoreError(f"{value!r} is not a {kind.__name__}; expected one of: {allowed}.") from None


def _record(kind: type[_R], row: Row[Any], **enums: type[StrEnum]) -> _R:
    """A row as its frozen record: columns map to fields by name; ``enums`` names the enum-typed ones."""
    m = row._mapping
    return kind(**{f.name: enums[f.name](m[f.name]) if f.name in enums else m[f.name] for f in fields(kind)})


def _sweep(row: Row[Any]) -> Sweep:
    return _record(Sweep, row, state=SweepState)


def _run(row: Row[Any]) -> Run:
    return _record(Run, row, state=RunState)


def _item(row: Row[Any]) -> QueueItem:
    return _record(QueueItem, row, state=ItemState)


def _queue(row: Row[Any]) -> Queue:
    return _record(Queue, row)


def _agent(row: Row[Any]) -> Agent:
    return _record(Agent, row)


class Store:
    """The durable state of the local engine: sweeps, runs, their history, queues, queue items and agents.

    Contract (what a caller may rely on):

    * Every method is one transaction; methods that change state serialize on SQLite's write lock, so any
      number of processes (controllers, agents, the CLI) may share one database file. Reads never block.
    * Records returned are frozen snapshots; nothing the caller does to them reaches the store.
    * Guards are checked inside the writing transaction, so they hold under races: a sweep key creates one
      sweep, an item is claimed once, ``run_cap`` and "never the same config twice" cannot be broken.
    * A method whose guard fails returns ``None`` (or ``False``) and writes nothing; refusals the caller must
      act on (:class:`DuplicateConfigError`, :class:`RunCapReachedError`...) raise.

    Example::

        store = get_store("sqlite:///:memory:")
        sweep, created = store.create_sweep("nightly/coarse", "digits", {"method": "grid", "run_cap": 2})
        run = store.add_run(sweep.id, {"lr": 0.1}, queue="default")
        claim = store.claim_next("default", "agent-1", lease_ttl=60)
        store.mark_run_started(run.id, "agent-1", item_id=claim.item.id)
        store.mark_run_finished(run.id, "finished", exit_code=0, summary={"loss": 0.2}, item_id=claim.item.id)
    """

    def __init__(self, url: str | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.url = url or default_url()
        self._engine = create_sqlite_engine(self.url, busy_timeout_s=busy_timeout_s)
        self._writer = self._engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        self._version_conn: tuple[int, Any] | None = None  # (pid, connection) that data_version() asks
        self._forked_version_conns: list[tuple[int, Any]] = []
        self._ensure_schema()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        if self._version_conn is not None:
            self._version_conn[1].close()
            self._version_conn = None
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception)."""
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One consistent snapshot for several SELECTs."""
        with self._engine.begin() as conn:
            yield conn

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the database (this process's other
        store calls included): a waiting loop's cheap "has anything changed?" (SQLite's ``PRAGMA data_version``
        on a connection kept for it; no transaction, no SQL compilation, microseconds).

        Compare two values for equality only. An in-memory store has a single connection, so its value never
        changes: nothing outside this process can write to it.
        """
        pid = os.getpid()
        if self._version_conn is None or self._version_conn[0] != pid:
            if self._version_conn is not None:  # forked: the parent's connection is neither used nor closed here
                self._forked_version_conns.append(self._version_conn)
            self._version_conn = (pid, self._engine.raw_connection())
        cursor = self._version_conn[1].cursor()
        try:
            return int(cursor.execute("PRAGMA data_version").fetchone()[0])
        finally:
            cursor.close()

    def _ensure_schema(self) -> None:
        with self._read() as conn:
            version = self._schema_version(conn)
        if version == t.SCHEMA_VERSION:
            return
        self._check_version(version)
        with self._write() as conn:  # re-read under the write lock: another process may have created it
            version = self._schema_version(conn)
            self._check_version(version)
            if version is None:
                t.metadata.create_all(conn)
                conn.execute(insert(t.schema_version).values(version=t.SCHEMA_VERSION, applied_at=time.time()))
            elif version < t.SCHEMA_VERSION:
                for step in range(version, t.SCHEMA_VERSION):
                    for statement in t.MIGRATIONS[step]:
                        conn.exec_driver_sql(statement)
                    conn.execute(insert(t.schema_version).values(version=step + 1, applied_at=time.time()))

    @staticmethod
    def _schema_version(conn: Connection) -> int | None:
        if not inspect(conn).has_table("schema_version"):
            return None
        return conn.scalar(select(func.max(t.schema_version.c.version)))

    def _check_version(self, version: int | None) -> None:
        if version is None or version == t.SCHEMA_VERSION:
            return
        if version < t.SCHEMA_VERSION and all(step in t.MIGRATIONS for step in range(version, t.SCHEMA_VERSION)):
            return  # upgraded in place by _ensure_schema
        if version > t.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.url} has store schema version {version}, newer than this sweepflow understands "
                f"({t.SCHEMA_VERSION}). Upgrade sweepflow, or point SWEEPFLOW_HOME / --store at another database."
            )
        raise SchemaVersionError(
            f"{self.url} has store schema version {version}; no upgrade path to {t.SCHEMA_VERSION}."
        )

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            version = self._schema_version(conn)
        assert version is not None
        return version

    # -- sweeps -----------------------------------------------------------------------------------------------

    def create_sweep(
        self,
        key: str | None,
        project: str,
        config: Mapping[str, Any],
        *,
        run_cap: int | None = None,
        prior_runs: list[Any] | None = None,
        now: float | None = None,
    ) -> tuple[Sweep, bool]:
        """Get or create the sweep with idempotency ``key``; return it and whether this call created it.

        With the same key, any number of racing processes get the same sweep and exactly one sees
        ``created=True``; the existing sweep is returned as is (its config is not compared or changed).
        ``key=None`` always creates. ``run_cap`` defaults to ``config["run_cap"]``.
        """
        now = _now(now)
        if run_cap is None:
            run_cap = config.get("run_cap")
        if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 0):
            raise StoreError(f"run_cap must be a non-negative integer, not {run_cap!r}.")
        values = {
            "key": key,
            "project": project,
            "config": dict(config),
            "state": SweepState.PENDING.value,
            "run_cap": run_cap,
            "created_at": now,
            "updated_at": now,
            "prior_runs": prior_runs,
        }
        with self._write() as conn:
            while True:
                sweep_id = new_id()
                # DO NOTHING covers both the key and (astronomically rarely) the random id already existing.
                inserted = conn.execute(insert(t.sweeps).values(id=sweep_id, **values).on_conflict_do_nothing())
                if key is None:
                    if inserted.rowcount == 1:
                        row = conn.execute(select(t.sweeps).where(t.sweeps.c.id == sweep_id)).one()
                        return _sweep(row), True
                    continue
                row = conn.execute(select(t.sweeps).where(t.sweeps.c.key == key)).one_or_none()
                if row is not None:
                    return _sweep(row), inserted.rowcount == 1

    def update_sweep(
        self, sweep_id: str, config: Mapping[str, Any], *, run_cap: int | None, now: float | None = None
    ) -> Sweep:
        """Replace what the sweep was launched with (its config and run cap): a resume with new scheduler
        settings. The caller decides which changes are allowed; the controller reads both on its next tick."""
        if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 0):
            raise StoreError(f"run_cap must be a non-negative integer, not {run_cap!r}.")
        with self._write() as conn:
            self._sweep_row(conn, sweep_id)
            conn.execute(
                update(t.sweeps)
                .where(t.sweeps.c.id == sweep_id)
                .values(config=dict(config), run_cap=run_cap, updated_at=_now(now))
            )
            return _sweep(self._sweep_row(conn, sweep_id))

    def get_sweep(self, sweep_id: str) -> Sweep | None:
        with self._read() as conn:  # a controller reads its sweep on every decision: the direct path
            found = direct.sweeps_of(direct.execute(conn, direct.SWEEP, {"sweep_id": sweep_id}))
        return found[0] if found else None

    def find_sweep(self, key: str) -> Sweep | None:
        """The sweep created with idempotency ``key``, if any."""
        with self._read() as conn:
            row = conn.execute(select(t.sweeps).where(t.sweeps.c.key == key)).one_or_none()
        return None if row is None else _sweep(row)

    def list_sweeps(self, *, project: str | None = None, states: Collection[str] | None = None) -> list[Sweep]:
        """Sweeps, oldest first, optionally of one project and / or in some states."""
        query = select(t.sweeps).order_by(t.sweeps.c.created_at, t.sweeps.c.id)
        if project is not None:
            query = query.where(t.sweeps.c.project == project)
        if states is not None:
            query = query.where(t.sweeps.c.state.in_([_enum(SweepState, s).value for s in states]))
        with self._read() as conn:
            return [_sweep(row) for row in conn.execute(query)]

    def set_sweep_state(
        self,
        sweep_id: str,
        state: str,
        reason: str | None = None,
        *,
        expect: Collection[str] | None = None,
        now: float | None = None,
    ) -> Sweep | None:
        """Move the sweep to ``state``; with ``expect``, only from one of those states (else ``None``).

        Ending the sweep (finished / canceled / failed) also ends its pending runs as ``killed`` in the same
        transaction, so no run of an ended sweep is ever left waiting; ``canceled`` also asks its
        running runs to stop.
        """
        state = _enum(SweepState, state)
        expected = None if expect is None else {_enum(SweepState, s) for s in expect}
        now = _now(now)
        with self._write() as conn:
            current = self._sweep_row(conn, sweep_id)
            if expected is not None and SweepState(current.state) not in expected:
                return None
            conn.execute(
                update(t.sweeps)
                .where(t.sweeps.c.id == sweep_id)
                .values(state=state.value, state_reason=reason, updated_at=now)
            )
            if state.is_terminal:
                why = f"sweep {state.value}" + (f": {reason}" if reason else "")
                queued = select(t.runs.c.id).where(
                    t.runs.c.sweep_id == sweep_id, t.runs.c.state == RunState.PENDING.value
                )
                conn.execute(
                    update(t.queue_items)
                    .where(t.queue_items.c.run_id.in_(queued), t.queue_items.c.state != ItemState.DONE.value)
                    .values(state=ItemState.DONE.value)
                )
                conn.execute(
                    update(t.runs)
                    .where(t.runs.c.sweep_id == sweep_id, t.runs.c.state == RunState.PENDING.value)
                    .values(state=RunState.KILLED.value, stop_reason=why, ended_at=now)
                )
                if state is SweepState.CANCELED:
                    conn.execute(
                        update(t.runs)
                        .where(
                            t.runs.c.sweep_id == sweep_id,
                            t.runs.c.state == RunState.RUNNING.value,
                            t.runs.c.stop_requested.is_(None),
                        )
                        .values(stop_requested=why)
                    )
            return _sweep(self._sweep_row(conn, sweep_id))

    @staticmethod
    def _sweep_row(conn: Connection, sweep_id: str) -> Row[Any]:
        row = conn.execute(select(t.sweeps).where(t.sweeps.c.id == sweep_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"no sweep with id {sweep_id!r}.")
        return row

    def acquire_controller_lease(
        self, sweep_id: str, owner: str, ttl: float, *, replacing: str | None = None, now: float | None = None
    ) -> bool:
        """Take or renew the right to drive the sweep for ``ttl`` seconds.

        Succeeds if nobody holds it, its holder's lease expired, ``owner`` already holds it (a renewal), or it is
        held by ``replacing``: a holder the caller knows is dead (a process of this machine that is gone), so the
        sweep need not wait out its lease.
        """
        now = _now(now)
        lease = t.sweeps.c
        holders = [owner] if replacing is None else [owner, replacing]
        with self._write() as conn:
            done = conn.execute(
                update(t.sweeps)
                .where(
                    lease.id == sweep_id,
                    or_(lease.lease_owner.is_(None), lease.lease_owner.in_(holders), lease.lease_expires_at <= now),
                )
                .values(lease_owner=owner, lease_expires_at=now + ttl)
            )
            if done.rowcount == 0:
                self._sweep_row(conn, sweep_id)  # unknown sweep → NotFoundError, else someone else holds it
            return done.rowcount == 1

    def release_controller_lease(self, sweep_id: str, owner: str) -> bool:
        """Give the lease up, if ``owner`` holds it (expired or not)."""
        with self._write() as conn:
            done = conn.execute(
                update(t.sweeps)
                .where(t.sweeps.c.id == sweep_id, t.sweeps.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
            return done.rowcount == 1

    # -- runs -------------------------------------------------------------------------------------------------

    def add_run(
        self,
        sweep_id: str,
        config: Mapping[str, Any],
        *,
        queue: str,
        priority: int | str | None = None,
        search_info: Mapping[str, Any] | None = None,
        owner: str | None = None,
        now: float | None = None,
    ) -> Run:
        """Queue a new run of the sweep: the run (state ``pending``) and its queue item, together.

        ``config`` is the chosen ``{param: value}``. ``priority`` defaults to the queue's. With ``owner``, the
        caller must hold the sweep's controller lease (a controller that lost it cannot enqueue). The queue is
        created with defaults if it does not exist.

        Raises:
            DuplicateConfigError: the sweep already has a run with this config (1 and 1.0 are equal).
            RunCapReachedError: the sweep already has ``run_cap`` runs, whatever their states.
            SweepInactiveError: the sweep is paused or has ended.
            LeaseLostError: ``owner`` was given and does not hold a live lease.
            NotFoundError: no such sweep.
        """
        now = _now(now)
        config = dict(config)
        digest = config_hash(config)
        # A controller queues a run per decision: what the guards read is one statement, a colliding random id
        # is retried rather than looked up first, and the statements take the direct path (store/_direct.py).
        with self._write() as conn:
            found = direct.execute(
                conn, direct.ADD_RUN_CHECKS, {"sweep_id": sweep_id, "digest": digest, "queue": queue}
            ).fetchone()
            if found is None:
                raise NotFoundError(f"no sweep with id {sweep_id!r}.")
            state, run_cap, lease_owner, lease_expires_at, duplicate, top, default_priority = found
            self._check_can_enqueue(sweep_id, SweepState(state), lease_owner, lease_expires_at, owner, now)
            if duplicate is not None:
                raise DuplicateConfigError(sweep_id, duplicate)
            number = top + 1
            if run_cap is not None and number > run_cap:
                raise RunCapReachedError(sweep_id, run_cap)
            if default_priority is None:  # a queue named for the first time
                default_priority = self._ensure_queue_row(conn, queue, now)
            values: dict[str, Any] = {
                "sweep_id": sweep_id,
                "number": number,
                "queue": queue,
                "config": config,
                "config_hash": digest,
                "state": RunState.PENDING.value,
                "attempt": 1,
                "summary": {},
                "queued_at": now,
                "search_info": None if search_info is None else dict(search_info),
            }
            info = values["search_info"]  # the JSON columns as the text they are stored as (None: SQL NULL)
            texts = {"config": dumps(config), "summary": "{}", "search_info": None if info is None else dumps(info)}
            row = {**dict.fromkeys(direct.RUN_INSERT_COLUMNS), **values, **texts}
            while True:  # we hold the write lock: an id that is free now stays free
                run_id = row["id"] = new_id()
                if direct.execute(conn, direct.INSERT_RUN, row).rowcount == 1:
                    break
            self._enqueue(conn, queue, run_id, default_priority if priority is None else priority, now)
        # The row as a read would return it (JSON columns round-trip through their text), without reading it.
        stored = {
            **values,
            "state": RunState.PENDING,
            "config": loads(texts["config"]),
            "search_info": None if info is None else loads(texts["search_info"]),
        }
        return Run(id=run_id, **{f.name: stored.get(f.name) for f in fields(Run) if f.name != "id"})

    def requeue_run(
        self,
        run_id: str,
        *,
        priority: int | str | None = None,
        owner: str | None = None,
        now: float | None = None,
    ) -> Run:
        """Queue a crashed or preempted run again: same id and config, ``attempt + 1``, history cleared.

        It is the same run, so it does not count against ``run_cap`` again; its ``cost_usd`` keeps
        accumulating across attempts.

        Raises:
            RunRefusedError: the run is not crashed / preempted (or the sweep refuses runs, as in
                :meth:`add_run`).
        """
        now = _now(now)
        with self._write() as conn:
            run = _run(self._run_row(conn, run_id))
            if run.state not in REQUEUEABLE:
                raise RunRefusedError(f"run {run_id} is {run.state.value}; only crashed or preempted runs requeue.")
            sweep = _sweep(self._sweep_row(conn, run.sweep_id))
            self._check_can_enqueue(sweep.id, sweep.state, sweep.lease_owner, sweep.lease_expires_at, owner, now)
            default_priority = self._ensure_queue_row(conn, run.queue, now)
            conn.execute(delete(t.run_history).where(t.run_history.c.run_id == run_id))
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(
                    state=RunState.PENDING.value,
                    attempt=t.runs.c.attempt + 1,
                    exit_code=None,
                    summary={},
                    stop_reason=None,
                    stop_requested=None,
                    agent_id=None,
                    queued_at=now,
                    started_at=None,
                    ended_at=None,
                )
            )
            self._enqueue(conn, run.queue, run_id, default_priority if priority is None else priority, now)
            return _run(self._run_row(conn, run_id))

    @staticmethod
    def _check_can_enqueue(
        sweep_id: str,
        state: SweepState,
        lease_owner: str | None,
        lease_expires_at: float | None,
        owner: str | None,
        now: float,
    ) -> None:
        if not state.is_active:
            raise SweepInactiveError(f"sweep {sweep_id} is {state.value}; it takes no new runs.")
        if owner is not None and (lease_owner != owner or lease_expires_at is None or lease_expires_at <= now):
            raise LeaseLostError(f"{owner} does not hold the controller lease of sweep {sweep_id}.")

    @staticmethod
    def _enqueue(conn: Connection, queue: str, run_id: str, priority: int | str, now: float) -> None:
        item = {
            "queue": queue,
            "run_id": run_id,
            "priority": priority_value(priority),
            "enqueued_at": now,
            "state": ItemState.PENDING.value,
        }
        direct.execute(conn, direct.INSERT_ITEM, item)

    @staticmethod
    def _run_row(conn: Connection, run_id: str) -> Row[Any]:
        row = conn.execute(select(t.runs).where(t.runs.c.id == run_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"no run with id {run_id!r}.")
        return row

    def get_run(self, run_id: str) -> Run | None:
        with self._read() as conn:
            row = conn.execute(select(t.runs).where(t.runs.c.id == run_id)).one_or_none()
        return None if row is None else _run(row)

    def runs(self, sweep_id: str, *, states: Collection[str] | None = None) -> list[Run]:
        """The sweep's runs in the order they were added."""
        query = select(t.runs).where(t.runs.c.sweep_id == sweep_id).order_by(t.runs.c.number)
        if states is not None:
            query = query.where(t.runs.c.state.in_([_enum(RunState, s).value for s in states]))
        with self._read() as conn:
            return [_run(row) for row in conn.execute(query)]

    def run_changes(self, sweep_id: str, *, since: int | None) -> RunChanges:
        """The runs of the sweep written since a reader's last call, by number: every run whose change counter
        (``runs.change_seq``, set by the database on every insert and update of a run) is above ``since``, the
        ``since`` of the last call's answer. ``None`` (a first read) reads every run.

        A reader holding a copy of the sweep's runs pays for what changed, not for the runs it holds: one range
        of an index, whatever the number of runs ended or in flight.
        """
        with self._read() as conn:  # a controller reads on every decision: the direct path
            if since is None:
                cursor = direct.execute(conn, direct.RUNS, {"sweep_id": sweep_id})
            else:
                cursor = direct.execute(conn, direct.RUNS_SINCE, {"sweep_id": sweep_id, "since": since})
            runs, top = direct.runs_and_top(cursor)
        return RunChanges(runs, max(top, since or 0))

    def counts(self, sweep_id: str) -> dict[RunState, int]:
        """Runs of the sweep per state; every state is present, zeros included."""
        query = select(t.runs.c.state, func.count()).where(t.runs.c.sweep_id == sweep_id).group_by(t.runs.c.state)
        with self._read() as conn:
            found = {RunState(state): n for state, n in conn.execute(query)}
        return {state: found.get(state, 0) for state in RunState}

    def mark_run_started(
        self, run_id: str, agent_id: str, *, item_id: int | None = None, now: float | None = None
    ) -> Run | None:
        """``pending`` → ``running``, if the run's live item is claimed by ``agent_id`` (and is ``item_id``).

        ``None`` means the claim is gone (reaped, or the sweep ended meanwhile): do not start the process.
        """
        now = _now(now)
        with self._write() as conn:
            run = _run(self._run_row(conn, run_id))
            if run.state is not RunState.PENDING or not self._holds(conn, run_id, item_id, agent_id):
                return None
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(state=RunState.RUNNING.value, started_at=now, agent_id=agent_id)
            )
            return _run(self._run_row(conn, run_id))

    def record_exit(self, run_id: str, exit_code: int, *, item_id: int) -> bool:
        """The running run's process exited, with ``exit_code``, and its agent is recording how it ended (which may
        take a moment: wandb writes the run's exit record just after). A reaper that finds the agent dead before the
        outcome is recorded then knows the run ended on its own: it waits for the exit record and does not re-queue
        it. False (nothing written) if the claim is gone."""
        with self._write() as conn:
            if not self._holds(conn, run_id, item_id, None):
                return False
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id, t.runs.c.state == RunState.RUNNING.value)
                .values(exit_code=exit_code)
            )
            return True

    @staticmethod
    def _holds(conn: Connection, run_id: str, item_id: int | None, agent_id: str | None) -> bool:
        """Whether the run's live item is claimed (by ``agent_id`` / is ``item_id``, when given)."""
        items = t.queue_items.c
        query = select(items.id).where(items.run_id == run_id, items.state == ItemState.CLAIMED.value)
        if item_id is not None:
            query = query.where(items.id == item_id)
        if agent_id is not None:
            query = query.where(items.claimed_by == agent_id)
        return conn.scalar(query) is not None

    def mark_run_finished(
        self,
        run_id: str,
        state: str,
        *,
        exit_code: int | None = None,
        summary: Mapping[str, Any] | None = None,
        cost_usd: float | None = None,
        stop_reason: str | None = None,
        item_id: int | None = None,
        now: float | None = None,
    ) -> Run | None:
        """End a pending or running run in a terminal ``state`` and close its queue item.

        The first ending wins: ``None`` (nothing written) if the run already ended, e.g. the reaper marked it
        crashed. An agent passes the ``item_id`` of its claim, so a report from a lease it lost can never end a
        later attempt of the same run. ``summary`` replaces the stored one when given. ``cost_usd`` defaults
        to the queue's ``cost_per_hour`` times the run time; it adds up over attempts.
        """
        state = _enum(RunState, state)
        if not state.is_terminal:
            raise StoreError(f"mark_run_finished needs a terminal state, not {state.value!r}.")
        now = _now(now)
        with self._write() as conn:
            run = _run(self._run_row(conn, run_id))
            if run.state.is_terminal or (item_id is not None and not self._holds(conn, run_id, item_id, None)):
                return None
            if cost_usd is None and run.started_at is not None:
                rate = conn.scalar(select(t.queues.c.cost_per_hour).where(t.queues.c.name == run.queue))
                if rate is not None:
                    cost_usd = rate * max(0.0, now - run.started_at) / 3600.0
            values: dict[str, Any] = {
                "state": state.value,
                "exit_code": exit_code,
                "stop_reason": stop_reason,
                "ended_at": now,
            }
            if summary is not None:
                values["summary"] = dict(summary)
            if cost_usd is not None:
                values["cost_usd"] = (run.cost_usd or 0.0) + cost_usd
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(**values))
            conn.execute(
                update(t.queue_items)
                .where(t.queue_items.c.run_id == run_id, t.queue_items.c.state != ItemState.DONE.value)
                .values(state=ItemState.DONE.value)
            )
            return _run(self._run_row(conn, run_id))

    def request_stop(self, run_id: str, reason: str, *, now: float | None = None) -> Run:
        """Controller → agent: stop this run (the agent sees it in :meth:`heartbeat`).

        A run still pending never starts: it ends ``killed`` now. An ended run is left as it is. Returns the
        run as it stands after the request.
        """
        now = _now(now)
        with self._write() as conn:
            run = _run(self._run_row(conn, run_id))
            if run.state is RunState.PENDING:
                conn.execute(
                    update(t.runs)
                    .where(t.runs.c.id == run_id)
                    .values(state=RunState.KILLED.value, stop_reason=reason, ended_at=now)
                )
                conn.execute(
                    update(t.queue_items)
                    .where(t.queue_items.c.run_id == run_id, t.queue_items.c.state != ItemState.DONE.value)
                    .values(state=ItemState.DONE.value)
                )
            elif run.state is RunState.RUNNING and run.stop_requested is None:
                conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(stop_requested=reason))
            return _run(self._run_row(conn, run_id))

    # -- history ----------------------------------------------------------------------------------------------

    def append_history(
        self,
        run_id: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        summary: Mapping[str, Any] | None = None,
        item_id: int | None = None,
    ) -> int:
        """Add history rows (each with an integer ``_step``); a step already stored is skipped, so re-reading
        a log from the start is harmless. ``summary``, when given, replaces the run's summary in the same
        transaction. With ``item_id``, writes nothing unless that claim is still live. Returns rows added.
        """
        values = []
        for row in rows:
            step = row.get("_step")
            if isinstance(step, bool) or not isinstance(step, int):
                raise StoreError(f"every history row needs an integer _step; got {step!r} in run {run_id}.")
            values.append({"run_id": run_id, "step": step, "row": dict(row)})
        with self._write() as conn:
            self._run_row(conn, run_id)
            if item_id is not None and not self._holds(conn, run_id, item_id, None):
                return 0
            added = 0
            if values:
                added = conn.execute(insert(t.run_history).on_conflict_do_nothing(), values).rowcount
            if summary is not None:
                conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(summary=dict(summary)))
            return added

    def history(self, run_id: str) -> list[dict[str, Any]]:
        """The run's history rows by step."""
        query = select(t.run_history.c.row).where(t.run_history.c.run_id == run_id).order_by(t.run_history.c.step)
        with self._read() as conn:
            return list(conn.scalars(query))

    def histories(self, sweep_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every run's history in one query: ``{run_id: rows by step}`` (runs without history are absent)."""
        h = t.run_history.c
        query = (
            select(h.run_id, h.row)
            .join(t.runs, t.runs.c.id == h.run_id)
            .where(t.runs.c.sweep_id == sweep_id)
            .order_by(h.run_id, h.step)
        )
        out: dict[str, list[dict[str, Any]]] = {}
        with self._read() as conn:
            for run_id, row in conn.execute(query):
                out.setdefault(run_id, []).append(row)
        return out

    def metric_series(self, sweep_id: str, name: str) -> dict[str, list[Any]]:
        """Every run's logged values of one metric, by step: ``{run_id: [value, ...]}`` (rows without the key
        are skipped; runs that never logged it are absent).

        What a search engine needs of a history is this one column; SQLite extracts it, so the rows are never
        decoded in Python (a row that is not strict JSON, one holding NaN say, is the exception).
        """
        h = t.run_history.c
        text = type_coerce(h.row, Text)  # the raw TEXT, not the column's JSON decoding
        path = '$."' + name.replace('"', '""') + '"'
        needle = func.instr(text, '"' + name + '"') > 0
        valid = func.json_valid(text)
        query = (
            select(h.run_id, valid, func.iif(valid, func.json_extract(text, path), text, type_=NullType()))
            .join(t.runs, t.runs.c.id == h.run_id)
            .where(t.runs.c.sweep_id == sweep_id, needle)
            .order_by(h.run_id, h.step)
        )
        out: dict[str, list[Any]] = {}
        with self._read() as conn:
            for run_id, is_json, value in conn.execute(query):
                if not is_json:  # NaN / Infinity as Python writes them: decode this row alone
                    row = loads(value)
                    if name not in row:
                        continue
                    value = row[name]
                elif value is None:
                    continue  # the key matched inside another value, or the metric was logged as null
                out.setdefault(run_id, []).append(value)
        return out

    # -- queues -----------------------------------------------------------------------------------------------

    def ensure_queue(
        self,
        name: str,
        *,
        priority: int | str | None = None,
        cost_per_hour: float | None = None,
        resource_args: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> Queue:
        """Create the queue, or update the fields given (``None`` leaves a field as it is)."""
        now = _now(now)
        changes: dict[str, Any] = {}
        if priority is not None:
            changes["priority"] = priority_value(priority)
        if cost_per_hour is not None:
            changes["cost_per_hour"] = float(cost_per_hour)
        if resource_args is not None:
            changes["resource_args"] = dict(resource_args)
        with self._write() as conn:
            self._ensure_queue_row(conn, name, now)
            if changes:
                conn.execute(update(t.queues).where(t.queues.c.name == name).values(**changes))
            return _queue(conn.execute(select(t.queues).where(t.queues.c.name == name)).one())

    @staticmethod
    def _ensure_queue_row(conn: Connection, name: str, now: float) -> int:
        """Create the queue with defaults if missing; return its default priority. (Called under the write lock,
        so "missing now" still holds at the insert; the queue almost always exists: one statement, not two.)"""
        if not name:
            raise StoreError("a queue needs a non-empty name.")
        priority = select(t.queues.c.priority).where(t.queues.c.name == name)
        found = conn.scalar(priority)
        if found is not None:
            return found
        conn.execute(
            insert(t.queues)
            .values(name=name, priority=0, cost_per_hour=None, resource_args={}, created_at=now)
            .on_conflict_do_nothing()
        )
        return conn.scalar(priority)

    def get_queue(self, name: str) -> Queue | None:
        with self._read() as conn:
            row = conn.execute(select(t.queues).where(t.queues.c.name == name)).one_or_none()
        return None if row is None else _queue(row)

    def list_queues(self) -> list[Queue]:
        with self._read() as conn:
            return [_queue(row) for row in conn.execute(select(t.queues).order_by(t.queues.c.name))]

    def queue_items(self, queue: str | None = None, *, states: Collection[str] | None = None) -> list[QueueItem]:
        """Items in claim order (best priority, then oldest), optionally of one queue / some states."""
        items = t.queue_items.c
        query = select(t.queue_items).order_by(items.priority.desc(), items.enqueued_at, items.id)
        if queue is not None:
            query = query.where(items.queue == queue)
        if states is not None:
            query = query.where(items.state.in_([_enum(ItemState, s).value for s in states]))
        with self._read() as conn:
            return [_item(row) for row in conn.execute(query)]

    def claim_next(
        self, queue: str, agent_id: str, *, lease_ttl: float, now: float | None = None, sweep_id: str | None = None
    ) -> Claim | None:
        """Lease the queue's best pending item (of ``sweep_id``'s runs only, if given) to ``agent_id`` for
        ``lease_ttl`` seconds.

        Best is highest priority, then oldest. Items of paused or ended sweeps are skipped. Atomic across
        processes: two agents never get the same item. ``None`` when nothing is claimable.
        """
        now = _now(now)
        items = t.queue_items.c
        query = (
            select(items.id)
            .join(t.runs, t.runs.c.id == items.run_id)
            .join(t.sweeps, t.sweeps.c.id == t.runs.c.sweep_id)
            .where(
                items.queue == queue,
                items.state == ItemState.PENDING.value,
                t.runs.c.state == RunState.PENDING.value,
                t.sweeps.c.state.in_([SweepState.PENDING.value, SweepState.RUNNING.value]),
            )
            .order_by(items.priority.desc(), items.enqueued_at, items.id)
            .limit(1)
        )
        if sweep_id is not None:
            query = query.where(t.runs.c.sweep_id == sweep_id)
        with self._write() as conn:
            item_id = conn.scalar(query)
            if item_id is None:
                return None
            conn.execute(
                update(t.queue_items)
                .where(items.id == item_id)
                .values(
                    state=ItemState.CLAIMED.value, claimed_by=agent_id, claimed_at=now, lease_expires_at=now + lease_ttl
                )
            )
            item = _item(conn.execute(select(t.queue_items).where(items.id == item_id)).one())
            return Claim(item=item, run=_run(self._run_row(conn, item.run_id)))

    def heartbeat(
        self, agent_id: str, item_ids: Collection[int] = (), *, ttl: float, now: float | None = None
    ) -> Heartbeat:
        """An agent is alive: extend the leases of its claimed ``item_ids`` to ``now + ttl`` and record the beat.

        Returns the items it no longer holds (kill those runs) and stop requests for the ones it does.
        """
        now = _now(now)
        items = t.queue_items.c
        ids = list(item_ids)
        held = and_(items.id.in_(ids), items.state == ItemState.CLAIMED.value, items.claimed_by == agent_id)
        with self._write() as conn:
            conn.execute(update(t.agents).where(t.agents.c.id == agent_id).values(heartbeat_at=now))
            if not ids:
                return Heartbeat()
            conn.execute(update(t.queue_items).where(held).values(lease_expires_at=now + ttl))
            rows = conn.execute(
                select(items.id, t.runs.c.stop_requested).join(t.runs, t.runs.c.id == items.run_id).where(held)
            ).all()
        still = {item_id for item_id, _ in rows}
        return Heartbeat(
            lost=frozenset(i for i in ids if i not in still),
            stop={item_id: reason for item_id, reason in rows if reason is not None},
        )

    def claims(self) -> list[Claim]:
        """Every item leased to an agent now, with its run: what a reaper checks (lease expired, agent gone)."""
        claimed = select(t.queue_items).where(t.queue_items.c.state == ItemState.CLAIMED.value)
        with self._read() as conn:
            items = [_item(row) for row in conn.execute(claimed.order_by(t.queue_items.c.id))]
            query = select(t.runs).where(t.runs.c.id.in_([i.run_id for i in items]))
            runs = {run.id: run for run in map(_run, conn.execute(query))} if items else {}
        return [Claim(item=item, run=runs[item.run_id]) for item in items]

    def reap_expired(self, *, now: float | None = None) -> list[str]:
        """End the runs whose claim's lease expired (their agent is gone): ``crashed``, reason
        :data:`LEASE_EXPIRED_REASON`. Returns their run ids. The local backend's reaper
        (:mod:`sweepflow.local.reaper`) does more: it reads each run's log and re-queues runs lost with their agent.
        """
        now = _now(now)
        crashed = [
            claim.run.id
            for claim in self.claims()
            if (claim.item.lease_expires_at or 0) < now
            and self.mark_run_finished(
                claim.run.id,
                RunState.CRASHED,
                stop_reason=LEASE_EXPIRED_REASON,
                cost_usd=0.0,  # how long it ran is unknown
                item_id=claim.item.id,
                now=now,
            )
        ]
        return sorted(crashed)

    # -- agents -----------------------------------------------------------------------------------------------

    def register_agent(
        self,
        queue: str,
        *,
        max_jobs: int = 1,
        agent_id: str | None = None,
        pid: int | None = None,
        host: str | None = None,
        now: float | None = None,
        sweep_id: str | None = None,
    ) -> Agent:
        """Record an agent serving ``queue`` (re-registering an id revives it), or only ``sweep_id``'s runs on it.
        Ids default to host-pid-random."""
        now = _now(now)
        pid = os.getpid() if pid is None else pid
        host = socket.gethostname() if host is None else host
        agent_id = agent_id or f"{host}-{pid}-{new_id(4)}"
        values = {
            "queue": queue,
            "pid": pid,
            "host": host,
            "max_jobs": max_jobs,
            "heartbeat_at": now,
            "sweep_id": sweep_id,
        }
        with self._write() as conn:
            conn.execute(
                insert(t.agents)
                .values(id=agent_id, started_at=now, stopped_at=None, **values)
                .on_conflict_do_update(index_elements=["id"], set_={**values, "stopped_at": None})
            )
            return _agent(conn.execute(select(t.agents).where(t.agents.c.id == agent_id)).one())

    def deregister_agent(self, agent_id: str, *, now: float | None = None) -> None:
        """A clean agent exit: it is no longer live."""
        now = _now(now)
        with self._write() as conn:
            conn.execute(update(t.agents).where(t.agents.c.id == agent_id).values(stopped_at=now))

    def get_agent(self, agent_id: str) -> Agent | None:
        with self._read() as conn:
            row = conn.execute(select(t.agents).where(t.agents.c.id == agent_id)).one_or_none()
        return None if row is None else _agent(row)

    def live_agents(
        self,
        queue: str | None = None,
        *,
        max_age: float = AGENT_STALE_AFTER_S,
        now: float | None = None,
        queue_wide: bool = False,
    ) -> list[Agent]:
        """Agents that beat within ``max_age`` seconds and did not deregister, optionally of one queue, and with
        ``queue_wide`` only those serving their whole queue (not one sweep's embedded agent)."""
        now = _now(now)
        a = t.agents.c
        query = select(t.agents).where(a.stopped_at.is_(None), a.heartbeat_at >= now - max_age).order_by(a.id)
        if queue is not None:
            query = query.where(a.queue == queue)
        if queue_wide:
            query = query.where(a.sweep_id.is_(None))
        with self._read() as conn:
            return [_agent(row) for row in conn.execute(query)]

    # -- integrity --------------------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Problems found in the database (``[]`` when healthy): SQLite's own checks plus the store's invariants.

        Each run has exactly one live item while queued / running and none once ended; a claimed item's run
        is pending or running; runs are numbered 1..n per sweep without gaps; no sweep exceeds its run_cap.
        """
        problems: list[str] = []
        with self._read() as conn:
            integrity = conn.exec_driver_sql("PRAGMA integrity_check").scalars().all()
            if integrity != ["ok"]:
                problems += [f"integrity_check: {line}" for line in integrity]
            problems += [f"foreign_key_check: {tuple(r)}" for r in conn.exec_driver_sql("PRAGMA foreign_key_check")]
            live = func.count(t.queue_items.c.id).filter(t.queue_items.c.state != ItemState.DONE.value)
            query = (
                select(t.runs.c.id, t.runs.c.state, live, func.count(t.queue_items.c.id))
                .outerjoin(t.queue_items, t.queue_items.c.run_id == t.runs.c.id)
                .group_by(t.runs.c.id)
            )
            for run_id, state, n_live, n_items in conn.execute(query):
                want = 0 if RunState(state).is_terminal else 1
                if n_live != want or n_items == 0:
                    problems.append(f"run {run_id} is {state} with {n_live} live of {n_items} queue items")
            bad_claims = conn.execute(
                select(t.queue_items.c.id, t.runs.c.state)
                .join(t.runs, t.runs.c.id == t.queue_items.c.run_id)
                .where(
                    t.queue_items.c.state == ItemState.CLAIMED.value,
                    t.runs.c.state.not_in([RunState.PENDING.value, RunState.RUNNING.value]),
                )
            ).all()
            problems += [f"item {i} is claimed but its run is {s}" for i, s in bad_claims]
            numbering = conn.execute(
                select(t.sweeps.c.id, t.sweeps.c.run_cap, func.count(t.runs.c.id), func.max(t.runs.c.number))
                .outerjoin(t.runs, t.runs.c.sweep_id == t.sweeps.c.id)
                .group_by(t.sweeps.c.id)
            ).all()
            for sweep_id, run_cap, n, top in numbering:
                if (top or 0) != n:
                    problems.append(f"sweep {sweep_id} has {n} runs numbered up to {top}")
                if run_cap is not None and n > run_cap:
                    problems.append(f"sweep {sweep_id} has {n} runs, above its run_cap {run_cap}")
        return problems


def get_store(url: str | Store | None = None) -> Store:
    """The store for ``url``: ``None`` is ``$SWEEPFLOW_HOME/sweepflow.db`` (default ``~/.sweepflow``), a string is
    a database URL (``sqlite:///path.db``, ``sqlite://`` in memory), a :class:`Store` is returned as is."""
    if isinstance(url, Store):
        return url
    return Store(url)
