"""Who the W&B backend is and where it talks: an API key kept as a ``SecretStr``, a base URL, entity, project.

The key comes from ``WANDB_API_KEY`` or a Prefect ``WandbCredentials`` block (``tasks/blocks.py``), and travels
only inside this model: its ``repr`` and JSON show ``**********``, it is handed to wandb's client as an argument
and to ``wandb agent`` processes through their environment, never through a command line, a log line, an
exception, the store or a flow run's parameters.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, SecretStr

DEFAULT_BASE_URL = "https://api.wandb.ai"


class WandbAuth(BaseModel):
    """The credentials and defaults of one W&B server (cloud or self-hosted)."""

    api_key: SecretStr | None = Field(None, description="W&B API key (from the user settings page).")
    base_url: str = Field(DEFAULT_BASE_URL, description="W&B server; a self-hosted one's URL, e.g. https://wandb.corp.")
    entity: str | None = Field(None, description="Team or user the sweeps belong to (default: the key's own).")
    project: str | None = Field(None, description="Project of the sweeps when a config names none.")

    @classmethod
    def from_env(cls) -> WandbAuth:
        """``WANDB_API_KEY``, ``WANDB_BASE_URL``, ``WANDB_ENTITY``, ``WANDB_PROJECT``, as wandb itself reads them."""
        key = os.environ.get("WANDB_API_KEY")
        return cls(
            api_key=SecretStr(key) if key else None,
            base_url=(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            entity=os.environ.get("WANDB_ENTITY") or None,
            project=os.environ.get("WANDB_PROJECT") or None,
        )

    def agent_env(self) -> dict[str, str]:
        """What a ``wandb agent`` process needs to reach this server as this user (its environment only)."""
        env = {"WANDB_BASE_URL": self.base_url}
        if self.api_key is not None:
            env["WANDB_API_KEY"] = self.api_key.get_secret_value()
        if self.entity:
            env["WANDB_ENTITY"] = self.entity
        return env
