"""W&B's own engine (the ``sweeps`` package): grid / random / bayes and Hyperband, seeded and fed lean.

``sweeps`` is pure (config and prior runs in, suggestions out) but it draws from the global ``random`` and
``numpy`` states, takes dict configs, and returns numpy scalars that JSON cannot hold. This module is the one
place that knows that: every suggestion draws from generators seeded from ``(sweep seed, n)``, and values come back
as plain JSON types. random and bayes are computed here and draw from private generators in the global ones'
seeded state (the same numbers; another thread drawing from ``random`` or ``numpy`` meanwhile, a Prefect or
wandb worker, cannot move them); what still runs in the engine (grid) runs with the global RNGs seeded and
restored afterwards.

What the engine reads of a run is small, so that is all it is given. bayes reads the metric's minimum or maximum
over the history and summary, and the last valid history value (``impute: latest``); nothing else of a history.
So each run reaches it as at most three history rows (min, max, last of the valid values) and a one-key
summary, and the :class:`SweepRun` built from that is cached while the run does not change (its state, history
length and summary value). The bayes suggestion itself is W&B's, computed by :mod:`sweepflow.local.search._bayes`
without the per-call work that does not change between suggestions. The suggestions and their search info are
identical to the unmodified engine's given whole histories (``tests/search_tests/test_sweeps_engine.py``).

random reads no run at all, and the engine re-validates the whole parameter space (jsonschema, ~2 ms) on every
call: here it is validated once and sampled as ``sweeps.random_search_next_runs`` samples it, so a random
suggestion costs neither that nor a walk over the runs (issue 13: ``bench/bench_scale.py``); the common kinds'
quantile functions are scipy's arithmetic without scipy's call overhead (:func:`fast_ppf`). Same draws, same
configs (tested against the engine).
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from sweepflow.config import SweepConfig
from sweepflow.local.search._base import Searcher, Stopper, Trial, to_json

if TYPE_CHECKING:  # imported at the first bayes suggestion: scipy.stats and scikit-learn take seconds on a busy box
    from sweepflow.local.search._bayes import LeanBayes

with warnings.catch_warnings():  # sweeps' pydantic config emits a v1-style deprecation warning on import
    warnings.simplefilter("ignore")
    import sweeps
    from sweeps import RunState, SweepRun
    from sweeps.params import HyperParameter, HyperParameterSet
    from sweeps.run import is_number


def as_seed(seed: int | np.random.Generator | None) -> int:
    """An int seed from an int, a Generator (one draw) or None (a fresh random seed)."""
    if seed is None:
        seed = np.random.default_rng()
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**32 - 1))
    return int(seed)


def engine_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as the engine reads it: nested dicts also under their dotted names.

    A run's history rows are flat (``wandb.log({"val": {"acc": 1}})`` is the row key ``"val.acc"``), its summary
    nested; ``sweeps`` looks ``metric.name`` up as one key in both (``SweepRun.metric_history`` and
    ``summary_metric``), so without this bayes would never find ``val.acc`` in a summary while Hyperband finds
    it in the history. The rule is :func:`sweepflow.ranking.lookup`'s: the key itself wins, then the path.
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{name}.", value)
            if prefix:
                flat.setdefault(name, value)

    walk("", summary)
    return {**flat, **summary}


def sweep_run(trial: Trial) -> SweepRun:
    """The trial as the engine's run model (unknown states are pending to it)."""
    state = trial.state if trial.state in RunState.__members__ else "pending"
    return SweepRun(
        name=trial.id,
        config={k: {"value": v} for k, v in trial.config.items()},
        state=RunState(state),
        summary_metrics=engine_summary(dict(trial.summary)),
        history=list(trial.history),
    )


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the engine with the global RNGs seeded from ``seed``; leave them as they were found."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _valid(value: Any) -> bool:
    # sweeps.run.is_number, with the two common cases first (it costs ~2 us a call, and there are 400k calls).
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int or is_number(value)


