"""The exact posterior of a Gaussian prior, linear operator and Gaussian noise (seed chapter, Example 7.4).

For ``x ~ N(mu, Sigma)`` and ``y = A x + w``, ``w ~ N(0, s^2 I)``, the posterior is Gaussian with
``Sigma_post = Sigma - K A Sigma`` and ``mu_post = mu + K (y - A mu)``, where
``K = Sigma A^T (A Sigma A^T + s^2 I)^-1`` is the Kalman gain. Everything is computed in float64 from a dense
matrix of the operator, so this is for small signals (``D`` up to a few hundred): it is the oracle the
posterior samplers are tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from posteria.errors import PosteriaError
from posteria.operators.base import LinearOperator
from posteria.tensors import flat

#: the largest signal for which a dense (D, D) covariance is built
MAX_DIM = 4096


def real_measurement(y: torch.Tensor) -> torch.Tensor:
    """Measurements (B, *measurement_shape) as real rows (B, m), float64: a complex entry (k-space) is
    the pair (real part, imaginary part), each of which carries its own noise of size ``sigma_y``
    (:mod:`posteria.operators.noise_models`), so a complex operator is a real one with twice the rows."""
    return flat(torch.view_as_real(y) if y.is_complex() else y).to(torch.float64)


def operator_matrix(operator: LinearOperator, chunk: int = 256) -> torch.Tensor:
    """The dense (m, D) float64 matrix of a linear operator, built column by column.

    Column ``j`` is ``A e_j`` as a real row vector (:func:`real_measurement`: complex measurements count
    as real pairs, so MRI's matrix has two real rows per measured frequency), with the columns taken in
    chunks of ``chunk`` basis vectors so that memory stays O(chunk (m + D)).
    """
    if not operator.linear:
        raise PosteriaError(f"operator {operator.name!r} must be linear")
    D = operator.signal_dim
    if D > MAX_DIM:
        raise PosteriaError(f"the dense posterior needs D <= {MAX_DIM}, got D = {D}")
    columns = []
    with torch.no_grad():
        for start in range(0, D, chunk):
            basis = torch.eye(D, dtype=torch.float64)[start : start + chunk]
            columns.append(real_measurement(operator(basis.reshape(-1, *operator.event_shape))))
    return torch.cat(columns).T


def psd_factor(cov: torch.Tensor) -> torch.Tensor:
    """A factor ``L`` with ``L L^T = cov`` for a symmetric PSD ``cov`` (D, D), singular ones included.

    From the eigendecomposition, with negative round-off eigenvalues clamped to 0; a Cholesky factor would
    fail on the rank-deficient posteriors of noiseless measurements.
    """
    lam, Q = torch.linalg.eigh((cov + cov.T) / 2)
    return Q * lam.clamp_min(0).sqrt()


@dataclass(frozen=True)
class GaussianPosterior:
    """The posteriors ``N(mean_i, cov)`` of a batch of measurements ``y_i``; they share one covariance.

    Attributes:
        mean: (B, D) float64, one posterior mean per measurement.
        cov: (D, D) float64, the posterior covariance (the same for every ``y``).
        event_shape: the shape of one signal; samples come back as (B, n, *event_shape).
    """

    mean: torch.Tensor
    cov: torch.Tensor
    event_shape: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples per measurement: (B, n, *event_shape), float64.

        ``x = mean_i + L z`` with ``L L^T = cov`` (:func:`psd_factor`) and ``z ~ N(0, I)`` from ``generator``.
        """
        B, D = self.mean.shape
        z = torch.randn(B, n, D, generator=generator, dtype=torch.float64)
        x = self.mean[:, None] + z @ psd_factor(self.cov).T
        return x.reshape(B, n, *self.event_shape)

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """``w = L^-1 (x - mean_i)`` for samples ``x`` (B, n, *event_shape), ``L`` the Cholesky factor of
        ``cov``: exact posterior samples give ``w ~ N(0, I)``. Shape (B, n, D), float64; ``cov`` must be
        positive definite (noisy measurements)."""
        B, n = x.shape[:2]
        centred = x.reshape(B, n, -1).to(torch.float64) - self.mean[:, None]
        L = torch.linalg.cholesky(self.cov)
        # rows w_i = L^-1 c_i for all B n samples at once: solve W L^T = C
        w = torch.linalg.solve_triangular(L.mT, centred.reshape(B * n, -1), upper=True, left=False)
        return w.reshape(B, n, -1)

    def covariance(self) -> torch.Tensor:
        """The posterior covariance of every measurement, (B, D, D): ``cov`` repeated (a view)."""
        B, D = self.mean.shape
        return self.cov.expand(B, D, D)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; mean_i, cov)`` for ``x`` (B, n, *event_shape) -> (B, n), float64.

        Needs a positive-definite ``cov`` (noisy measurements, or a prior that is not degenerate).
        """
        B, n = x.shape[:2]
        centred = x.reshape(B, n, -1).to(torch.float64) - self.mean[:, None]
        return gaussian_log_density(centred, cholesky(self.cov, "the posterior covariance"))

    def marginal_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """``P(x_d <= v_d)`` under each coordinate's marginal ``N(mean_id, cov_dd)``: (B, n, D) -> (B, n, D).

        ``Phi((v - mean) / sd)``; a coordinate the measurement pins down (``sd = 0``) has a step CDF.
        """
        B, n = v.shape[:2]
        sd = torch.diagonal(self.cov).clamp_min(0).sqrt()
        return normal_cdf(v.reshape(B, n, -1).to(torch.float64), self.mean[:, None], sd)


def gaussian_posterior(
    mean: torch.Tensor, cov: torch.Tensor, operator: LinearOperator, y: torch.Tensor
) -> GaussianPosterior:
    """The exact posterior of ``x ~ N(mean, cov)`` given ``y = A x + w``, ``w ~ N(0, sigma_y^2 I)``.

    The dense matrix of the operator and :func:`kalman_update` (Kalman gain, Joseph form; a
    pseudo-inverse when ``sigma_y = 0`` and ``A Sigma A^T`` is singular). Bishop, PRML, section 2.3.3.

    Args:
        mean: the prior mean, (D,) or the event shape.
        cov: the prior covariance, (D, D).
        operator: a linear operator with Gaussian noise (complex measurements as real pairs).
        y: measurements, (B, *operator.measurement_shape).

    Returns:
        a :class:`GaussianPosterior` with ``mean`` (B, D) and ``cov`` (D, D), float64.
    """
    operator.check_measurement(y)
    A = operator_matrix(operator)
    mu, Sigma = mean.reshape(-1).to(torch.float64), cov.to(torch.float64)
    if Sigma.shape != (A.shape[1], A.shape[1]) or mu.shape != (A.shape[1],):
        raise PosteriaError(f"mean and cov must be ({A.shape[1]},) and {(A.shape[1],) * 2}")
    update = kalman_update(mu, Sigma, A, operator.sigma_y, real_measurement(y))
    return GaussianPosterior(update.mean, update.cov, operator.event_shape)


class KalmanUpdate(NamedTuple):
    """One linear-Gaussian conditioning step (see :func:`kalman_update`), float64.

    Attributes:
        mean: (B, D) posterior means ``mu + K (y_i - A mu)``.
        cov: (D, D) posterior covariance.
        residual: (B, m) innovations ``y_i - A mu``.
        innovation_cov: (m, m) ``S = A Sigma A^T + s^2 I``, the covariance of ``y`` (the evidence is
            ``N(y; A mu, S)``).
    """

    mean: torch.Tensor
    cov: torch.Tensor
    residual: torch.Tensor
    innovation_cov: torch.Tensor


def kalman_update(
    mu: torch.Tensor, Sigma: torch.Tensor, A: torch.Tensor, sigma_y: float, y: torch.Tensor
) -> KalmanUpdate:
    """Condition ``x ~ N(mu, Sigma)`` on ``y = A x + w``, ``w ~ N(0, s^2 I)``: float64 tensors in and out.

    ``S = A Sigma A^T + s^2 I`` (m, m), ``K = Sigma A^T S^-1`` (by a Cholesky solve, never an inverse; a
    pseudo-inverse when ``S`` is singular, i.e. noiseless and rank-deficient), then
    ``mu_post = mu + K (y - A mu)`` and the Joseph form
    ``Sigma_post = (I - K A) Sigma (I - K A)^T + s^2 K K^T``, which equals ``Sigma - K A Sigma`` but stays
    symmetric PSD under round-off when ``s`` is small. Shapes: ``mu`` (D,), ``Sigma`` (D, D), ``A`` (m, D),
    ``y`` (B, m). Bishop, PRML, section 2.3.3; seed chapter, Example 7.4.
    """
    s2 = float(sigma_y) ** 2
    S = A @ Sigma @ A.T + s2 * torch.eye(A.shape[0], dtype=torch.float64)
    K = _solve_spd(S, A @ Sigma).T  # S symmetric: (S^-1 A Sigma)^T = Sigma A^T S^-1
    residual = y - mu @ A.T
    I_KA = torch.eye(A.shape[1], dtype=torch.float64) - K @ A
    post_cov = I_KA @ Sigma @ I_KA.T + s2 * K @ K.T
    return KalmanUpdate(mu + residual @ K.T, (post_cov + post_cov.T) / 2, residual, S)


def cholesky(cov: torch.Tensor, what: str) -> torch.Tensor:
    """The Cholesky factor of a positive-definite ``cov`` (..., D, D); one PosteriaError line naming
    ``what`` when it is singular (a density needs a definite covariance)."""
    L, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        raise PosteriaError(f"{what} is singular (not positive definite), so it has no density here")
    return L


def gaussian_log_density(centred: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """``log N(c; 0, L L^T) = -|L^-1 c|^2 / 2 - sum log diag L - D log(2 pi) / 2`` for ``c`` (..., D).

    ``L`` (D, D) lower triangular; the rows of ``c`` are solved at once (``W L^T = C``). Returns (...).
    """
    D = centred.shape[-1]
    rows = centred.reshape(-1, D)
    w = torch.linalg.solve_triangular(L.mT, rows, upper=True, left=False)
    half_logdet = torch.diagonal(L).log().sum()
    out = -0.5 * (w**2).sum(-1) - half_logdet - 0.5 * D * math.log(2 * math.pi)
    return out.reshape(centred.shape[:-1])


def normal_cdf(v: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """``Phi((v - mean) / sd)`` broadcast; where ``sd = 0`` the CDF of a point mass, ``1[v >= mean]``."""
    z = torch.special.ndtr((v - mean) / sd.clamp_min(torch.finfo(torch.float64).tiny))
    return torch.where(sd > 0, z, (v >= mean).to(z.dtype))


def _solve_spd(S: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``S^-1 B`` for a symmetric PSD ``S``: Cholesky when it is definite, the pseudo-inverse otherwise."""
    L, info = torch.linalg.cholesky_ex(S)
    if int(info) == 0:
        return torch.cholesky_solve(B, L)
    return torch.linalg.pinv(S, hermitian=True) @ B
