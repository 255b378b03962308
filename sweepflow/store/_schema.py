"""The tables, as SQLAlchemy Core metadata. Bump :data:`SCHEMA_VERSION` (and add a migration) on any change.

Choices that hold the invariants in the database itself, not only in code:

* ``runs``: UNIQUE (sweep_id, number) and UNIQUE (sweep_id, config_hash). ``number`` is 1, 2, 3... per sweep,
  so ``number <= run_cap`` at insert time caps the sweep even if two writers raced past a count.
* ``queue_items``: at most one live (not done) item per run (a partial unique index), AUTOINCREMENT ids so
  "oldest first" never meets a reused id.
* Foreign keys (enforced: ``PRAGMA foreign_keys=ON`` on every connection) from runs, items and history.
* States are plain TEXT checked in Python (the enums), not CHECK constraints, which SQLite can only change by
  rebuilding the table.
* Times are REAL Unix seconds: the caller passes ``now`` (tests drive time) and comparisons stay numeric.
* ``runs.change_seq``: every insert or update of a run sets it above every other of its sweep (two triggers), so
  a reader holding a copy of the sweep's runs reads only those changed since the highest value it saw
  (:meth:`Store.run_changes`). Triggers, not the store's methods, so no writer can forget it. Writers hold
  SQLite's write lock one at a time, so the values grow in commit order: a snapshot that saw value *v* has seen
  every write numbered *v* or below.
* ``agents.sweep_id``: the sweep an agent serves alone (a driver's embedded agent, sized by that sweep's
  ``num_workers``); NULL for one that serves its whole queue (``launch-agent``). Only the latter make a queue
  "served" for another sweep's driver.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    DDL,
    Column,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)

from sweepflow.store._json import dumps, loads

#: Version of the schema this code writes. A database with a higher one is refused; a lower one is migrated.
SCHEMA_VERSION = 4

# The change counter of runs (see the module docstring). A run's new value is one above its sweep's highest, found
# through ix_runs_sweep_change: O(log runs). The WHEN guard keeps the insert trigger's own UPDATE (and any write
# that sets the counter itself) from being numbered twice.
RUN_CHANGE_TRIGGERS = [
    """CREATE TRIGGER runs_change_on_insert AFTER INSERT ON runs BEGIN
    UPDATE runs SET change_seq = 1 + (SELECT max(change_seq) FROM runs WHERE sweep_id = NEW.sweep_id)
    WHERE id = NEW.id;
END""",
    """CREATE TRIGGER runs_change_on_update AFTER UPDATE ON runs WHEN NEW.change_seq = OLD.change_seq BEGIN
    UPDATE runs SET change_seq = 1 + (SELECT max(change_seq) FROM runs WHERE sweep_id = NEW.sweep_id)
    WHERE id = NEW.id;
END""",
]

#: Upgrades, by the version they upgrade *from*: each a list of statements run in one transaction.
#: v1 -> v2: W&B's state names (sweepflow.states): runs queued -> pending, stopped -> killed (their stop_reason
#: stays); sweeps stopped -> finished (what `wandb sweep --stop` sets), cancelled -> canceled.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "UPDATE runs SET state = 'pending' WHERE state = 'queued'",
        "UPDATE runs SET state = 'killed' WHERE state = 'stopped'",
        "UPDATE sweeps SET state = 'finished' WHERE state = 'stopped'",
        "UPDATE sweeps SET state = 'canceled' WHERE state = 'cancelled'",
    ],
    # v2 -> v3: the runs' change counter (readers of a migrated store start with a full read, so any values do).
    2: [
        "ALTER TABLE runs ADD COLUMN change_seq INTEGER DEFAULT 0 NOT NULL",
        "UPDATE runs SET change_seq = number",
        "CREATE INDEX ix_runs_sweep_change ON runs (sweep_id, change_seq)",
        *RUN_CHANGE_TRIGGERS,
    ],
    # v3 -> v4: agents bound to one sweep (every agent of an older store served its whole queue).
    3: ["ALTER TABLE agents ADD COLUMN sweep_id VARCHAR(32)"],
}


class JSONText(TypeDecorator[Any]):
    """JSON kept as TEXT (readable with the ``sqlite3`` shell); SQL NULL is Python ``None``."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else loads(value)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)

sweeps = Table(
    "sweeps",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key", String, unique=True),  # NULL allowed, many times: SQLite treats NULLs as distinct
    Column("project", String, nullable=False),
    Column("config", JSONText, nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_reason", Text),
    Column("run_cap", Integer),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("lease_owner", String),
    Column("lease_expires_at", Float),
    Column("prior_runs", JSONText),
)

queues = Table(
    "queues",
    metadata,
    Column("name", String, primary_key=True),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("cost_per_hour", Float),
    Column("resource_args", JSONText, nullable=False),
    Column("created_at", Float, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("sweep_id", String(32), ForeignKey("sweeps.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("queue", String, ForeignKey("queues.name"), nullable=False),
    Column("config", JSONText, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, server_default=text("1")),
    Column("exit_code", Integer),
    Column("summary", JSONText, nullable=False),
    Column("stop_reason", Text),
    Column("stop_requested", Text),
    Column("agent_id", String),
    Column("queued_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("cost_usd", Float),
    Column("search_info", JSONText),
    Column("change_seq", Integer, nullable=False, server_default=text("0")),  # set by RUN_CHANGE_TRIGGERS
    UniqueConstraint("sweep_id", "number", name="uq_runs_sweep_number"),
    UniqueConstraint("sweep_id", "config_hash", name="uq_runs_sweep_config"),
    Index("ix_runs_sweep_state", "sweep_id", "state"),
    Index("ix_runs_sweep_change", "sweep_id", "change_seq"),
)
for _trigger in RUN_CHANGE_TRIGGERS:
    event.listen(runs, "after_create", DDL(_trigger))

run_history = Table(
    "run_history",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("row", JSONText, nullable=False),
    PrimaryKeyConstraint("run_id", "step", name="pk_run_history"),
)

queue_items = Table(
    "queue_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("queue", String, ForeignKey("queues.name"), nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("enqueued_at", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("claimed_by", String),
    Column("claimed_at", Float),
    Column("lease_expires_at", Float),
    # The reaper: claimed items by lease expiry.
    Index("ix_items_lease", "state", "lease_expires_at"),
    Index(
        "uq_items_live_run",
        "run_id",
        unique=True,
        sqlite_where=text("state != 'done'"),
        postgresql_where=text("state != 'done'"),
    ),
    Index("ix_items_run", "run_id"),
    sqlite_autoincrement=True,
)
# The claim query: pending items of one queue, best priority then oldest. The index must carry the same
# directions as the ORDER BY, or SQLite sorts every pending item on every claim.
Index(
    "ix_items_claim",
    queue_items.c.queue,
    queue_items.c.state,
    queue_items.c.priority.desc(),
    queue_items.c.enqueued_at,
    queue_items.c.id,
)

agents = Table(
    "agents",
    metadata,
    Column("id", String, primary_key=True),
    Column("queue", String, nullable=False),
    Column("pid", Integer),
    Column("host", String),
    Column("max_jobs", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("sweep_id", String(32)),  # serves this sweep's runs only; NULL: the whole queue
    Index("ix_agents_queue_heartbeat", "queue", "heartbeat_at"),
)
