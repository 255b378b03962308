"""W&B's bayes suggestion (``sweeps.bayes_search.bayes_search_next_run``): the same draws and the same
suggestions, without the work that does not change between two suggestions of a sweep.

What ``sweeps`` does on every call, and what is done here instead (issue 13, "Fast"; measured in
``bench/RESULTS.md``, "Suggestion latency"):

* validates and fills the metric block (a deep copy and jsonschema) and parses the parameter space: once.
* walks every run: the parameter values it reads from a run's config, and the metric values it reads of a run
  (best, worst and latest), are kept per run while the run object is the same (``SweepsSearcher`` builds a new
  one when a run changes); each call only assembles them, in the engine's order and with its imputation rules.
* draws the 1000 candidate points one ``np.random.uniform()`` at a time: here in one call, which draws the same
  numbers in the same order.
* asks the GP for the full 1000 x 1000 posterior covariance of the candidates and keeps its diagonal: here the
  diagonal is ``kernel.diag(X) - diag(V_b.T @ V_b)`` block by block, the very same sums for each entry. (That
  rests on BLAS summing an entry of ``V.T @ V`` alike for a block of columns and for all of them: checked with
  numpy 1.26's OpenBLAS 0.3.23, blocks of 8 or more, 1 and 2 threads. The tests compare the search info bit for
  bit, so a BLAS where it does not hold fails them.)
* fits its GP through scikit-learn's generic kernel machinery: :mod:`sweepflow.local.search._gp` computes the
  same log-marginal likelihood without it.

Everything from the fitted GP to the config (expected improvement, the kernel-bounds fallback, ``ppf``) is
W&B's code. The draws the engine makes from the global numpy RNG come here from a generator passed in (seeded as
the engine's global one would be), in the engine's order, so ``tests/search_tests/test_sweeps_engine.py``
can require identical configs and search info.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from scipy.linalg import solve_triangular

from sweepflow.local.search._gp import train_gaussian_process

with warnings.catch_warnings():  # sweeps' pydantic config emits a v1-style deprecation warning on import
    warnings.simplefilter("ignore")
    from sweeps import RunState, SweepRun
    from sweeps.bayes_search import (
        STD_NUMERICAL_STABILITY_EPSILON,
        ImputeStrategy,
        bayes_baseline_validate_and_fill,
        filter_nans,
    )
    from sweeps.params import HyperParameter, HyperParameterSet
    from sweeps.run import is_number, run_state_is_terminal

NUM_POINTS_TO_TRY = 1000  # sweeps.bayes_search.next_sample's default, which bayes_search_next_run keeps
BLOCK = 50  # candidates per block of the covariance diagonal
_SAMPLED = (RunState.finished, RunState.failed, RunState.crashed, RunState.killed)
_WAITING = (RunState.preempting, RunState.preempted, RunState.pending)


@dataclass(frozen=True)
class RunValues:
    """What bayes reads of one run, read once by the engine's own accessors."""

    x: np.ndarray  # the value per searchable parameter, as normalize_runs_as_array reads it (before its CDF)
    state: RunState
    best: Any  # the metric's extremum in the goal's direction, None when the run has no finite value
    worst: Any  # ... in the other direction (for impute: worst)
    latest: Any  # the last finite value logged, 0.0 when none (impute: latest)


