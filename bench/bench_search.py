"""Search quality and suggestion latency of the local engines, side by side in one process.

    python bench/bench_search.py quality --seeds 10 --trials 40 --out bench/search_quality.json
    python bench/bench_search.py latency --out bench/search_latency.json

quality: best-found regret on Branin and Hartmann6 (closed form, known optima) after 10 / 20 / 40 trials, median
and IQR over seeds, for W&B random, W&B bayes, Optuna TPE, Optuna GP and a staged pipeline with the same budget
(QMC coarse stage, then GP warm-started from it). Engines are driven through sweepflow's searchers (seeded as a
sweep is), one trial at a time, as with ``num_workers: 1``.

latency: CPU ms per suggestion against N prior finished runs with short (1 row) or 1000-row histories: W&B bayes fed
lean (what the controller does now) beside W&B's unmodified engine given whole histories, and Optuna's samplers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from sweepflow.config import load_sweep_config  # noqa: E402
from sweepflow.local.search import Trial, searcher_for  # noqa: E402
from sweepflow.local.search._sweeps import seeded, sweep_run  # noqa: E402

OPTUNA_JOB = "wandb/sweep-jobs/job-optuna-sweep-scheduler:latest"


# -- objectives -------------------------------------------------------------------------------------------------


def branin(c: dict[str, float]) -> float:
    x, y = c["x1"], c["x2"]
    a, b, cc, r, s, t = 1, 5.1 / (4 * math.pi**2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
    return a * (y - b * x**2 + cc * x - r) ** 2 + s * (1 - t) * math.cos(x) + s


BRANIN_MIN = 0.397887
_A = np.array(
    [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
)
_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(c: dict[str, float]) -> float:
    x = np.array([c[f"x{i}"] for i in range(1, 7)])
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))))


HARTMANN6_MIN = -3.32237
PROBLEMS = {
    "branin": (branin, {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}, BRANIN_MIN),
    "hartmann6": (hartmann6, {f"x{i}": (0.0, 1.0) for i in range(1, 7)}, HARTMANN6_MIN),
}


def _config(space: dict[str, tuple[float, float]], engine: str) -> dict[str, Any]:
    params = {k: {"min": lo, "max": hi} for k, (lo, hi) in space.items()}
    base: dict[str, Any] = {"metric": {"name": "loss", "goal": "minimize"}, "parameters": params}
    if engine.startswith("wandb-"):
        return {**base, "method": engine.removeprefix("wandb-")}
    sampler = {"optuna-tpe": "TPESampler", "optuna-gp": "GPSampler", "optuna-qmc": "QMCSampler"}[engine]
    return {**base, "scheduler": {"job": OPTUNA_JOB, "settings": {"sampler": {"type": sampler}}}}


def _search(problem: str, engine: str, seed: int, trials: int, priors: list[Trial] = ()) -> list[float]:
    fn, space, _ = PROBLEMS[problem]
    searcher = searcher_for(load_sweep_config(_config(space, engine)), seed)
    done: list[Trial] = list(priors)
    values = []
    for i in range(trials):
        config = searcher.suggest(done)
        value = fn(config)
        values.append(value)
        done.append(Trial(f"{engine}-{i}", config, "finished", {"loss": value}, [{"loss": value}]))
    return values


def _staged(problem: str, seed: int, trials: int, coarse: int) -> list[float]:
    """Stage 1: scrambled Sobol over the space; stage 2: GP, warm-started with stage 1's runs as priors."""
    first = _search(problem, "optuna-qmc", seed, coarse)
    fn, space, _ = PROBLEMS[problem]
    qmc = searcher_for(load_sweep_config(_config(space, "optuna-qmc")), seed)
    done: list[Trial] = []
    for i in range(coarse):  # replay stage 1 to get its configs as trials
        c = qmc.suggest(done)
        done.append(Trial(f"p{i}", c, "finished", {"loss": fn(c)}, prior=True))
    assert [t.summary["loss"] for t in done] == first
    return first + _search(problem, "optuna-gp", seed + 1000, trials - coarse, priors=done)


