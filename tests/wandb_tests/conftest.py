"""The stub W&B server and the W&B backend on it (``tests/wandb_stub/fixtures.py``)."""

from __future__ import annotations

from tests.wandb_stub.fixtures import stub, wandb_backend  # noqa: F401
