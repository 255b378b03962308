"""Errors of the store. Refusals the controller expects (a duplicate config, the run cap) have their own class
so it can catch exactly them; everything derives from :class:`~sweepflow.errors.SweepflowError`."""

from __future__ import annotations

from sweepflow.errors import SweepflowError


class StoreError(SweepflowError):
    """The store cannot do what was asked (bad argument, unsupported database, unknown record...)."""


class SchemaVersionError(StoreError):
    """The database was written by a newer sweepflow (or has no upgrade path from its version)."""


class NotFoundError(StoreError):
    """No sweep / run / queue with that id."""


class RunRefusedError(StoreError):
    """:meth:`Store.add_run` (or ``requeue_run``) refused to queue a run; nothing was written."""


class DuplicateConfigError(RunRefusedError):
    """The sweep already has a run with exactly this config."""

    def __init__(self, sweep_id: str, run_id: str):
        self.sweep_id = sweep_id
        self.run_id = run_id
        super().__init__(f"sweep {sweep_id} already has run {run_id} with this exact config.")


class RunCapReachedError(RunRefusedError):
    """The sweep already has ``run_cap`` runs (all states count, as on W&B)."""

    def __init__(self, sweep_id: str, run_cap: int):
        self.sweep_id = sweep_id
        self.run_cap = run_cap
        super().__init__(f"sweep {sweep_id} already has its run_cap of {run_cap} runs.")


class SweepInactiveError(RunRefusedError):
    """The sweep is paused or over, so no run may be queued for it."""


class LeaseLostError(RunRefusedError):
    """The caller said it drives the sweep, but the controller lease is someone else's or has expired."""
