"""A second opinion from W&B itself: its schema validator and a dry run of its search engine.

Our models are written to accept exactly what W&B accepts (the differential tests hold them to it). This module
asks W&B's own code anyway, after our models passed, so that a corner we missed is still refused up front rather
than failing at run time. W&B's validator crashes on some malformed input; nothing here ever raises.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np

from sweepflow.errors import Issue

# W&B lists its deprecation notice for log_uniform & co. among violations; ours is a warning (see lint.py).
_DEPRECATION = "specify base-e exponents"


def wandb_violations(engine_config: dict[str, Any]) -> list[Issue]:
    """What W&B's validator and engine reject in ``engine_config`` (already valid by our models)."""
    with warnings.catch_warnings():  # sweeps' pydantic-v1-style config warns on import; not the user's business
        warnings.simplefilter("ignore")
        import sweeps  # deferred: importing the engine costs ~0.5 s, which `--help` need not pay

    try:
        found = [str(m) for m in sweeps.schema_violations_from_proposed_config(engine_config)]
    except Exception as exc:  # W&B's validator crashes on some shapes; report, never raise
        found = [f"W&B's validator failed on this config ({type(exc).__name__}: {exc})"]
    issues = [Issue("", f"W&B rejects this config: {' '.join(m.split())}") for m in found if _DEPRECATION not in m]
    if issues or engine_config.get("method") not in ("grid", "random", "bayes"):
        return issues
    # The engine checks some things only when asked for a run; ask once, without disturbing global RNGs.
    state, np_state = random.getstate(), np.random.get_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _first_run(engine_config)
    except Exception as exc:
        issues.append(Issue("", f"W&B's search engine rejects this config: {' '.join(str(exc).split())}"))
    finally:
        random.setstate(state)
        np.random.set_state(np_state)
    return issues


def _first_run(engine_config: dict[str, Any]) -> None:
    """``sweeps.next_run(engine_config, [])``, calling the method's own function as ``sweeps.run.next_runs`` does
    once its checks (a method, a non-empty parameters dict: our models require both) have passed. ``next_runs``
    imports all three methods first, bayes with scikit-learn and pandas (~0.7 s of CPU), which a grid or random
    config never needs: every process that loads a config file would pay it (``launch-sweep``, a flow re-run)."""
    import sweeps

    method = engine_config["method"]
    if method == "random":
        from sweeps.random_search import random_search_next_runs

        random_search_next_runs(engine_config, validate=False, n=1)
    elif method == "grid":
        from sweeps.grid_search import grid_search_next_runs

        grid_search_next_runs([], engine_config, validate=False, n=1)
    else:
        sweeps.next_run(engine_config, [])
