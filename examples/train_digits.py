"""Train a small MLP on scikit-learn's digits one epoch at a time, logging every epoch to W&B.

Written the way W&B users write scripts (``wandb.init(config=defaults)``, then read ``wandb.config``)
because sweepflow must drive unmodified user code. Both ways an agent injects hyperparameters work:
``--name=value`` flags (``${args}``) go into the init config, and ``wandb.init`` applies the
``WANDB_SWEEP_PARAM_PATH`` file on top. ``val_loss`` is the best-so-far validation log-loss, so it never
increases: that is what an early-stopping controller compares across runs.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import wandb
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

DEFAULTS: dict[str, Any] = {
    "hidden": 32,
    "layers": 1,
    "learning_rate_init": 1e-3,
    "alpha": 1e-4,
    "batch_size": 64,
    "epochs": 30,
    "activation": "relu",
    "data_dir": "",  # a folder with digits.npz (written by the data-refresh flow); empty: scikit-learn's copy
}


def cli_overrides(argv: list[str] | None = None) -> dict[str, Any]:
    """Return just the config keys given as flags (unset ones must not mask defaults); ignore unknowns."""
    parser = argparse.ArgumentParser(description="Train an MLP on digits, logging to W&B.")
    for key, default in DEFAULTS.items():
        parser.add_argument(f"--{key}", type=type(default), default=argparse.SUPPRESS)
    known, _unknown = parser.parse_known_args(argv)
    return vars(known)


def load_data(data_dir: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``X_train, y_train, X_val, y_val`` from ``data_dir/digits.npz`` (config, else $SWEEPFLOW_DATA_DIR).

    That lets a data-refresh flow swap the data without editing this script; its arrays are used as
    given, so they must already be scaled features (load_digits pixels are divided by 16 here).
    """
    data_dir = data_dir or os.environ.get("SWEEPFLOW_DATA_DIR", "")
    if data_dir and (path := Path(data_dir) / "digits.npz").is_file():
        with np.load(path) as npz:
            return npz["X_train"], npz["y_train"], npz["X_val"], npz["y_val"]
    features, labels = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(features / 16.0, labels, test_size=0.25, random_state=0)
    return x_train, y_train, x_val, y_val


def main() -> None:
    """Train for ``config.epochs`` epochs, logging one row per epoch and the final accuracy to summary."""
    wandb.init(config={**DEFAULTS, **cli_overrides()})
    cfg = wandb.config
    x_train, y_train, x_val, y_val = load_data(str(cfg.data_dir))
    classes = np.unique(np.concatenate([y_train, y_val]))
    clf = MLPClassifier(
        hidden_layer_sizes=(int(cfg.hidden),) * int(cfg.layers),
        activation=cfg.activation,
        learning_rate_init=float(cfg.learning_rate_init),
        alpha=float(cfg.alpha),
        batch_size=int(cfg.batch_size),
        random_state=0,
    )
    # scikit-learn's MLP swallows KeyboardInterrupt inside partial_fit ("Training interrupted by user"), so a
    # stop request (SIGINT, as W&B's agent sends) would be ignored; end after the current epoch instead.
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    best_val_loss, acc = float("inf"), 0.0
    for epoch in range(1, int(cfg.epochs) + 1):
        if stop:
            break
        # partial_fit needs the full label set up front: a batch may not contain every class.
        clf.partial_fit(x_train, y_train, classes=classes if epoch == 1 else None)
        best_val_loss = min(best_val_loss, log_loss(y_val, clf.predict_proba(x_val), labels=classes))
        acc = float(clf.score(x_val, y_val))
        wandb.log({"epoch": epoch, "val_loss": best_val_loss, "val_acc": acc, "train_loss": clf.loss_})
    wandb.summary["final_val_acc"] = acc
    wandb.finish()


if __name__ == "__main__":
    main()
