"""Faults at the wire: a refused key fails at once in one line; transient failures are retried and survived; a
server that keeps failing surfaces as TransientBackendError (what the Prefect tasks retry). The key never shows."""

from __future__ import annotations

import pytest

from sweepflow.backends import TransientBackendError
from sweepflow.backends.wandb import WandbBackend
from sweepflow.backends.wandb_credentials import WandbAuth
from sweepflow.backends.wandb_faults import WandbAuthError
from tests.backend_tests.conftest import curve_config, sweep
from tests.wandb_stub.fixtures import CANARY_KEY
from tests.wandb_stub.server import StubServer


def test_a_rejected_key_fails_at_once_in_one_line_naming_the_fix(stub: StubServer, wandb_backend) -> None:
    stub.reject_key = True
    with pytest.raises(WandbAuthError) as caught:
        wandb_backend.launch(sweep(curve_config(run_cap=1)), key="camp/a", drive="none")
    message = str(caught.value)
    assert message == (
        f"W&B rejected the API key for {stub.url} (list the sweeps of stub-team/sweepflow-tests): set "
        "WANDB_API_KEY, or the api_key of the WandbCredentials block, to a valid key for that server."
    )
    assert "\n" not in message and CANARY_KEY not in message
    assert [r.status for r in stub.log if r.op] == [401]  # refused once, not retried
    assert not stub.state.sweeps


def test_no_key_is_refused_before_anything_is_sent(stub: StubServer, tmp_path) -> None:
    backend = WandbBackend(WandbAuth(base_url=stub.url, entity="stub-team"))
    with pytest.raises(WandbAuthError, match=r"^no W&B API key for http://127\.0\.0\.1:\d+: set WANDB_API_KEY"):
        backend.launch(sweep(curve_config(run_cap=1)), key="camp/a", drive="none")
    assert stub.log == []


@pytest.mark.parametrize("kind", ["500", "503", "429", "drop"])
def test_each_kind_of_transient_failure_is_retried(stub: StubServer, wandb_backend, kind: str) -> None:
    handle = wandb_backend.launch(sweep(curve_config(run_cap=1)), key="camp/a", drive="none")
    stub.fail_next(kind)
    assert wandb_backend.status(handle.id).state == "running"
    after = [r.status for r in stub.log if r.op][-3:]
    assert after[0] == (0 if kind == "drop" else int(kind)) and after[1:] == [200, 200]  # retried, then answered


@pytest.mark.slow
def test_one_request_in_five_failing_transiently_is_survived(stub: StubServer, wandb_backend) -> None:
    stub.fail(0.2, seed=7)  # 500, 503, 429 with Retry-After, and dropped connections
    handle = wandb_backend.launch(sweep(curve_config(run_cap=2)), key="camp/a", drive="none")
    again = wandb_backend.launch(sweep(curve_config(run_cap=2)), key="camp/a", drive="none")
    assert again.id == handle.id and len(stub.state.sweeps) == 1  # no second sweep, whatever failed
    assert wandb_backend.set_state(handle.id, "stop").state == "finished"
    # Each fault costs 2, 4, 8 s of wandb-core's own backoff (~40 s here): slow, as the campaign-sized run with
    # faults in tests/wandb_tests/test_campaign.py.
    assert stub.faults.injected >= 1, stub.faults.injected


def test_a_server_that_keeps_failing_is_a_transient_error(stub: StubServer, wandb_backend) -> None:
    handle = wandb_backend.launch(sweep(curve_config(run_cap=1)), key="camp/a", drive="none")
    stub.fail(1.0, kinds=("503",))
    impatient = WandbBackend(wandb_backend.auth, attempts=2, first_delay=0.05, timeout=2)
    with pytest.raises(TransientBackendError, match=rf"^W&B at {stub.url} did not answer read sweep .*; try again\.$"):
        impatient.status(handle.id)
    stub.fail(0.0)
    assert impatient.status(handle.id).state == "running"  # the same call, later, goes through
