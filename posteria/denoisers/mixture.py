"""The exact denoiser of a Gaussian mixture prior ``sum_k w_k N(mu_k, Sigma_k)``: full, diagonal, low rank.

Under ``x_t = alpha x + sigma eps`` each component stays Gaussian, ``x_t | k ~ N(alpha mu_k, C_k)`` with
``C_k = alpha^2 Sigma_k + sigma^2 I``, so the posterior mean is the responsibility-weighted average of the
per-component Gaussian denoisers (seed chapter, Examples 7.5 and 7.6).
"""

from __future__ import annotations

import math

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_finite, check_time
from posteria.noise import Schedule
from posteria.tensors import batch_times, flat


def _tiny(dtype: torch.dtype) -> float:
    """Smallest variance we divide by: ``sqrt(finfo.tiny)``, so ``|r|^2 / c`` and ``log c`` stay finite."""
    return torch.finfo(dtype).tiny ** 0.5


class GaussianMixtureDenoiser(Denoiser):
    """``E[x | x_t] = sum_k gamma_k(x_t) E_k[x | x_t]`` exactly, for ``p(x) = sum_k w_k N(mu_k, Sigma_k)``.

    ``gamma_k(x_t) ∝ w_k N(x_t; alpha mu_k, alpha^2 Sigma_k + sigma^2 I)`` (computed in log space) and
    ``E_k[x | x_t] = mu_k + alpha Sigma_k (alpha^2 Sigma_k + sigma^2 I)^-1 (x_t - alpha mu_k)``.

    Each covariance is kept in eigen form, ``Sigma_k = Q_k diag(lam_k) Q_k^T + floor_k (I - Q_k Q_k^T)``
    with ``Q_k`` (D, R) orthonormal, or as a diagonal ``diag(lam_k)`` when ``eigvecs`` is None. The solve
    and the log-determinant are then per-direction (Woodbury and the matrix determinant lemma in
    disguise): a batch of B samples costs O(B K D R), so D = 800 with a few low-rank components is cheap.
    Build it with :meth:`full`, :meth:`diagonal`, :meth:`low_rank` or :meth:`low_rank_subspaces`.

    Stability: with ``floor = 0`` the directions orthogonal to ``Q_k`` have variance ``sigma^2`` only,
    which vanishes as ``t -> 0``. Every variance we divide by is clamped at ``sqrt(finfo.tiny)``
    (about 1e-19 in float32), and the residual ``d - Q Q^T d`` is formed explicitly rather than as
    ``|d|^2 - |Q^T d|^2`` (which would cancel), so responsibilities stay finite and pick the nearest
    subspace, and each component's mean tends to the projection onto its subspace, in float32 and float64.
    """

    exact_covariance = True

    def __init__(
        self,
        schedule: Schedule,
        means: torch.Tensor,
        eigvals: torch.Tensor,
        eigvecs: torch.Tensor | None = None,
        floors: float | torch.Tensor = 0.0,
        weights: torch.Tensor | None = None,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        """``means`` (K, *event), ``eigvals`` (K, R), ``eigvecs`` (K, D, R) or None (then R = D, diagonal),
        ``floors`` scalar or (K,), ``weights`` (K,) positive (normalised here; uniform when None)."""
        K = means.shape[0]
        super().__init__(schedule, event_shape or tuple(means.shape[1:]))
        weights = torch.ones(K, dtype=means.dtype, device=means.device) if weights is None else weights
        self._check(means.reshape(K, -1), eigvals, eigvecs, weights)
        self.register_buffer("means", means.reshape(K, -1))
        self.register_buffer("eigvals", eigvals)
        self.register_buffer("eigvecs", eigvecs)
        floors = torch.as_tensor(floors, dtype=means.dtype, device=means.device)
        self.register_buffer("floors", floors.expand(K).clone())
        self.register_buffer("log_weights", torch.log(weights / weights.sum()).to(means.dtype))

    @staticmethod
    def _check(means, eigvals, eigvecs, weights) -> None:
        """Raise one line if the component shapes disagree or the weights are not positive."""
        K, D = means.shape
        R = D if eigvecs is None else eigvecs.shape[-1]
        if eigvals.shape != (K, R):
            raise PosteriaError(f"eigvals must have shape ({K}, {R}), got {tuple(eigvals.shape)}")
        if eigvecs is not None and eigvecs.shape != (K, D, R):
            raise PosteriaError(f"eigvecs must have shape ({K}, {D}, {R}), got {tuple(eigvecs.shape)}")
        if weights.shape != (K,) or not bool((weights > 0).all()):
            raise PosteriaError(f"weights must be {K} positive numbers, got {weights.tolist()}")

    # ---------------------------------------------------------------- constructors

    @classmethod
    def full(
        cls, schedule: Schedule, means: torch.Tensor, covs: torch.Tensor, weights=None, **kw
    ) -> GaussianMixtureDenoiser:
        """Mixture of ``N(means[k], covs[k])`` with dense covariances ``covs`` of shape (K, D, D)."""
        lam, Q = torch.linalg.eigh(covs)
        return cls(schedule, means, lam.clamp_min(0), Q, weights=weights, **kw)

    @classmethod
    def diagonal(
        cls, schedule: Schedule, means: torch.Tensor, variances: torch.Tensor, weights=None, **kw
    ) -> GaussianMixtureDenoiser:
        """Mixture of ``N(means[k], diag(variances[k]))``; ``variances`` of shape (K, *event) or (K, D)."""
        return cls(schedule, means, variances.reshape(means.shape[0], -1), None, weights=weights, **kw)

    @classmethod
    def low_rank(
        cls,
        schedule: Schedule,
        means: torch.Tensor,
        factors: torch.Tensor,
        floor: float | torch.Tensor = 0.0,
        weights=None,
        **kw,
    ) -> GaussianMixtureDenoiser:
        """Mixture of ``N(means[k], U_k U_k^T + floor I)`` with ``U = factors`` of shape (K, D, P).

        A thin SVD ``U_k = Q_k S_k V_k^T`` gives the eigen form with ``lam_k = s_k^2 + floor``.
        """
        Q, s, _ = torch.linalg.svd(factors, full_matrices=False)
        floors = torch.as_tensor(floor, dtype=s.dtype, device=s.device).expand(s.shape[0])
        return cls(schedule, means, s**2 + floors[:, None], Q, floors=floors, weights=weights, **kw)

    @classmethod
    def low_rank_subspaces(
        cls, schedule: Schedule, bases: torch.Tensor, weights=None, floor: float = 0.0, **kw
    ) -> GaussianMixtureDenoiser:
        """The seed chapter's low-rank mixture ``sum_k w_k N(0, U_k U_k^T)`` (Examples 3.3, 7.5, 7.6).

        ``bases`` (K, D, P) holds orthonormal ``U_k``; data lie on a union of K subspaces of dimension P.
        Pass ``event_shape`` to view samples as images.
        """
        means = torch.zeros(bases.shape[:2], dtype=bases.dtype, device=bases.device)
        if "event_shape" in kw and kw["event_shape"] is not None:
            means = means.reshape(bases.shape[0], *kw["event_shape"])
        return cls.low_rank(schedule, means, bases, floor=floor, weights=weights, **kw)

    # ---------------------------------------------------------------- prior quantities

    @property
    def weights(self) -> torch.Tensor:
        """Normalised mixture weights, shape (K,)."""
        return self.log_weights.exp()

    @property
    def covs(self) -> torch.Tensor:
        """Dense covariances, shape (K, D, D) (for tests and small D)."""
        if self.eigvecs is None:
            return torch.diag_embed(self.eigvals)
        Q, lam = self.eigvecs, self.eigvals
        eye = torch.eye(Q.shape[1], dtype=Q.dtype, device=Q.device)
        low = Q @ torch.diag_embed(lam) @ Q.mT
        return low + self.floors[:, None, None] * (eye - Q @ Q.mT)

    @property
    def has_complement(self) -> bool:
        """True when ``Q_k`` spans fewer than D directions (the floor acts on the rest)."""
        return self.eigvecs is not None and self.eigvecs.shape[-1] < self.eigvecs.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` samples from the prior, shape (n, *event_shape).

        ``x = mu_k + Q_k (sqrt(lam_k) Q_k^T z) + sqrt(floor_k) (z - Q_k Q_k^T z)``, ``z ~ N(0, I)``,
        ``k ~ Categorical(w)``; loops over the K components, never over samples.
        """
        device = generator.device if generator is not None else self.means.device
        k = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, device=device, dtype=self.means.dtype)
        k, z = k.to(self.means.device), z.to(self.means.device)
        x = torch.empty_like(z)
        for j in range(self.means.shape[0]):
            pick = k == j
            x[pick] = self._draw(j, z[pick])
        return x.reshape(n, *self.event_shape)

    def _draw(self, j: int, z: torch.Tensor) -> torch.Tensor:
        """Map standard normals ``z`` (m, D) to draws of component ``j``."""
        if self.eigvecs is None:
            return self.means[j] + self.eigvals[j].sqrt() * z
        Q = self.eigvecs[j]
        coords = z @ Q
        x = self.means[j] + (self.eigvals[j].sqrt() * coords) @ Q.T
        if self.has_complement:
            x = x + self.floors[j].sqrt() * (z - coords @ Q.T)
        return x

    # ---------------------------------------------------------------- noisy quantities

    def _coords(self, d: torch.Tensor) -> torch.Tensor:
        """Eigen-coordinates ``Q_k^T d_k``: (B, K, D) -> (B, K, R)."""
        return d if self.eigvecs is None else torch.einsum("bkd,kdr->bkr", d, self.eigvecs.to(d))

    def _lift(self, c: torch.Tensor) -> torch.Tensor:
        """Back to the data space ``Q_k c_k``: (B, K, R) -> (B, K, D)."""
        return c if self.eigvecs is None else torch.einsum("bkr,kdr->bkd", c, self.eigvecs.to(c))

    def _components(self, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-component ``log w_k N(x_t; alpha mu_k, C_k)`` (B, K) and ``E_k[x | x_t]`` (B, K, D).

        In the eigenbasis ``C_k`` has variances ``c = alpha^2 lam + sigma^2`` along ``Q_k`` and
        ``c_perp = alpha^2 floor + sigma^2`` across it; the gain is ``alpha lam / c``.
        """
        alpha, sigma = (c.to(x_t)[:, None, None] for c in self.schedule(t))  # (B, 1, 1)
        mu, lam, floor = (b.to(x_t) for b in (self.means, self.eigvals, self.floors[:, None]))
        d = flat(x_t)[:, None, :] - alpha * mu  # (B, K, D)
        c = (alpha**2 * lam + sigma**2).clamp_min(_tiny(x_t.dtype))  # (B, K, R)
        coords = self._coords(d)
        maha, logdet = (coords**2 / c).sum(-1), c.log().sum(-1)
        mean = mu + self._lift(alpha * lam / c * coords)
        if self.has_complement:
            c_perp = (alpha**2 * floor + sigma**2).clamp_min(_tiny(x_t.dtype))  # (B, K, 1)
            resid = d - self._lift(coords)
            maha = maha + (resid**2).sum(-1) / c_perp[..., 0]
            logdet = logdet + (d.shape[-1] - c.shape[-1]) * c_perp[..., 0].log()
            mean = mean + alpha * floor / c_perp * resid
        log_norm = -0.5 * (maha + logdet + d.shape[-1] * math.log(2 * math.pi))
        return self.log_weights.to(x_t) + log_norm, mean

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        log_joint, means = self._components(x_t, t)
        gamma = torch.softmax(log_joint, dim=-1)
        return torch.einsum("bk,bkd->bd", gamma, means).reshape(x_t.shape)

    def _validated(self, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Check ``x_t`` as :meth:`forward` does and return ``t`` as a (B,) tensor."""
        self.check_shape(x_t)
        check_finite("x_t", x_t)
        return check_time(batch_times(t, x_t))

    def responsibilities(self, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``gamma_k(x_t) = p(k | x_t)``, shape (B, K)."""
        return torch.softmax(self._components(x_t, self._validated(x_t, t))[0], dim=-1)

    def log_prob_t(self, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Marginal log density ``log p_t(x_t) = logsumexp_k log w_k N(x_t; alpha mu_k, C_k)``, shape (B,).

        Differentiable: ``grad log p_t`` equals :meth:`score` (Tweedie). At ``t = 0`` this is the prior
        log density, finite only where the prior has a density (clamped variances otherwise).
        """
        return torch.logsumexp(self._components(x_t, self._validated(x_t, t))[0], dim=-1)
