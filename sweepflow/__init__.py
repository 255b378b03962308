"""sweepflow: run whole W&B hyperparameter campaigns as one durable Prefect DAG.

The core (config models, backends, analysis, the CLI) never imports Prefect. The Prefect tasks and flows are
``sweepflow.tasks`` and ``sweepflow.flows`` (the repository's ``tasks/`` and ``flows/`` folders, installed under
this one import name); they depend on the core, never the other way round.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sweepflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

#: Prefect blocks, defined outside the core (sweepflow.tasks.blocks) and loaded only when asked for, so that
#: `prefect block register -m sweepflow` finds them while `import sweepflow` never imports Prefect.
_BLOCKS = ("SweepflowStore", "WandbCredentials")


def __getattr__(name: str) -> object:
    if name in _BLOCKS:
        from sweepflow.tasks import blocks

        return getattr(blocks, name)
    raise AttributeError(f"module 'sweepflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_BLOCKS])
