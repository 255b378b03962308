"""W&B's own verdict on a sweep config dict, for differential tests of our models.

It is the policy of ../shared/compat/sweep_configs/_sweepflow_expected.py, on an already-parsed mapping:
W&B's schema validator and a dry run of its engine, launch-sweep's handling of the Launch keys, the log_uniform
deprecation notice not counted as an error, plus the one place we are deliberately stricter than W&B: its
min < max and probability checks are applied to nested parameters too (W&B applies them only at the top level).
"""

from __future__ import annotations

import multiprocessing
import random
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import sweeps
    from sweeps.config.schema import validate_categorical_prob, validate_min_max

LAUNCH_SCHEDULER = ("job", "resource", "num_workers", "settings", "image_uri", "docker_image", "resource_args")


def _launch_form(key: str, value: Any) -> bool:
    if key == "job":
        return isinstance(value, str)
    if key == "launch":
        return isinstance(value, dict)
    return isinstance(value, dict) and "engine" not in value and any(x in value for x in LAUNCH_SCHEDULER)


def _nested_leaves(parameters: Any, depth: int = 0):
    if not isinstance(parameters, dict):
        return
    for name, spec in parameters.items():
        if isinstance(spec, dict) and isinstance(spec.get("parameters"), dict):
            yield from _nested_leaves(spec["parameters"], depth + 1)
        elif depth and isinstance(spec, dict):
            yield name, spec


def wandb_accepts(cfg: dict[str, Any]) -> bool:
    """Whether W&B (plus launch-sweep, minus the deprecation notice) would run this config."""
    stripped = [k for k in ("job", "launch", "scheduler") if k in cfg and _launch_form(k, cfg[k])]
    if isinstance(cfg.get("queue"), str):
        stripped.append("queue")
    c = {k: v for k, v in cfg.items() if k not in stripped}
    if "method" not in c and "scheduler" in stripped:
        settings = cfg["scheduler"].get("settings")
        method = settings.get("method") if isinstance(settings, dict) else None
        if method:
            c["method"] = method
        elif cfg["scheduler"].get("job"):
            c["method"] = "custom"
    try:
        violations = [str(m) for m in sweeps.schema_violations_from_proposed_config(c)]
    except Exception:
        return False
    if [m for m in violations if "specify base-e exponents" not in m]:
        return False
    for name, spec in _nested_leaves(c.get("parameters")):
        try:
            validate_min_max(name, spec)
            validate_categorical_prob(name, spec)
        except (ValueError, TypeError):
            return False
    if c.get("early_terminate") is not None:
        try:  # W&B's engine checks Hyperband's needs (a metric) only when it first runs it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sweeps.stop_runs(c, [])
        except Exception:
            return False
    if c.get("method") in ("grid", "random", "bayes"):
        state, np_state = random.getstate(), np.random.get_state()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sweeps.next_run(c, [])
        except Exception:
            return False
        finally:
            random.setstate(state)
            np.random.set_state(np_state)
    return True


def engine_next_run(engine_config: dict[str, Any], trials: list[Any], seed: int) -> tuple[dict[str, Any] | None, Any]:
    """W&B's unmodified engine's next run for ``trials`` (whole histories), the global RNGs seeded with ``seed``:
    its values and search info, as plain JSON types. The engine draws from the global RNGs, so differential tests
    call this in a process of its own (``engine_process``): in the test process a Prefect or wandb worker thread
    left by an earlier test can draw from ``random`` between the seeding and the engine's draw."""
    from sweepflow.local.search import to_json
    from sweepflow.local.search._sweeps import seeded, sweep_run

    with seeded(seed):
        run = sweeps.next_run(engine_config, [sweep_run(t) for t in trials])
    if run is None:
        return None, None
    return to_json({k: v["value"] for k, v in run.config.items()}), to_json(run.search_info)


@contextmanager
def engine_process() -> Iterator[Callable[[dict[str, Any], list[Any], int], tuple[dict[str, Any] | None, Any]]]:
    """:func:`engine_next_run` in a fresh process of its own, which no other thread shares."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda config, trials, seed: pool.submit(engine_next_run, config, list(trials), seed).result()
