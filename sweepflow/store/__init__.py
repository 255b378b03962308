"""The durable store of the local engine: SQLAlchemy Core over SQLite in WAL mode.

``get_store(url)`` picks it like Optuna's ``get_storage``: ``None`` is ``$SWEEPFLOW_HOME/sweepflow.db``, a string
is a database URL, a :class:`Store` passes through. Every state change is one transaction (see ``_store.py``);
how SQLite is opened, and why, is in ``_engine.py``; the tables are in ``_schema.py``.
"""

from sweepflow.store._engine import default_url
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
from sweepflow.store._json import config_hash
from sweepflow.store._records import (
    PRIORITIES,
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
from sweepflow.store._schema import SCHEMA_VERSION
from sweepflow.store._store import AGENT_STALE_AFTER_S, LEASE_EXPIRED_REASON, Store, get_store, new_id

__all__ = [
    "AGENT_STALE_AFTER_S",
    "LEASE_EXPIRED_REASON",
    "PRIORITIES",
    "SCHEMA_VERSION",
    "Agent",
    "Claim",
    "DuplicateConfigError",
    "Heartbeat",
    "ItemState",
    "LeaseLostError",
    "NotFoundError",
    "Queue",
    "QueueItem",
    "Run",
    "RunCapReachedError",
    "RunChanges",
    "RunRefusedError",
    "RunState",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "Sweep",
    "SweepInactiveError",
    "SweepState",
    "config_hash",
    "default_url",
    "get_store",
    "new_id",
    "priority_value",
]
