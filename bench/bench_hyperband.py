"""Hyperband on the digits MLP: epochs saved against no early stopping, at the same run count, and what it costs.

    python bench/bench_hyperband.py --seeds 5 --runs 27 --workers 9 --out bench/hyperband_results.json
    python bench/bench_hyperband.py --smoke    # 1 seed, 3 runs of 9 epochs (tests/local_tests/test_bench_smoke.py)

The same seeded random sweep (the digits space of ``deployments/digits-coarse.yaml``, 81 epochs) runs twice per
seed through :func:`sweepflow.tune` (the real controller, store and W&B ``sweeps`` Hyperband stopper; no process
per run): once with ``early_terminate: {type: hyperband, min_iter: 3, eta: 3}`` and once without. A sweep seed
gives both arms the same configs in the same order, so the difference is the stopper alone. ``workers`` runs
advance side by side, epoch by epoch, as parallel agents would, so the stopper compares them at each band.

Per seed it reports the epochs trained by each arm, the share saved, and the best validation loss of each arm
(``val_loss`` is the best-so-far validation log-loss, as ``examples/train_digits.py`` logs it). Nothing here is
a timing: the figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from examples.train_digits import load_data  # noqa: E402
from sweepflow.tune import tune  # noqa: E402

SPACE = {
    "learning_rate_init": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
    "alpha": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-2},
    "hidden": {"values": [16, 32, 64, 128]},
    "batch_size": {"values": [32, 64, 128]},
}
HYPERBAND = {"type": "hyperband", "min_iter": 3, "eta": 3}
DATA = load_data()


def digits_mlp(config: dict[str, Any]) -> Iterator[dict[str, float]]:
    """The training loop of ``examples/train_digits.py`` as a generator: one row per epoch."""
    from sklearn.metrics import log_loss
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, x_val, y_val = DATA
    classes = np.unique(np.concatenate([y_train, y_val]))
    clf = MLPClassifier(
        hidden_layer_sizes=(int(config["hidden"]),),
        learning_rate_init=float(config["learning_rate_init"]),
        alpha=float(config["alpha"]),
        batch_size=int(config["batch_size"]),
        random_state=0,
    )
    best = float("inf")
    for epoch in range(1, int(config["epochs"]) + 1):
        clf.partial_fit(x_train, y_train, classes=classes if epoch == 1 else None)
        best = min(best, log_loss(y_val, clf.predict_proba(x_val), labels=classes))
        yield {"epoch": epoch, "val_loss": best}


def arm(seed: int, runs: int, workers: int, epochs: int, stopper: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "method": "random",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "run_cap": runs,
        "scheduler": {"num_workers": workers},
        "parameters": {**SPACE, "epochs": {"value": epochs}},
    }
    if stopper:
        config["early_terminate"] = HYPERBAND
    started = time.process_time()
    result = tune(config, digits_mlp, seed=seed)
    epochs = [len(result.store.history(run.id)) for run in result.runs]
    return {
        "state": result.state,
        "runs": len(result.runs),
        "stopped": sum(run.state == "killed" for run in result.runs),
        "epochs": sum(epochs),
        "best_val_loss": result.best_value,
        "configs": [sorted(run.config.items()) for run in result.runs],
        "cpu_s": time.process_time() - started,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=27)
    parser.add_argument("--workers", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=81)
    parser.add_argument("--smoke", action="store_true", help="1 seed, 3 runs of 9 epochs, 3 at a time")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.runs, args.workers, args.epochs = 1, 3, 3, 9
    load, t0 = os.getloadavg(), time.time()
    rows = []
    for seed in range(args.seeds):
        full = arm(seed, args.runs, args.workers, args.epochs, stopper=False)
        hb = arm(seed, args.runs, args.workers, args.epochs, stopper=True)
        same = sorted(map(str, full.pop("configs"))) == sorted(map(str, hb.pop("configs")))
        row = {
            "seed": seed,
            "same_configs": same,
            "no_stopping": full,
            "hyperband": hb,
            "epochs_saved": 1 - hb["epochs"] / full["epochs"],
            "best_loss_ratio": hb["best_val_loss"] / full["best_val_loss"],
        }
        rows.append(row)
        print(
            f"seed {seed}: epochs {full['epochs']} -> {hb['epochs']} ({row['epochs_saved']:.1%} saved, "
            f"{hb['stopped']} of {hb['runs']} runs stopped), best val_loss {full['best_val_loss']:.4f} -> "
            f"{hb['best_val_loss']:.4f} (x{row['best_loss_ratio']:.4f}), same configs: {same}",
            flush=True,
        )
    summary = {
        "median_epochs_saved": statistics.median(r["epochs_saved"] for r in rows),
        "min_epochs_saved": min(r["epochs_saved"] for r in rows),
        "median_best_loss_ratio": statistics.median(r["best_loss_ratio"] for r in rows),
        "max_best_loss_ratio": max(r["best_loss_ratio"] for r in rows),
    }
    meta = {"argv": sys.argv, "load_before": load, "load_after": os.getloadavg(), "wall_s": time.time() - t0}
    print(json.dumps({"summary": summary, "meta": meta}))
    result = {"meta": meta, "summary": summary, "seeds": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
