"""The private wandb functions the backend uses are the ones it was written against, and the stub answers every
operation the real client was recorded sending."""

from __future__ import annotations

import json
from pathlib import Path

import wandb

from sweepflow.backends import _wandb_api
from tests.wandb_stub.graphql import HANDLERS

RECORDINGS = Path(__file__).resolve().parents[1] / "wandb_stub" / "recordings"


def test_the_private_wandb_functions_have_not_changed() -> None:
    drift = _wandb_api.signature_drift()
    assert not drift, (
        f"wandb {wandb.__version__} changed the private functions sweepflow's W&B backend calls (read from wandb "
        f"{_wandb_api.READ_FROM}); re-read them and update sweepflow/backends/_wandb_api.py:\n" + "\n".join(drift)
    )


def test_the_stub_answers_every_operation_the_real_client_was_recorded_sending() -> None:
    recorded = [json.loads(line) for path in sorted(RECORDINGS.glob("*.jsonl")) for line in path.open()]
    operations = {r["op"] for r in recorded if r["op"]}
    assert {"Viewer", "UpsertSweep", "CreateAgent", "Heartbeat", "UpsertBucket", "RunSampledHistory"} <= operations
    assert operations <= set(HANDLERS), operations - set(HANDLERS)
    assert any(r["path"].endswith("/file_stream") for r in recorded)  # online runs stream their history
