"""How long the search engine takes to suggest a config (``sweeps.next_run`` through sweepflow's searcher), by
method and number of finished trials: the part of a dispatch that the controller's look-ahead hides.

Usage (from the repository root)::

    .venv/bin/python bench/bench_engine.py            # random and bayes at 0 / 1 / 5 / 10 / 19 finished trials
    .venv/bin/python bench/bench_engine.py --smoke    # two sizes, one repetition (the test suite runs it)

Writes JSON (``--out``, default ``bench/engine_results.json``) and prints medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine

sys.path.insert(0, str(ROOT))


def config(method: str) -> dict[str, Any]:
    return {
        "method": method,
        "program": str(ROOT / "examples" / "train_digits.py"),
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {
            "learning_rate_init": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "alpha": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-2},
            "epochs": {"value": 80},
            "hidden": {"value": 32},
            "batch_size": {"value": 64},
        },
    }


def suggest_latency(sizes: list[int], reps: dict[str, int]) -> dict[str, Any]:
    import numpy as np

    from sweepflow.config import SweepConfig
    from sweepflow.local.search import SweepsSearcher, Trial

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for method, n_reps in reps.items():
        searcher = SweepsSearcher(SweepConfig.model_validate(config(method)), np.random.default_rng(1))
        out[method] = {}
        for n in sizes:
            trials = [
                Trial(
                    f"t{i}",
                    {
                        "learning_rate_init": float(10 ** rng.uniform(-4, -2)),
                        "alpha": float(10 ** rng.uniform(-6, -2)),
                        "epochs": 80,
                        "hidden": 32,
                        "batch_size": 64,
                    },
                    "finished",
                    {"val_loss": float(rng.uniform(0.05, 0.5))},
                )
                for i in range(n)
            ]
            samples = []
            for _ in range(n_reps):
                t0 = time.perf_counter()
                searcher.suggest(trials)
                samples.append(time.perf_counter() - t0)
            out[method][str(n)] = {"median_ms": statistics.median(samples) * 1e3, "max_ms": max(samples) * 1e3}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="two sizes, one repetition")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "engine_results.json")
    args = parser.parse_args(argv)
    sizes = [0, 1] if args.smoke else [0, 1, 5, 10, 19]
    reps = {"random": 1, "bayes": 1} if args.smoke else {"random": 10, "bayes": 3}
    suggest_latency([0], {"random": 1})  # imports and first-call caches are not what we measure
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "suggest": suggest_latency(sizes, reps),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for method, by in result["suggest"].items():
        print(f"{method}: " + ", ".join(f"{n} trials {v['median_ms']:.1f} ms" for n, v in by.items()))
    return result


if __name__ == "__main__":
    main()
