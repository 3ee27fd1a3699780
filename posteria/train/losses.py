"""Denoising score-matching losses: one weighted x0-space error, four classical weightings.

Every parameterisation's loss is ``lambda(t) ||D(x_t, t) - x||^2`` for a weight ``lambda`` on the error of
the denoiser itself (Kingma et al. 2021; Karras et al. 2022, section 5):
``epsilon``: ``alpha^2 / sigma^2`` (= ``||eps_hat - eps||^2``, Ho et al. 2020), ``x0``: 1,
``v``: ``(alpha^2 + sigma^2)^2 / sigma^2`` (= ``||v_hat - v||^2``), ``edm``: ``(r^2 + sd^2) / (r sd)^2``.
"""

from __future__ import annotations

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import check_choice
from posteria.noise import Schedule
from posteria.tensors import expand_like, flat

WEIGHTINGS = ("epsilon", "x0", "v", "edm")
TIME_SAMPLINGS = ("uniform", "lognormal")


def loss_weight(weighting: str, alpha: torch.Tensor, sigma: torch.Tensor, sigma_data: float = 0.5):
    """The weight ``lambda`` on ``||D - x||^2`` for a weighting name; inputs and output are (B,)."""
    r2 = (sigma / alpha) ** 2
    if weighting == "epsilon":
        return 1 / r2
    if weighting == "x0":
        return torch.ones_like(r2)
    if weighting == "v":
        return (alpha**2 + sigma**2) ** 2 / sigma**2
    return (r2 + sigma_data**2) / (r2 * sigma_data**2)


def sample_times(
    schedule: Schedule, n: int, how: str, generator: torch.Generator, p_mean: float = -1.2, p_std: float = 1.2
) -> torch.Tensor:
    """Training times (n,): ``uniform`` on [t_min, 1], or ``lognormal``: ``log r_t ~ N(p_mean, p_std^2)``
    (EDM's choice, Karras et al. 2022) mapped back to t and clipped to [t_min, 1]."""
    if how == "uniform":
        return schedule.t_min + (1 - schedule.t_min) * torch.rand(n, generator=generator)
    r = torch.exp(p_mean + p_std * torch.randn(n, generator=generator))
    return schedule.time_of_ratio(r).clamp(schedule.t_min, 1.0)


class DenoisingLoss:
    """``E_{t, x, eps} lambda(t) ||D(alpha_t x + sigma_t eps, t) - x||^2``, averaged over pixels and batch."""

    def __init__(self, weighting: str = "edm", time_sampling: str = "lognormal") -> None:
        self.weighting = check_choice("loss weighting", weighting, WEIGHTINGS)
        self.time_sampling = check_choice("time sampling", time_sampling, TIME_SAMPLINGS)

    def __call__(
        self, denoiser: Denoiser, x: torch.Tensor, generator: torch.Generator, **cond
    ) -> torch.Tensor:
        schedule = denoiser.schedule
        # drawn on the generator's device (the CPU) and moved: the same numbers on any device
        t = sample_times(schedule, x.shape[0], self.time_sampling, generator).to(x)
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        alpha, sigma = schedule(t)
        x_t = expand_like(alpha, x) * x + expand_like(sigma, x) * eps
        weight = loss_weight(self.weighting, alpha, sigma, getattr(denoiser, "sigma_data", 0.5))
        error = flat(denoiser.denoise(x_t, t, **cond) - x).square().mean(dim=1)
        return (weight * error).mean()