class LeanBayes:
    """``bayes_search_next_run`` for one sweep config, over runs that are reused while they do not change."""

    def __init__(self, engine_config: dict[str, Any]):
        self.config = bayes_baseline_validate_and_fill(engine_config)
        metric = self.config["metric"]
        self.goal, self.name = metric["goal"], metric["name"]
        self.impute = ImputeStrategy(metric["impute"])
        self.while_running = metric.get("impute_while_running")
        self.params = HyperParameterSet.from_config(self.config["parameters"])
        self._values: dict[str | None, tuple[SweepRun, RunValues]] = {}

    def values(self, run: SweepRun) -> RunValues:
        """The run's values, read again only when ``run`` is another object than last time."""
        cached = self._values.get(run.name)
        if cached is not None and cached[0] is run:
            return cached[1]
        params = self.params
        x = np.zeros(len(params.searchable_params))
        for name, i in params.param_names_to_index.items():
            value = params._get_val_from_config(run.config, name)
            if not value:  # the engine's own rule: a missing or falsy value stays 0
                continue
            param = params.param_names_to_param[name]
            x[i] = param.value_to_idx(value) if param.type == HyperParameter.CATEGORICAL else value
        goal_kind = "maximum" if self.goal == "maximize" else "minimum"
        other_kind = "minimum" if self.goal == "maximize" else "maximum"
        history = run.metric_history(self.name, filter_invalid=True)
        values = RunValues(
            x, RunState(run.state), _extremum(run, self.name, goal_kind), _extremum(run, self.name, other_kind),
            history[-1] if history else 0.0,
        )  # fmt: skip
        self._values[run.name] = (run, values)
        return values

    def _normalized(self, runs: Sequence[RunValues]) -> np.ndarray:
        """``HyperParameterSet.normalize_runs_as_array``: each parameter's CDF over all runs in one call."""
        raw = np.array([r.x for r in runs]).reshape(len(runs), len(self.params.searchable_params))
        out = np.zeros((raw.shape[1], raw.shape[0]))
        for name, i in self.params.param_names_to_index.items():
            row = np.ascontiguousarray(raw[:, i])
            keep = ~np.isnan(row)
            out[i, keep] = self.params.param_names_to_param[name].cdf(row[keep])
        return np.transpose(out)

    def _gp_data(self, runs: Sequence[RunValues]) -> tuple[np.ndarray, Any, np.ndarray, str]:
        """``sweeps.bayes_search._construct_gp_data`` from the cached values: sample_X, current_X, y, warnings."""
        if len(self.params.searchable_params) == 0:
            raise ValueError("Need at least one searchable parameter for bayes search.")
        maximize = self.goal == "maximize"
        worst_func = min if maximize else max
        worst: Any = np.inf if maximize else -np.inf
        for r in runs:
            if run_state_is_terminal(r.state) and r.worst is not None:
                worst = worst_func(worst, r.worst)
        worst_metric = worst if np.isfinite(worst) else 0.0

        def imputed(r: RunValues, strategy: ImputeStrategy) -> Any:
            if strategy == ImputeStrategy.best:
                return 0.0 if r.best is None else r.best
            if strategy == ImputeStrategy.worst:
                return worst_metric
            return r.latest

        def metric(r: RunValues, strategy: ImputeStrategy) -> Any:
            return r.best if r.best is not None else imputed(r, strategy)

        sample_X: Any = []
        current_X: Any = []
        y: Any = []
        for r, x in zip(runs, self._normalized(runs), strict=True):
            if r.state == RunState.finished:
                y.append(metric(r, self.impute))
                sample_X.append(x)
            elif r.state in _SAMPLED:
                y.append(imputed(r, self.impute))
                sample_X.append(x)
            elif r.state == RunState.running and self.while_running not in ("false", None):
                y.append(metric(r, ImputeStrategy(self.while_running)))
                sample_X.append(x)
            elif r.state == RunState.running or r.state in _WAITING:
                current_X.append(x)
            else:
                raise ValueError("Run is in unknown state")
        sample_X = np.asarray(sample_X) if sample_X else np.empty([0, 0])
        if current_X:
            current_X = np.array(current_X)
        y = np.asarray(y)
        if len(y) > 0:
            y[~np.isfinite(y)] = worst_metric
        warns = ""
        # is_number per entry, which for a numeric array is np.isfinite (its entries are numpy Numbers, not bools)
        numbers = np.isfinite(y) if y.dtype.kind in "fiu" else np.asarray(list(map(is_number, y)))
        if len(y) == 0 or y[~numbers].size == len(y):
            warns += "\nSweep has no valid samples of the metric."
        y *= -1 if maximize else 1
        return sample_X, current_X, y, warns

    def next_run(self, runs: Sequence[SweepRun], rng: np.random.RandomState) -> tuple[dict[str, Any], dict[str, Any]]:
        """The suggested config (``{name: {"value": v}}``, as the engine returns it) and its search info; ``rng``
        makes the draws the engine makes from ``np.random``."""
        sample_X, current_X, y, warns = self._gp_data([self.values(r) for r in runs])
        d = len(self.params.searchable_params)
        x, info = _next_sample(sample_X, y, d, current_X if len(current_X) > 0 else None, rng)
        for param in self.params:
            if param.type != HyperParameter.CONSTANT:
                param.value = param.ppf(x[self.params.param_names_to_index[param.name]])
        info["warnings"] = warns + info["warnings"]
        return self.params.to_config(), info


def _extremum(run: SweepRun, name: str, kind: str) -> Any:
    try:
        return run.metric_extremum(name, kind=kind)
    except ValueError:
        return None


