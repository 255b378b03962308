"""data_refresh: an example upstream flow that refreshes the training data on disk, with a version id.

It writes a fresh train/validation split of scikit-learn's digits to ``$SWEEPFLOW_HOME/data/<version>/digits.npz``
(the version is the flow run's id), which ``examples/train_digits.py`` reads through its ``data_dir`` config key.
The campaign chained after it (``retune_after_refresh`` in ``flows/deployed.py``) derives the same folder from
the same id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from sweepflow.settings import Settings


def data_dir_for(version: str) -> Path:
    """Where the data of refresh ``version`` lives."""
    return Settings().home_dir / "data" / version


@flow(name="data-refresh", log_prints=True)
def data_refresh(seed: int = 0, validation_fraction: float = 0.25) -> str:
    """Write a new split of the digits data; returns the data version (this flow run's id)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    version = str(flow_run.get_id() or f"manual-{seed}")
    features, labels = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features / 16.0, labels, test_size=validation_fraction, random_state=seed, stratify=labels
    )
    out = data_dir_for(version)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "digits.npz", X_train=x_train, y_train=y_train, X_val=x_val, y_val=y_val)
    (out / "VERSION").write_text(version + "\n")
    get_run_logger().info("data version %s: %d train / %d val rows in %s", version, len(y_train), len(y_val), out)
    return version
