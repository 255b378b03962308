"""Backends: one interface (``base.Backend``), implemented by the embedded engine and, later, by W&B Launch."""

from __future__ import annotations

from sweepflow.backends.base import Backend, RunRecord, SweepHandle, SweepStatus, TransientBackendError
from sweepflow.errors import SweepflowError

__all__ = ["Backend", "RunRecord", "SweepHandle", "SweepStatus", "TransientBackendError", "get_backend"]


def get_backend(name: str = "local", store: str | None = None) -> Backend:
    """The backend called ``name`` (``local`` or ``wandb``)."""
    if name == "local":
        from sweepflow.backends.local import LocalBackend

        return LocalBackend(store)
    if name == "wandb":
        raise SweepflowError(
            "backend 'wandb' (W&B Sweeps on Launch queues) is not available yet; use `backend: local`."
        )
    raise SweepflowError(f"unknown backend {name!r}; use `local` or `wandb`.")
