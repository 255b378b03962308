"""The project's Prefect blocks. Prefect imports this module through sweepflow's ``prefect.collections`` entry
point, so a saved block loads by its type in any process; `prefect block register -m sweepflow` registers them
(``sweepflow`` re-exports them lazily, so the Prefect-free core never imports Prefect unless a block is asked for).

- :class:`SweepflowStore`: where the embedded backend keeps its sweeps (a store URL), saved once in the UI and
  loaded by name, so every deployment of a team points at the same store.
- :class:`WandbCredentials`: the W&B backend's API key (a ``SecretStr``), server, entity and project, following
  Prefect integrations' credentials blocks; flows take the block's *name* (``store=`` with ``backend: wandb``),
  so the key never becomes a flow-run parameter.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.abstract import CredentialsBlock
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from sweepflow.backends import Backend, get_backend
from sweepflow.backends.wandb_credentials import DEFAULT_BASE_URL, WandbAuth


class SweepflowStore(Block):
    """Where the embedded (``local``) backend keeps sweeps, runs and queues.

    Example:
        ```python
        from sweepflow import SweepflowStore
        store = SweepflowStore.load("team")
        sweep_pipeline("deployments/digits-campaign.yaml", store=store.url)
        ```
    """

    _block_type_name: ClassVar[str] = "Sweepflow Store"
    _block_type_slug: ClassVar[str] = "sweepflow-store"
    _description: ClassVar[str] = "Where sweepflow's embedded backend keeps its sweeps (a database URL)."

    url: str | None = Field(
        None,
        title="Store URL",
        description="Database URL, e.g. sqlite:////data/sweepflow.db (empty: $SWEEPFLOW_STORE_URL, else the "
        "file under $SWEEPFLOW_HOME).",
    )

    def backend(self, name: str = "local") -> Backend:
        """The backend ``name`` on this store."""
        return get_backend(name, self.url)


class WandbCredentials(CredentialsBlock):
    """How the W&B backend reaches a W&B server: an API key, the server's URL, and default entity and project.

    Example:
        ```python
        from sweepflow import WandbCredentials
        credentials = WandbCredentials.load("BLOCK_NAME")
        backend = credentials.get_client()
        # flows take the block's name: sweep_pipeline(spec, backend="wandb", store="BLOCK_NAME")
        ```
    """

    _block_type_name: ClassVar[str] = "Wandb Credentials"  # Prefect forbids "&" in a block type name
    _block_type_slug: ClassVar[str] = "wandb-credentials"
    _description: ClassVar[str] = "API key, server, entity and project of sweepflow's W&B backend."

    api_key: SecretStr = Field(title="API key", description="A W&B API key (https://wandb.ai/authorize).")
    base_url: str = Field(
        DEFAULT_BASE_URL,
        title="Base URL",
        description="The W&B server; a self-hosted one's URL, e.g. https://wandb.corp.",
    )
    entity: str | None = Field(None, description="Team or user the sweeps belong to (default: the key's own entity).")
    project: str | None = Field(None, description="Project of sweeps whose config names none.")

    def auth(self) -> WandbAuth:
        return WandbAuth(
            api_key=self.api_key, base_url=self.base_url.rstrip("/"), entity=self.entity, project=self.project
        )

    def get_client(self) -> Backend:
        """The W&B backend logged in with this block's key (Prefect's ``CredentialsBlock`` factory)."""
        from sweepflow.backends.wandb import WandbBackend

        return WandbBackend(self.auth())

    def backend(self) -> Backend:
        return self.get_client()
