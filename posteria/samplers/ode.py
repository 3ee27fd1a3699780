"""Euler and Heun solvers of the probability-flow ODE in ``t`` (Karras et al. 2022), for any schedule."""

from __future__ import annotations

import torch

from posteria import tweedie
from posteria.denoisers.base import Denoiser
from posteria.samplers.base import Noise, Sampler


class Euler(Sampler):
    """Euler steps of the probability-flow ODE ``dx/dt = f(x, t)``, deterministic.

    With ``x_t = alpha_t x + sigma_t eps`` and ``r_t = sigma_t / alpha_t`` (EDM's ``s(t)`` and
    ``sigma(t)``; Karras et al. 2022, eq. 4 and Algorithm 1):
    ``f(x, t) = (alpha'/alpha) x + alpha (r'/r) (x / alpha - D(x, t))
    = (alpha'/alpha) x + (r'/r) sigma eps_hat``, ``eps_hat = (x - alpha D) / sigma``.
    ``alpha'`` and ``r'`` come from ``schedule.derivatives`` (autodiff), once per grid time.
    A step is ``x_s = x_t + (s - t) f(x_t, t)``; the last one, to ``t = 0`` where ``r'/r`` blows up,
    returns ``x0 = D(x_{t_min}, t_min)``. Shapes: ``x_t`` (B, *event) -> ``x_s`` (B, *event).
    """

    def __init__(self, denoiser: Denoiser, steps: int, **options: object) -> None:
        super().__init__(denoiser, steps, **options)
        grid = self.times[:-1].to(torch.float64)  # t = 0 excluded: r'/r is infinite there
        alpha, sigma, dalpha, dsigma = denoiser.schedule.derivatives(grid)
        dlog_alpha, dlog_r = dalpha / alpha, dsigma / sigma - dalpha / alpha
        rows = zip(grid.tolist(), dlog_alpha.tolist(), (dlog_r * sigma).tolist(), strict=True)
        self._drift = {t: (a, b) for t, a, b in rows}

    def drift_coefficients(self, t: float) -> tuple[float, float]:
        """``(alpha'/alpha, sigma r'/r)`` at ``t``: looked up on the grid, computed off it."""
        found = self._drift.get(t)
        if found is None:
            alpha, sigma, dalpha, dsigma = self.denoiser.schedule.derivatives(torch.tensor(t).double())
            found = (float(dalpha / alpha), float(dsigma - sigma * dalpha / alpha))
        return found

    def drift(self, x_t: torch.Tensor, x0: torch.Tensor, t: float) -> torch.Tensor:
        """``f(x_t, t) = (alpha'/alpha) x_t + (r'/r) sigma eps_hat`` given ``x0 = D(x_t, t)``."""
        alpha, sigma = self.alpha_sigma(t)
        dlog_alpha, sigma_dlog_r = self.drift_coefficients(t)
        return dlog_alpha * x_t + sigma_dlog_r * tweedie.eps_from_x0(x_t, x0, alpha, sigma)

    def step(self, x_t: torch.Tensor, t: float, s: float, noise: Noise, **cond: object) -> torch.Tensor:
        x0 = self.denoiser(x_t, t, **cond)
        if s == 0:
            return x0
        return x_t + (s - t) * self.drift(x_t, x0, t)


class Heun(Euler):
    """Heun's method (Karras et al. 2022, Algorithm 1): an Euler predictor and a trapezoidal corrector.

    ``x_e = x_t + (s - t) f(x_t, t)``, ``x_s = x_t + (s - t) (f(x_t, t) + f(x_e, s)) / 2``, with ``f``
    as in :class:`Euler`; the last step, to ``t = 0``, returns ``D(x_{t_min}, t_min)``. Two network
    evaluations per step but the last: ``nfe = 2 steps - 1`` (EDM's 18 steps make 35).
    """

    @property
    def nfe(self) -> int:
        return 2 * self.steps - 1

    def step(self, x_t: torch.Tensor, t: float, s: float, noise: Noise, **cond: object) -> torch.Tensor:
        x0 = self.denoiser(x_t, t, **cond)
        if s == 0:
            return x0
        d_t = self.drift(x_t, x0, t)
        x_e = x_t + (s - t) * d_t
        d_s = self.drift(x_e, self.denoiser(x_e, s, **cond), s)
        return x_t + (s - t) / 2 * (d_t + d_s)
