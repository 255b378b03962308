"""The W&B credentials: a ``WandbCredentials`` block as Prefect integrations write them, and a key that never shows
in a repr, a dump or an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

import sweepflow
from sweepflow.backends.wandb import WandbBackend
from sweepflow.backends.wandb_credentials import WandbAuth
from sweepflow.tasks.blocks import WandbCredentials
from tests.wandb_stub.fixtures import CANARY_KEY

ROOT = Path(__file__).resolve().parents[2]


class TestWandbCredentialsBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[WandbCredentials]:
        return WandbCredentials

    def test_has_a_valid_image(self, block: type[WandbCredentials]) -> None:
        # Prefect's version downloads the logo, and nothing may leave this machine. The block names no logo or
        # documentation URL: sweepflow has no published home yet, and we do not invent one.
        assert block._logo_url is None and block._documentation_url is None

    def test_has_a_documentation_url(self, block: type[WandbCredentials]) -> None:
        # The README is the documentation until sweepflow has a published home; no URL is invented for it.
        assert block._documentation_url is None and "WandbCredentials" in (ROOT / "README.md").read_text()


def test_the_block_is_found_by_prefect_block_register_m_sweepflow() -> None:
    assert sweepflow.WandbCredentials is WandbCredentials
    assert WandbCredentials.get_block_type_slug() == "wandb-credentials"


def test_the_block_builds_a_backend_with_its_key_and_the_key_never_shows() -> None:
    block = WandbCredentials(api_key=CANARY_KEY, base_url="https://wandb.corp/", entity="team", project="digits")
    backend = block.get_client()
    assert isinstance(backend, WandbBackend)
    assert backend.auth == WandbAuth(
        api_key=SecretStr(CANARY_KEY), base_url="https://wandb.corp", entity="team", project="digits"
    )
    shown = [repr(block), str(block), block.model_dump_json(), repr(backend.auth), backend.auth.model_dump_json()]
    assert not [text for text in shown if CANARY_KEY in text]
    assert backend.auth.agent_env()["WANDB_API_KEY"] == CANARY_KEY  # only the agents' environment carries it


def test_the_environment_gives_the_credentials_as_wandb_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", CANARY_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    auth = WandbAuth.from_env()
    assert (auth.api_key.get_secret_value(), auth.base_url, auth.entity) == (CANARY_KEY, "http://127.0.0.1:9", None)
