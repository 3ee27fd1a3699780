"""The exact posterior of a Gaussian mixture prior, linear operator and Gaussian noise (seed chapter,
Example 7.5).

For ``x ~ sum_k w_k N(mu_k, Sigma_k)`` and ``y = A x + w``, ``w ~ N(0, s^2 I)``, Bayes' rule acts on each
component separately: the posterior is again a mixture,

    p(x | y) = sum_k w_k(y) N(x; mu_k(y), C_k),
    w_k(y) ∝ w_k N(y; A mu_k, A Sigma_k A^T + s^2 I),

where ``mu_k(y)`` and ``C_k`` are the linear-Gaussian posterior of component ``k``
(:func:`posteria.lab.gaussian.kalman_update`; Bishop, PRML, section 2.3.3). ``C_k`` does not depend on
``y``; the weights are normalised in log space, so far-away components underflow to 0 gracefully.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from posteria.errors import PosteriaError
from posteria.lab.gaussian import (
    KalmanUpdate,
    cholesky,
    gaussian_log_density,
    kalman_update,
    normal_cdf,
    operator_matrix,
    psd_factor,
    real_measurement,
)
from posteria.operators.base import LinearOperator


class ExactPosterior(Protocol):
    """What every exact posterior of the laboratory offers, for ``B`` measurements of a ``D``-dim signal.

    Attributes:
        mean: (B, D) float64, ``E[x | y_i]``.
        event_shape: the shape of one signal.

    Methods:
        covariance(): (B, D, D) float64, ``Cov[x | y_i]``.
        sample(n, generator=None): (B, n, *event_shape) float64 exact draws.
        log_prob(x): ``log p(x | y_i)`` for x (B, n, *event_shape) -> (B, n).
        marginal_cdf(v): ``P(x_d <= v_d | y_i)`` per coordinate, v (B, n, D) -> (B, n, D); for coverage
            of credible intervals.
    """

    mean: torch.Tensor
    event_shape: tuple[int, ...]

    def covariance(self) -> torch.Tensor: ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def log_prob(self, x: torch.Tensor) -> torch.Tensor: ...

    def marginal_cdf(self, v: torch.Tensor) -> torch.Tensor: ...


def draw_mixture(
    means: torch.Tensor,
    roots: list[torch.Tensor],
    weights: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` draws from each of B mixtures ``sum_k weights[b, k] N(means[b, k], R_k R_k^T)``: (B, n, D).

    ``means`` (B, K, D), ``roots[k]`` (D, r_k) with ``R_k R_k^T = Sigma_k``, ``weights`` (B, K). Labels
    first, then ``x = mu_k + R_k z`` with ``z ~ N(0, I_{r_k})``: a low-rank root keeps draws exactly in
    the component's affine subspace. Loops over the K components, never over samples.
    """
    B, K, D = means.shape
    labels = torch.multinomial(weights, n, replacement=True, generator=generator)  # (B, n)
    x = torch.take_along_dim(means, labels[..., None], dim=1).clone()  # (B, n, D)
    for k, R in enumerate(roots):
        pick = labels == k
        z = torch.randn(int(pick.sum()), R.shape[1], generator=generator, dtype=torch.float64)
        x[pick] += z @ R.T
    return x


