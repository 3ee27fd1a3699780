"""Exact posteriors to measure samplers against: Gaussian and Gaussian-mixture priors.

>>> from posteria.lab import gaussian_posterior
>>> post = gaussian_posterior(mean, cov, MatrixOperator(A, sigma_y=0.1), y)   # .mean (B, D), .cov (D, D)
>>> xs = post.sample(1000, generator=torch.Generator().manual_seed(0))         # (B, 1000, *event)

Priors carry their exact denoiser and posterior (every posterior follows :class:`ExactPosterior`):

>>> prior = GaussianMixturePrior.subspaces(D=16, K=3, P=2, generator=torch.Generator().manual_seed(0))
>>> post = prior.posterior(op, y)      # .weights (B, K), .mean (B, D), .covariance() (B, D, D), ...
>>> denoiser = prior.denoiser(VPLinear())

Distances of samples (B, n, D) to an exact posterior: ``gaussian_w2``, ``sliced_wasserstein`` (POT),
``mean_error``, ``cov_error``, ``coverage`` of central credible intervals, all at once by ``summary``;
``monte_carlo_floor`` is the distance of exact samples to exact samples.
"""

from posteria.lab.distances import (
    cov_error,
    coverage,
    gaussian_w2,
    mean_error,
    monte_carlo_floor,
    sliced_wasserstein,
    summary,
)
from posteria.lab.gaussian import (
    GaussianPosterior,
    KalmanUpdate,
    gaussian_posterior,
    kalman_update,
    operator_matrix,
    psd_factor,
)
from posteria.lab.mixture import ExactPosterior, GaussianMixturePosterior, gaussian_mixture_posterior
from posteria.lab.priors import GaussianMixturePrior, GaussianPrior, LowRank

__all__ = [
    "ExactPosterior",
    "GaussianMixturePosterior",
    "GaussianMixturePrior",
    "GaussianPosterior",
    "GaussianPrior",
    "KalmanUpdate",
    "LowRank",
    "coverage",
    "cov_error",
    "gaussian_mixture_posterior",
    "gaussian_w2",
    "mean_error",
    "monte_carlo_floor",
    "sliced_wasserstein",
    "summary",
    "gaussian_posterior",
    "kalman_update",
    "operator_matrix",
    "psd_factor",
]