def _lean(trial: Trial, metric: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What bayes reads of a run: a one-key summary, and the min / max / last of its valid history values."""
    if metric is None:
        return {}, []
    summary = {metric: trial.summary[metric]} if metric in trial.summary else {}
    valid = [row[metric] for row in trial.history if metric in row and _valid(row[metric])]
    kept = (min(valid), max(valid), valid[-1]) if valid else ()
    return summary, [{metric: v} for v in kept]


class SweepsSearcher(Searcher):
    """grid / random / bayes, exactly as W&B's cloud controller runs them, with an explicit seed."""

    def __init__(self, config: SweepConfig, seed: int | np.random.Generator | None = None):
        self._config = config.engine_config()
        self.seed = as_seed(seed)
        # grid and random never read metrics: their runs need only configs.
        self._metric = config.metric.name if config.metric and config.method == "bayes" else None
        self._runs: dict[str, tuple[tuple[Any, ...], SweepRun]] = {}
        # random: the space, validated once (what random_search_next_runs builds on every call)
        self._space = HyperParameterSet.from_config(self._config["parameters"]) if config.method == "random" else None
        self._bayes: LeanBayes | None = None  # bayes: built at the first suggestion (and raising there, as sweeps)
        self._fast = [fast_ppf(param) for param in self._space or []]
        self.last_info: dict[str, Any] | None = None  # the engine's search_info (bayes: EI, prediction)

    def engine_runs(self, trials: Sequence[Trial]) -> list[SweepRun]:
        """The runs handed to the engine: lean, and reused while a trial is unchanged."""
        out = []
        metric = self._metric
        for trial in trials:
            # Histories only grow, so (state, length, summary value) tells whether a run changed, in O(1).
            key = (trial.state, len(trial.history), repr(trial.summary.get(metric)) if metric else None)
            cached = self._runs.get(trial.id)
            if cached is None or cached[0] != key:
                summary, history = _lean(trial, metric)
                run = sweep_run(Trial(trial.id, trial.config, trial.state, summary, history))
                cached = self._runs[trial.id] = (key, run)
            out.append(cached[1])
        return out

    def load(self) -> None:
        if self._config["method"] == "bayes":  # scikit-learn: imported at the first bayes suggestion otherwise
            import sweepflow.local.search._bayes  # noqa: F401

    def suggest(self, trials: Sequence[Trial]) -> dict[str, Any] | None:
        seed = self._suggestion_seed(trials)
        if self._space is not None:
            return {k: to_json(v["value"]) for k, v in self._random_config(random.Random(seed)).items()}
        runs = self.engine_runs(trials)
        if self._config["method"] == "bayes":
            if self._bayes is None:
                from sweepflow.local.search._bayes import LeanBayes

                self._bayes = LeanBayes(self._config)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config, info = self._bayes.next_run(runs, np.random.RandomState(seed))
        else:
            with seeded(seed):
                run = sweeps.next_run(self._config, runs)
                if run is None:
                    return None
                config, info = run.config, run.search_info
        self.last_info = to_json(info) if info else None
        return {k: to_json(v["value"]) for k, v in config.items()}

    def _random_config(self, rng: random.Random) -> dict[str, Any]:
        """One draw of ``sweeps.random_search_next_runs`` (the engine's loop, on the space validated once): each
        parameter's ``sample()`` is ``ppf(random.uniform(0, 1))``, here with :func:`fast_ppf` where it applies,
        and ``rng`` in place of the global ``random``."""
        assert self._space is not None
        for param, fast in zip(self._space, self._fast, strict=True):
            q = rng.uniform(0.0, 1.0)
            param.value = fast(q) if fast is not None and 0.0 < q < 1.0 else param.ppf(q)
        return self._space.to_config()


def _randint_ppf(q: float, low: int, high: int) -> int:
    """``scipy.stats.randint.ppf(q, low, high)`` for 0 < q < 1: scipy's ``_ppf`` and ``_cdf``, operation for
    operation (float64 throughout; Python ints are exact below 2**53)."""
    vals = math.ceil(q * (high - low) + low) - 1
    vals1 = min(max(vals - 1, low), high)
    return vals1 if (math.floor(vals1) - low + 1.0) / (high - low) >= q else vals


def fast_ppf(param: HyperParameter) -> Callable[[float], Any] | None:
    """The engine's ``param.ppf(q)`` for 0 < q < 1, for the common kinds: the same float operations scipy performs
    (so the same values, tested against the engine for every kind), without scipy's per-call argument handling,
    which cost ~0.2 ms a parameter: most of a random suggestion, at every scheduling decision (issue 13, "Scale").
    None for the kinds left to the engine."""
    c = param.config
    if param.type == HyperParameter.UNIFORM:  # stats.uniform.ppf(q, min, max - min): q * scale + loc
        loc, scale = c["min"], c["max"] - c["min"]
        return lambda q: q * scale + loc
    if param.type == HyperParameter.LOG_UNIFORM_V2:  # exp of the uniform ppf between the logs, in numpy
        low, high = np.log(c["min"]), np.log(c["max"])
        return lambda q: np.exp(q * (high - low) + low)
    if param.type == HyperParameter.INT_UNIFORM:
        first, end = c["min"], c["max"] + 1
        return lambda q: _randint_ppf(q, first, end)
    if param.type == HyperParameter.CATEGORICAL:
        values = c["values"]
        return lambda q: values[_randint_ppf(q, 0, len(values))]
    return None


class HyperbandStopper(Stopper):
    """Which running trials Hyperband stops now; stop-only, as in W&B (bands count logged metric values)."""

    def __init__(self, config: SweepConfig):
        self._config = config.engine_config()
        self._config.pop("scheduler", None)  # Hyperband beside an Optuna sampler: the engine needs no scheduler
        if self._config.get("method") == "custom":
            self._config["method"] = "random"
        self.enabled = config.early_terminate is not None and config.metric is not None

    def to_stop(self, trials: Sequence[Trial]) -> dict[str, str]:
        """Trial id -> reason, for the running trials that fall behind at a band."""
        if not self.enabled or not any(t.state == "running" for t in trials):
            return {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stopped = sweeps.stop_runs(self._config, [sweep_run(t) for t in trials])
        return {run.name: _reason(run) for run in stopped if run.name is not None}


def _reason(run: SweepRun) -> str:
    # The engine explains itself in free-text lines; keep the verdict line ("Band: 3 Metric: .. Threshold: ..").
    lines = (run.early_terminate_info or {}).get("lines") or []
    mine = [" ".join(str(line).split()) for line in lines if f"Run: {run.name} " in str(line) and "STOP" in str(line)]
    verdict = mine[-1] if mine else "behind at a band"
    return f"hyperband: {verdict}"
