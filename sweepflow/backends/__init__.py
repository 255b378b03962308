"""Backends: one interface (``base.Backend``), implemented by the embedded engine and by W&B.

:data:`BACKENDS` names the backends this install can run; the pipeline and override models offer exactly those.
"""

from __future__ import annotations

from collections.abc import Callable

from sweepflow.backends.base import (
    Backend,
    PriorRun,
    RunRecord,
    SweepHandle,
    SweepNotFound,
    SweepStatus,
    TransientBackendError,
)
from sweepflow.errors import SweepflowError

__all__ = [
    "BACKENDS",
    "Backend",
    "PriorRun",
    "RunRecord",
    "SweepHandle",
    "SweepNotFound",
    "SweepStatus",
    "TransientBackendError",
    "get_backend",
]


def _local(store: str | None) -> Backend:
    from sweepflow.backends.local import LocalBackend  # imports the local engine only when it is used

    return LocalBackend(store)


def _wandb(store: str | None) -> Backend:
    from sweepflow.backends.wandb import WandbBackend  # imports wandb only when it is used

    return WandbBackend()  # credentials from WANDB_API_KEY / WANDB_BASE_URL; the Prefect tasks may pass a block


BACKENDS: dict[str, Callable[[str | None], Backend]] = {"local": _local, "wandb": _wandb}


def get_backend(name: str = "local", store: str | None = None) -> Backend:
    """The backend called ``name`` (see :data:`BACKENDS`); ``store`` is the local backend's store URL."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise SweepflowError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}.") from None
    return factory(store)
