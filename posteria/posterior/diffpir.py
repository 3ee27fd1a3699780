"""DiffPIR (Zhu et al. 2023): plug-and-play half-quadratic splitting inside the diffusion sampler.

Each step denoises, pulls the estimate towards the measurement by the proximal step of the data term,
and takes a DDIM step from the result that keeps a fraction ``1 - zeta`` of the effective noise. It is a
:class:`~posteria.samplers.DDIM` subclass that overrides only ``step``.
"""

from __future__ import annotations

import math

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import check_count, check_positive, check_unit
from posteria.operators.base import LinearOperator
from posteria.posterior.base import register, transition_method
from posteria.posterior.ddnm import match
from posteria.posterior.ddrm import gaussian_sigma_y
from posteria.samplers.base import Noise
from posteria.samplers.ddim import DDIM

#: The floor of the measurement noise on [0, 1] images, as the paper's code: noiseless ``y`` keeps a
#: finite ``rho_t``, so the proximal step stays a weighted average and not a projection.
NOISE_FLOOR = 1e-3


class DiffPIR(DDIM):
    """DiffPIR's step (Zhu et al. 2023, Algorithm 1) from ``x_t`` to ``x_s``:

    ``x0 = D(x_t, t)``; ``x0_hat = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2`` (the data proximal step,
    :meth:`~posteria.operators.base.LinearOperator.proximal`); ``eps_hat = (x_t - alpha_t x0_hat) /
    sigma_t``; ``x_s = alpha_s x0_hat + sigma_s (sqrt(1 - zeta) eps_hat + sqrt(zeta) z)``, ``z ~ N(0, I)``.
    That is DDIM with ``eta = 0`` and ``renoise = sqrt(zeta)`` from ``x0_hat``
    (:meth:`~posteria.samplers.DDIM.update`). The last step returns the denoiser's ``x0``, as the paper's
    code does.

    ``rho_t = lam sigma_n^2 / r_t^2`` with ``r_t = sigma_t / alpha_t``, the noise level of ``x_t / alpha_t``:
    the prior's estimate weighs more as the noise falls. The paper's code measures ``sigma_n`` on [0, 1]
    images and ``r_t`` on [-1, 1], where ``y`` and ``x`` live here, so ``sigma_n = sigma_y / 2`` (floored at
    :data:`NOISE_FLOOR`) and its ``lam`` means the same here. Defaults as its code (``main_ddpir_deblur.py``):
    ``lam = 7``, ``zeta = 0.3``, 100 steps on its "quad" time grid (``reverse-quadratic``). Few steps: at
    ``t = 1`` ``rho_1 ~ 2e-7`` (VP, ``sigma_y = 0.05``), so the first proximal step is nearly ``A^+ y``, whose
    noise an ill-conditioned ``A`` amplifies, and a coarse grid keeps it (Gaussian blur, ``sigma_y = 0.05``,
    mnist-mixture: max ``|x|`` 83, 10, 2.8 at 2, 3, 10 steps).
    An operator without an SVD solves the proximal step by conjugate gradients (``maxiter`` iterations,
    default: to convergence). Shapes: ``x_t`` (N, *event), sample ``i`` conditioned on ``y[i]``
    (N, *measurement). Reference: Zhu, Zhang, Liang, Cao, Wen, Timofte & Van Gool (2023), Denoising
    diffusion models for plug-and-play image restoration, CVPR workshops (NTIRE).
    """

    fixed_options = ("eta", "renoise")

    def __init__(
        self,
        denoiser: Denoiser,
        steps: int,
        operator: LinearOperator,
        y: torch.Tensor,
        lam: float = 7.0,
        zeta: float = 0.3,
        maxiter: int | None = None,
        spacing: str | None = "reverse-quadratic",
        **options: object,
    ) -> None:
        zeta = check_unit("zeta", zeta)
        super().__init__(denoiser, steps, eta=0.0, renoise=math.sqrt(zeta), spacing=spacing, **options)
        self.operator, self.y = operator, y
        self.lam, self.zeta = check_positive("lam", lam), zeta
        self.maxiter = None if maxiter is None else check_count("maxiter", maxiter)
        self.sigma_n = max(gaussian_sigma_y(operator) / 2, NOISE_FLOOR)

    def rho(self, t: float) -> float:
        """``rho_t = lam sigma_n^2 alpha_t^2 / sigma_t^2``, the weight of ``x0`` in the proximal step."""
        alpha_t, sigma_t = self.alpha_sigma(t)
        return self.lam * self.sigma_n**2 * (alpha_t / sigma_t) ** 2

    def step(self, x_t: torch.Tensor, t: float, s: float, noise: Noise, **cond: object) -> torch.Tensor:
        x0 = self.denoiser(x_t, t, **cond)
        if s == 0:
            return x0
        x0_hat = self.operator.proximal(x0, match(self.y, x0), self.rho(t), max_iter=self.maxiter)
        return self.update(x_t, x0_hat, t, s, noise)


register(
    transition_method(
        DiffPIR,
        name="diffpir",
        summary="Plug-and-play diffusion: the data term's proximal step on each estimate x0, then DDIM",
        reference="Zhu, Zhang, Liang, Cao, Wen, Timofte & Van Gool (2023), Denoising diffusion models for "
        "plug-and-play image restoration, CVPR workshops",
        needs=("linear", "gaussian"),
        default_steps=100,
    )
)
