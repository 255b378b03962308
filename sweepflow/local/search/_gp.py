"""The GP fit of W&B's bayes (``sweeps.bayes_search.train_gaussian_process``), bit for bit, in less time.

sweeps fits scikit-learn's ``GaussianProcessRegressor`` with an isotropic ``Matern(nu=1.5)`` kernel and three
L-BFGS-B runs over its one length scale; about 20 log-marginal-likelihood evaluations per suggestion, which is
most of a bayes suggestion's cost once the runs are read once (``_bayes.py``). An evaluation goes through the
kernel's generic hyperparameter machinery (``kernel.theta = ...`` introspects ``get_params`` and every
hyperparameter), computes each kernel entry and its gradient on the full n x n matrix, and sums a size-1 axis.
:class:`MaternGP` evaluates the same numbers with the same numpy / LAPACK calls on the same arrays, the kernel
terms on the n (n - 1) / 2 distinct pairs instead of all n x n entries, and none of the machinery; the optimizer,
its restarts and everything else is scikit-learn's. Any other kernel goes through scikit-learn unchanged.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs
from scipy.spatial.distance import pdist, squareform
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Matern

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sweeps.bayes_search import GAUSSIAN_PROCESS_NUGGET, STD_NUMERICAL_STABILITY_EPSILON

_SQRT3 = math.sqrt(3)


class MaternGP(GaussianProcessRegressor):
    """scikit-learn's GP regressor; its log-marginal likelihood with gradient computed lean for Matern 1.5."""

    def log_marginal_likelihood(self, theta: Any = None, eval_gradient: bool = False, clone_kernel: bool = True) -> Any:
        kernel = self.kernel_
        lean = (
            eval_gradient
            and not clone_kernel
            and type(kernel) is Matern
            and kernel.nu == 1.5
            and not kernel.anisotropic
            and not kernel.hyperparameter_length_scale.fixed
            and self.y_train_.ndim == 1
        )
        if not lean:
            return super().log_marginal_likelihood(theta, eval_gradient, clone_kernel)
        # Matern.__call__(X_train, eval_gradient=True) at length scale exp(theta), as the kernel computes it:
        dists = pdist(self.X_train_ / np.squeeze(np.exp(theta[0])).astype(float), metric="euclidean")
        K = dists * _SQRT3
        K = squareform((1.0 + K) * np.exp(-K))
        np.fill_diagonal(K, 1)
        D = dists**2  # the kernel sums D over a size-1 axis: the sum is D itself
        K_gradient = squareform(3 * D * np.exp(-np.sqrt(3 * D)))[:, :, np.newaxis]
        # GaussianProcessRegressor.log_marginal_likelihood from here on (Alg. 2.1 and Eq. 5.9 of R&W)
        n = K.shape[0]
        K.flat[:: n + 1] += self.alpha  # K[np.diag_indices_from(K)] += alpha
        # scipy's cholesky / cho_solve are these LAPACK calls (potrf with clean=True, potrs) behind array checks
        L, info = dpotrf(K, lower=True, clean=True)
        if info > 0:  # not positive definite: cholesky raises LinAlgError, which sklearn turns into this
            return -np.inf, np.zeros_like(theta)
        y_train = self.y_train_[:, np.newaxis]
        alpha = _potrs(L, y_train)
        log_likelihood_dims = -0.5 * np.einsum("ik,ik->k", y_train, alpha)
        log_likelihood_dims -= np.log(np.diag(L)).sum()
        log_likelihood_dims -= n / 2 * np.log(2 * np.pi)
        inner_term = np.einsum("ik,jk->ijk", alpha, alpha)
        inner_term -= _potrs(L, np.eye(n))[..., np.newaxis]
        gradient_dims = 0.5 * np.einsum("ijl,jik->kl", inner_term, K_gradient)
        return log_likelihood_dims.sum(axis=-1), gradient_dims.sum(axis=-1)


def _potrs(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    x, info = dpotrs(L, b, lower=True)
    if info != 0:
        raise ValueError(f"illegal value in {-info}th argument of internal potrs")
    return x


def fit_normalized_gaussian_process(X: Any, y: Any, nu: float = 1.5) -> tuple[MaternGP, Any, Any]:
    """``sweeps.bayes_search.fit_normalized_gaussian_process``, fitting a :class:`MaternGP`."""
    gp = MaternGP(kernel=Matern(nu=nu), n_restarts_optimizer=2, alpha=GAUSSIAN_PROCESS_NUGGET, random_state=2)
    y = np.asarray(y, dtype=float)
    y_stddev: Any
    if len(y) == 1:
        y_mean = y[0]
        y_stddev = 1.0
        y_norm = y - y_mean
    else:
        # Large finite metrics cause np.mean to overflow to inf, so sweeps first normalizes by the largest.
        scale = max(float(np.max(np.abs(y))), 1.0)
        y_scaled = y / scale
        scaled_mean = np.mean(y_scaled)
        scaled_stddev = np.std(y_scaled) + STD_NUMERICAL_STABILITY_EPSILON / scale
        y_norm = (y_scaled - scaled_mean) / scaled_stddev
        y_mean = scaled_mean * scale
        y_stddev = scaled_stddev * scale
    gp.fit(X, y_norm)
    return gp, y_mean, y_stddev


def train_gaussian_process(
    sample_X: np.ndarray,
    sample_y: np.ndarray,
    current_X: Any = None,
    nu: float = 1.5,
    max_samples: int = 100,
    rng: np.random.RandomState | None = None,
) -> tuple[MaternGP, Any, Any]:
    """``sweeps.bayes_search.train_gaussian_process`` (its checks and the same draws), fitting :class:`MaternGP`.

    Above ``max_samples`` runs the engine fits on a resample (``np.random.randint``, here ``rng``'s); runs in flight
    get the fitted GP's prediction as a fantasy value and the GP is fitted again.
    """
    if current_X is not None:
        current_X = np.array(current_X, dtype=float)
        if len(current_X.shape) != 2:
            raise ValueError("Current X must be a 2 dimensional array")
        current_X = current_X[np.isfinite(current_X).all(axis=1)]
        if current_X.shape[0] > max_samples - 5:  # some real samples must remain to build the curve
            print("current_X is bigger than max samples - 5 so dropping some currently running parameters")
            current_X = current_X[: (max_samples - 5), :]
    if len(sample_y.shape) != 1:
        raise ValueError("Sample y must be a 1 dimensional array")
    if sample_X.shape[0] != sample_y.shape[0]:
        raise ValueError(f"Sample X and sample y must be the same size {sample_X.shape[0]} {sample_y.shape[0]}")
    if sample_X.shape[0] > max_samples:
        sample_indices = (rng or np.random).randint(sample_X.shape[0], size=max_samples)
        X = sample_X[sample_indices]
        y = sample_y[sample_indices]
    else:
        X, y = sample_X, sample_y
    gp, y_mean, y_stddev = fit_normalized_gaussian_process(X, y, nu=nu)
    if current_X is not None and len(current_X):
        current_y_fantasy = (gp.predict(current_X) * y_stddev) + y_mean
        is_fantasy_finite = np.isfinite(current_y_fantasy)  # overflowed fantasies would poison the refit
        X = np.append(X, current_X[is_fantasy_finite], axis=0)
        y = np.append(y, current_y_fantasy[is_fantasy_finite])
        gp, y_mean, y_stddev = fit_normalized_gaussian_process(X, y, nu=nu)
    return gp, y_mean, y_stddev