def quality(seeds: int, trials: int) -> dict[str, Any]:
    engines = ["wandb-random", "wandb-bayes", "optuna-tpe", "optuna-gp", "staged-qmc12-gp"]
    out: dict[str, Any] = {}
    for problem, (_, _, best) in PROBLEMS.items():
        for engine in engines:
            t0 = time.process_time()
            curves = []
            for seed in range(seeds):
                if engine.startswith("staged"):
                    values = _staged(problem, seed, trials, 12)
                else:
                    values = _search(problem, engine, seed, trials)
                curves.append(np.minimum.accumulate(np.array(values)) - best)
            at = {}
            for n in (10, 20, 40):
                if n <= trials:
                    regrets = sorted(float(c[n - 1]) for c in curves)
                    q1, q2, q3 = np.percentile(regrets, [25, 50, 75])
                    at[n] = {"median": q2, "q1": q1, "q3": q3}
            out[f"{problem}/{engine}"] = {"regret": at, "cpu_s": time.process_time() - t0}
            print(problem, engine, {n: f"{v['median']:.3g}" for n, v in at.items()}, flush=True)
    return out


# -- latency ----------------------------------------------------------------------------------------------------

LAT_SPACE = {"x1": (-5.0, 10.0), "x2": (0.0, 15.0), "x3": (0.0, 1.0)}


def _prior_trials(n: int, rows: int, rng: random.Random) -> list[Trial]:
    out = []
    for i in range(n):
        c = {k: rng.uniform(lo, hi) for k, (lo, hi) in LAT_SPACE.items()}
        base = branin(c) + c["x3"]
        history = [{"_step": s, "loss": base + 1 / (s + 1), "acc": rng.random(), "lr": 0.1} for s in range(rows)]
        out.append(Trial(f"r{i}", c, "finished", {"loss": history[-1]["loss"], "acc": 0.5}, history))
    return out


def _ms(fn, repeat: int) -> float:
    """Median CPU ms of this process per call (CPU time, not wall: the figure survives a loaded machine)."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times)


def latency(sizes: list[int], repeat: int) -> dict[str, Any]:
    import sweeps

    out: dict[str, Any] = {}
    rng = random.Random(0)
    space = {k: {"min": lo, "max": hi} for k, (lo, hi) in LAT_SPACE.items()}
    bayes = load_sweep_config({"method": "bayes", "metric": {"name": "loss"}, "parameters": space})
    for n in sizes:
        for rows in (1, 1000):
            trials = _prior_trials(n, rows, rng)
            lean = searcher_for(bayes, 1)
            lean.suggest(trials)  # first call builds the run cache, as a controller's first tick does
            row: dict[str, Any] = {"wandb-bayes lean (ms)": _ms(lambda t=trials, s=lean: s.suggest(t), repeat)}

            def unmodified(t=trials) -> None:
                with seeded(1):
                    sweeps.next_run(bayes.engine_config(), [sweep_run(x) for x in t])

            row["wandb-bayes unmodified (ms)"] = _ms(unmodified, max(1, repeat // 2))
            row["ratio"] = row["wandb-bayes unmodified (ms)"] / row["wandb-bayes lean (ms)"]
            if rows == 1:
                for engine in ("optuna-tpe", "optuna-gp"):
                    if engine == "optuna-gp" and n > 400:
                        continue
                    cfg = load_sweep_config({**_config(LAT_SPACE, engine)})
                    s = searcher_for(cfg, 1)
                    s.suggest(trials)
                    # the study is built once; each later call adds one finished trial, as in a sweep
                    extra = list(trials)

                    def step(s=s, extra=extra) -> None:
                        c = s.suggest(extra)
                        extra.append(Trial(f"x{len(extra)}", c, "finished", {"loss": branin(c)}))

                    row[f"{engine} (ms)"] = _ms(step, repeat)
            out[f"{n} runs x {rows} rows"] = row
            print(n, rows, {k: round(v, 1) for k, v in row.items()}, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["quality", "latency"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--sizes", default="100,400,1000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()
    t0 = time.time()
    if args.what == "quality":
        result = quality(args.seeds, args.trials)
    else:
        result = latency([int(s) for s in args.sizes.split(",")], args.repeat)
    meta = {"argv": sys.argv, "load_before": load, "load_after": os.getloadavg(), "wall_s": time.time() - t0}
    print(json.dumps(meta))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "result": result}, indent=1))


if __name__ == "__main__":
    main()