def _next_sample(
    sample_X: np.ndarray, y: np.ndarray, d: int, current_X: Any, rng: np.random.RandomState
) -> tuple[np.ndarray, dict[str, Any]]:
    """``sweeps.bayes_search.next_sample`` with ``X_bounds = [[0.0, 1.0]] * d``, as bayes_search_next_run calls it."""
    sample_X, y = np.array(sample_X), np.array(y)
    if len(sample_X.shape) != 2:
        raise ValueError("Sample X must be a 2 dimensional array")
    if len(y.shape) != 1:
        raise ValueError("Sample y must be a 1 dimensional array")
    if sample_X.shape[0] != y.shape[0]:
        raise ValueError("Sample X and y must be same length")
    X, fy = filter_nans(sample_X, y)
    if X.shape[0] < 2:  # too few points to fit: a random point
        prediction = 0.0 if X.shape[0] < 1 else fy[0]
        return rng.uniform(size=(1, d))[0], _info(1.0, prediction, np.nan, np.nan, "")
    gp, y_mean, y_stddev = train_gaussian_process(X, fy, current_X, rng=rng)
    # next_sample's random_sample draws np.random.uniform() row by row: u * (1.0 - 0.0) + 0.0 == u
    test_X = rng.uniform(size=(NUM_POINTS_TO_TRY, d))
    y_pred, y_pred_std = _predict(gp, test_X)
    min_norm_y = (np.min(fy) - y_mean) / y_stddev
    Z = -(y_pred - min_norm_y) / (y_pred_std + STD_NUMERICAL_STABILITY_EPSILON)
    prob_of_improve = scipy_stats.norm.cdf(Z)
    e_i = -(y_pred - min_norm_y) * scipy_stats.norm.cdf(Z) + y_pred_std * scipy_stats.norm.pdf(Z)
    best = np.argmax(e_i)
    # A kernel length scale at its bounds is a bad fit: the engine then proposes a random candidate.
    close = np.isclose(gp.kernel_.bounds, np.atleast_2d(gp.kernel_.theta).T)
    warns, idx = "", 0
    for hyp in gp.kernel_.hyperparameters:
        if hyp.fixed:
            continue
        for _ in range(hyp.n_elements):
            if close[idx, 0] or close[idx, 1]:
                warns = (
                    "\n Some dimmensions of kernel are close to their bounds (bad fit), the next sample will be a "
                    "random sample within parameter space"
                )
                best = rng.randint(0, test_X.shape[0] - 1)
                break
            idx += 1
    z_best = -(y_pred[best] - min_norm_y) / (y_pred_std[best] + STD_NUMERICAL_STABILITY_EPSILON)
    improvement = -(y_pred[best] - min_norm_y) * scipy_stats.norm.cdf(z_best)
    improvement = improvement + y_pred_std[best] * scipy_stats.norm.pdf(z_best)
    predicted, std_dev = y_pred[best] * y_stddev + y_mean, y_pred_std[best] * y_stddev
    return test_X[best], _info(prob_of_improve[best], predicted, std_dev, improvement, warns)


def _info(probability: Any, predicted: Any, std_dev: Any, improvement: Any, warns: str) -> dict[str, Any]:
    """bayes_search_next_run's search_info, in its key order."""
    return {
        "success_probability": probability,
        "predicted_value": predicted,
        "predicted_value_std_dev": std_dev,
        "expected_improvement": improvement,
        "warnings": warns,
    }


def _predict(gp: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``gp.predict(X, return_cov=True)`` reduced to what next_sample keeps: the mean and sqrt(diag(cov)).

    sklearn's steps, except that the diagonal of ``V.T @ V`` is taken block by block, which gives the same
    entries (each the same sum, taken by the same BLAS routine) without the 1000 x 1000 matrix.
    """
    K_trans = gp.kernel_(X, gp.X_train_)
    y_mean = gp._y_train_std * (K_trans @ gp.alpha_) + gp._y_train_mean
    if y_mean.ndim > 1 and y_mean.shape[1] == 1:
        y_mean = np.squeeze(y_mean, axis=1)
    V = solve_triangular(gp.L_, K_trans.T, lower=True, check_finite=False)
    explained = np.empty(len(X))
    for start in range(0, len(X), BLOCK):
        Vb = V[:, start : start + BLOCK]
        explained[start : start + BLOCK] = np.diag(Vb.T @ Vb)
    # diag(kernel(X)) is kernel.diag(X) (Matern: ones); diag(A - B) is diag(A) - diag(B), entry by entry
    var = ((gp.kernel_.diag(X) - explained)[:, None] * gp._y_train_std**2).reshape(len(X))
    return y_mean, np.sqrt(var)