@dataclass(frozen=True)
class GaussianMixturePosterior:
    """The posteriors ``sum_k w_ik N(mu_ik, C_k)`` of a batch of measurements ``y_i`` (float64).

    Attributes:
        log_weights: (B, K) normalised ``log w_k(y_i)``.
        component_means: (B, K, D) ``mu_k(y_i)``.
        component_covs: (K, D, D) ``C_k``, the same for every ``y``.
        event_shape: the shape of one signal; samples come back as (B, n, *event_shape).
    """

    log_weights: torch.Tensor
    component_means: torch.Tensor
    component_covs: torch.Tensor
    event_shape: tuple[int, ...]

    @property
    def weights(self) -> torch.Tensor:
        """Posterior component probabilities ``p(k | y_i)``, (B, K)."""
        return self.log_weights.exp()

    @property
    def mean(self) -> torch.Tensor:
        """``E[x | y_i] = sum_k w_ik mu_ik``, (B, D)."""
        return torch.einsum("bk,bkd->bd", self.weights, self.component_means)

    @property
    def cov(self) -> torch.Tensor:
        """The total posterior covariance, (B, D, D) (see :meth:`covariance`)."""
        return self.covariance()

    def covariance(self) -> torch.Tensor:
        """``Cov[x | y_i] = sum_k w_ik (C_k + (mu_ik - m_i)(mu_ik - m_i)^T)``, (B, D, D): total variance.

        The between-component spread is formed from centred means, which avoids the cancellation of
        ``E[x x^T] - m m^T`` when the posterior is narrow.
        """
        w = self.weights
        spread = self.component_means - self.mean[:, None]  # (B, K, D)
        within = torch.einsum("bk,kde->bde", w, self.component_covs)
        return within + torch.einsum("bk,bkd,bke->bde", w, spread, spread)

    def variance(self) -> torch.Tensor:
        """The diagonal of :meth:`covariance`, ``sum_k w_ik (diag C_k + (mu_ik - m_i)^2)``, (B, D), without
        forming the (B, D, D) matrices (4.9 GB for 1,000 images of 784 pixels)."""
        spread = self.component_means - self.mean[:, None]  # (B, K, D)
        within = self.weights @ torch.diagonal(self.component_covs, dim1=-2, dim2=-1)
        return within + torch.einsum("bk,bkd->bd", self.weights, spread**2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples per measurement: (B, n, *event_shape), float64 (:func:`draw_mixture`)."""
        roots = [psd_factor(C) for C in self.component_covs]
        x = draw_mixture(self.component_means, roots, self.weights, n, generator)
        return x.reshape(*x.shape[:2], *self.event_shape)

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log w_ik + log N(x; mu_ik, C_k)`` for x (B, n, *event_shape): (B, n, K).

        Needs positive-definite ``C_k`` (``sigma_y > 0`` or a full-rank prior).
        """
        B, n = x.shape[:2]
        x = x.reshape(B, n, -1).to(torch.float64)
        L = cholesky(self.component_covs, "a posterior component covariance")
        logs = [
            gaussian_log_density(x - self.component_means[:, k, None], L[k])
            for k in range(self.component_covs.shape[0])
        ]
        return torch.stack(logs, -1) + self.log_weights[:, None]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | y_i) = logsumexp_k (log w_ik + log N(x; mu_ik, C_k))``: x (B, n, *event) -> (B, n)."""
        return torch.logsumexp(self.component_log_probs(x), dim=-1)

    def marginal_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """``P(x_d <= v_d | y_i) = sum_k w_ik Phi((v_d - mu_ikd) / sqrt(C_k,dd))``: (B, n, D) -> (B, n, D)."""
        B, n = v.shape[:2]
        v = v.reshape(B, n, -1).to(torch.float64)
        sd = torch.diagonal(self.component_covs, dim1=-2, dim2=-1).clamp_min(0).sqrt()  # (K, D)
        out = torch.zeros_like(v)
        for k in range(sd.shape[0]):  # one component at a time: memory O(B n D), not O(B n K D)
            cdf = normal_cdf(v, self.component_means[:, k, None], sd[k])
            out += self.weights[:, k, None, None] * cdf
        return out


def gaussian_mixture_posterior(
    means: torch.Tensor,
    covs: torch.Tensor,
    weights: torch.Tensor,
    operator: LinearOperator,
    y: torch.Tensor,
) -> GaussianMixturePosterior:
    """The exact posterior of ``x ~ sum_k w_k N(means[k], covs[k])`` given ``y = A x + w``.

    Per component :func:`~posteria.lab.gaussian.kalman_update`; the weights are
    ``log w_k + log N(y; A mu_k, S_k)``, ``S_k = A Sigma_k A^T + s^2 I``, normalised by logsumexp.

    ``sigma_y = 0`` conditions exactly on ``A x = y``; the weights then need every ``S_k = A Sigma_k A^T``
    to be positive definite (e.g. full-rank components and ``A`` of full row rank). For components
    without a floor, ``y`` lies in the range of one ``A Sigma_k A^T`` only, a density-zero event for the
    others: that raises, use ``sigma_y > 0`` or a floor.

    Args:
        means: (K, D) or (K, *event); covs: (K, D, D) PSD; weights: (K,) positive, normalised here.
        operator: a linear operator with Gaussian noise (complex measurements as real pairs).
        y: measurements, (B, *operator.measurement_shape).

    Returns:
        a :class:`GaussianMixturePosterior`, float64.
    """
    operator.check_measurement(y)
    A = operator_matrix(operator)
    K, D = means.shape[0], A.shape[1]
    mus, Sigmas = means.reshape(K, -1).to(torch.float64), covs.to(torch.float64)
    if mus.shape != (K, D) or Sigmas.shape != (K, D, D) or tuple(weights.shape) != (K,):
        raise PosteriaError(f"means, covs and weights must be ({K}, {D}), ({K}, {D}, {D}) and ({K},)")
    ys = real_measurement(y)
    updates = [kalman_update(mus[k], Sigmas[k], A, operator.sigma_y, ys) for k in range(K)]
    log_w = torch.log(weights.to(torch.float64) / weights.sum()) + torch.stack(
        [_log_evidence(u, operator.sigma_y) for u in updates], -1
    )
    return GaussianMixturePosterior(
        log_w - torch.logsumexp(log_w, -1, keepdim=True),
        torch.stack([u.mean for u in updates], 1),
        torch.stack([u.cov for u in updates]),
        operator.event_shape,
    )


def _log_evidence(update: KalmanUpdate, sigma_y: float) -> torch.Tensor:
    """``log N(y_i; A mu_k, S_k)`` from a component's :class:`KalmanUpdate`: (B,)."""
    L, info = torch.linalg.cholesky_ex(update.innovation_cov)
    if int(info) != 0:
        raise PosteriaError(
            f"sigma_y = {sigma_y:g}: A Sigma_k A^T + sigma_y^2 I is singular for a mixture component, so the "
            "component weights are undefined; use sigma_y > 0 or a covariance floor > 0"
        )
    return gaussian_log_density(update.residual, L)


__all__ = [
    "ExactPosterior",
    "GaussianMixturePosterior",
    "draw_mixture",
    "gaussian_mixture_posterior",
]
