"""The files sweepflow ships beside its code: the demo campaign, its sweep configs, job registry and training script.

They live in the repository's ``deployments/`` and ``examples/`` folders and are installed as the packages
``sweepflow.deployments`` and ``sweepflow.examples``; reading them through :mod:`importlib.resources` finds them
the same way from a wheel and from a checkout, so ``sweepflow demo`` needs no checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_SPEC = "digits-campaign.yaml"


def deployments_dir() -> Path:
    """The shipped ``deployments/`` folder (a real folder: sweepflow is never installed zipped)."""
    return Path(str(files("sweepflow.deployments")))


def examples_dir() -> Path:
    """The shipped ``examples/`` folder, holding the demo's training script."""
    return Path(str(files("sweepflow.examples")))


def demo_spec() -> Path:
    """The demo campaign's pipeline spec."""
    return deployments_dir() / DEMO_SPEC


def shipped_spec(path: str | Path) -> Path | None:
    """``deployments/<name>`` resolved among the shipped specs, or None: what a deployment's default spec path
    means when its working directory is not a checkout (the wheel installed on a worker)."""
    parts = Path(path).parts
    if len(parts) != 2 or parts[0] != "deployments":
        return None
    candidate = deployments_dir() / parts[1]
    return candidate if candidate.is_file() else None
