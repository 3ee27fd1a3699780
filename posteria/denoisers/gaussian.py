"""The exact denoiser of a Gaussian prior ``N(mu, Sigma)``: the oracle every sampler is tested against."""

from __future__ import annotations

import torch

from posteria.denoisers.base import Denoiser
from posteria.noise import Schedule
from posteria.tensors import expand_like, flat


class GaussianDenoiser(Denoiser):
    """``E[x | x_t] = mu + alpha Sigma (alpha^2 Sigma + sigma^2 I)^-1 (x_t - alpha mu)`` exactly.

    The covariance is kept as ``Sigma = Q diag(lam) Q^T + floor * (I - Q Q^T)`` with ``Q`` (D, K)
    orthonormal, or as a diagonal when ``Q`` is None; in the eigenbasis the formula is a per-direction
    gain ``alpha lam / (alpha^2 lam + sigma^2)``, so full, diagonal and low-rank priors cost
    O(D K) per sample. Build it with :meth:`full`, :meth:`diagonal` or :meth:`low_rank`.
    (Seed chapter, Example 7.4.)
    """

    exact_covariance = True

    def __init__(
        self,
        schedule: Schedule,
        mean: torch.Tensor,
        eigvals: torch.Tensor,
        eigvecs: torch.Tensor | None = None,
        floor: float = 0.0,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(schedule, event_shape or tuple(mean.shape))
        self.register_buffer("mean", mean.reshape(-1))
        self.register_buffer("eigvals", eigvals)
        self.register_buffer("eigvecs", eigvecs)
        self.floor = float(floor)

    @classmethod
    def full(cls, schedule: Schedule, mean: torch.Tensor, cov: torch.Tensor, **kw) -> GaussianDenoiser:
        """Prior ``N(mean, cov)`` with a dense (D, D) covariance."""
        lam, Q = torch.linalg.eigh(cov)
        return cls(schedule, mean, lam.clamp_min(0), Q, **kw)

    @classmethod
    def diagonal(cls, schedule: Schedule, mean: torch.Tensor, var: torch.Tensor, **kw):
        """Prior ``N(mean, diag(var))``."""
        return cls(schedule, mean, var.reshape(-1), None, **kw)

    @classmethod
    def low_rank(
        cls, schedule: Schedule, mean: torch.Tensor, factor: torch.Tensor, floor: float = 0.0, **kw
    ) -> GaussianDenoiser:
        """Prior ``N(mean, U U^T + floor I)`` with ``U = factor`` of shape (D, P)."""
        Q, s, _ = torch.linalg.svd(factor, full_matrices=False)
        return cls(schedule, mean, s**2 + floor, Q, floor=floor, **kw)

    @property
    def cov(self) -> torch.Tensor:
        """The dense (D, D) covariance (for tests and small D)."""
        if self.eigvecs is None:
            return torch.diag(self.eigvals)
        Q = self.eigvecs
        eye = torch.eye(Q.shape[0], dtype=Q.dtype, device=Q.device)
        return Q @ torch.diag(self.eigvals) @ Q.T + self.floor * (eye - Q @ Q.T)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        alpha, sigma = (expand_like(c.to(x_t), flat(x_t)) for c in self.schedule(t))
        d = flat(x_t) - alpha * self.mean
        gain = lambda lam: alpha * lam / (alpha**2 * lam + sigma**2).clamp_min(1e-30)  # noqa: E731
        if self.eigvecs is None:
            out = self.mean + gain(self.eigvals) * d
        else:
            coords = d @ self.eigvecs
            out = self.mean + (gain(self.eigvals) - gain(self.floor)) * coords @ self.eigvecs.T
            out = out + gain(torch.tensor(self.floor, dtype=d.dtype)) * d
        return out.reshape(x_t.shape)
