"""Exact posteriors to measure samplers against: Gaussian priors today, mixtures later.

>>> from posteria.lab import gaussian_posterior
>>> post = gaussian_posterior(mean, cov, MatrixOperator(A, sigma_y=0.1), y)   # .mean (B, D), .cov (D, D)
>>> xs = post.sample(1000, generator=torch.Generator().manual_seed(0))         # (B, 1000, *event)
"""

from posteria.lab.gaussian import GaussianPosterior, gaussian_posterior, operator_matrix, psd_factor

__all__ = ["GaussianPosterior", "gaussian_posterior", "operator_matrix", "psd_factor"]
