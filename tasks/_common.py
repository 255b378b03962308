"""What every task shares: how a backend is opened from task parameters, retry rules, artifact keys."""

from __future__ import annotations

import re
from typing import Any

from sweepflow.backends import Backend, TransientBackendError, get_backend


def backend_for(name: str, store: str | None) -> Backend:
    """The backend of a task's parameters. With ``wandb``, ``store`` names a saved ``WandbCredentials`` block
    (its key stays in the block), and without one the credentials come from ``WANDB_API_KEY`` and friends."""
    if name == "wandb" and store:
        from sweepflow.tasks.blocks import WandbCredentials

        return WandbCredentials.load(store).get_client()
    return get_backend(name, store)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what is worth retrying as is (a busy store, a network blip); a user error fails at once."""
    try:
        state.result(raise_on_failure=True)
    except TransientBackendError:
        return True
    except Exception:
        return False
    return False


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")
