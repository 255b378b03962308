"""The project's Prefect blocks. Prefect imports this module through sweepflow's ``prefect.collections`` entry
point, so a saved block loads by its type in any process; `prefect block register -m sweepflow` registers them
(``sweepflow`` re-exports them lazily, so the Prefect-free core never imports Prefect unless a block is asked for).

- :class:`SweepflowStore`: where the embedded backend keeps its sweeps (a store URL), saved once in the UI and
  loaded by name, so every deployment of a team points at the same store. The W&B credentials block comes with
  the W&B backend.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field

from sweepflow.backends import Backend, get_backend


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
