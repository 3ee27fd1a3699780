"""Conversions between the denoiser ``E[x | x_t]`` and the score, epsilon and v: the one place they live.

With ``x_t = alpha x + sigma eps``, Tweedie's formula gives
``grad log p_t(x_t) = (alpha E[x | x_t] - x_t) / sigma^2`` and hence
``E[eps | x_t] = (x_t - alpha E[x | x_t]) / sigma`` and ``E[v | x_t] = alpha E[eps | x_t] - sigma E[x | x_t]``
(Efron 2011; Salimans & Ho 2022 for v). ``alpha`` and ``sigma`` must already broadcast against ``x_t``.
"""

from __future__ import annotations

import torch


def score_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """``grad log p_t(x_t) = (alpha x0_hat - x_t) / sigma^2``."""
    return (alpha * x0 - x_t) / sigma**2


def x0_from_score(x_t: torch.Tensor, score: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """``x0_hat = (x_t + sigma^2 score) / alpha``."""
    return (x_t + sigma**2 * score) / alpha


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """``eps_hat = (x_t - alpha x0_hat) / sigma``."""
    return (x_t - alpha * x0) / sigma


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """``x0_hat = (x_t - sigma eps_hat) / alpha``."""
    return (x_t - sigma * eps) / alpha


def v_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """``v_hat = alpha eps_hat - sigma x0_hat``."""
    return alpha * eps_from_x0(x_t, x0, alpha, sigma) - sigma * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """``x0_hat = (alpha x_t - sigma v_hat) / (alpha^2 + sigma^2)`` (any schedule, not only VP)."""
    return (alpha * x_t - sigma * v) / (alpha**2 + sigma**2)
