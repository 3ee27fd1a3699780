"""Diffusion posterior sampling (Chung et al., 2023): ``dps`` (the paper's step) and ``dps-squared``.

DPS approximates ``p(y | x_t) ~ p(y | x = D(x_t))``: the likelihood is evaluated at the denoiser's
estimate and differentiated through it. Works for nonlinear operators and any noise model: ``dps``
steps along the plain residual norm whatever the noise (for Poisson noise the official code's branch
divides that norm by ``|y|`` and averages, a global rescaling that grows without bound at dark pixels,
so it is not copied); ``dps-squared`` needs Gaussian noise.
"""

from __future__ import annotations

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_choice, check_positive
from posteria.operators.base import Operator
from posteria.posterior.base import Method, register
from posteria.posterior.guidance import GuidedDenoiser, guided_options, guided_sampler, real_view
from posteria.samplers import get_sampler
from posteria.samplers.base import Sampler
from posteria.samplers.ddim import DDIM
from posteria.tensors import expand_like, flat

REFERENCE = "Chung et al., Diffusion posterior sampling for general noisy inverse problems, ICLR 2023"


def x0_weights(sampler: DDIM) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid times ``t_i`` (K,) and ``k_i = d x_{t_{i+1}} / d x0`` of the sampler's step from ``t_i`` (K,).

    A DDIM/DDPM step is ``x_s = alpha_s x0 + w_eps (x_t - alpha_t x0) / sigma_t + c z`` (x0 = D(x_t)), so
    ``k = alpha_s - w_eps alpha_t / sigma_t``: for DDPM ``k = alpha_s sigma_{t|s}^2 / sigma_t^2``, the paper's
    ``sqrt(abar_{i-1}) beta_i / (1 - abar_i)``; ``k = 1`` for the last step, which returns ``x0``. float64.
    """
    times, weights = [], []
    for t, s in sampler.pairs:
        alpha_t, sigma_t = sampler.alpha_sigma(t)
        w_x0, w_eps, _ = sampler.transition(t, s)
        times.append(t)
        weights.append(w_x0 - w_eps * alpha_t / sigma_t)
    return torch.tensor(times, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)


class DPSDenoiser(GuidedDenoiser):
    """DPS as a denoiser: ``E[x | x_t, y] ~ x0 - (zeta / k_t) grad_{x_t} ||y - A(x0)||``, ``x0 = D(x_t)``.

    Derivation. DPS (Chung et al. 2023, Algorithm 1, and their code) takes the DDPM step
    ``x'_{t-1}`` and then ``x_{t-1} = x'_{t-1} - zeta grad_{x_t} ||y - A(x0)||`` with the norm, not its
    square, of each sample's residual (the paper's ``zeta_i grad ||r||^2``, ``zeta_i = zeta' / ||r||``, is
    the same with ``zeta = 2 zeta'``). The step is affine in ``x0`` with weight ``k_t = d x_{t-1} / d x0``
    (:func:`x0_weights`), so shifting ``x0`` by ``-(zeta / k_t) g`` moves ``x_{t-1}`` by exactly
    ``-zeta g``: run under the DDPM sampler this denoiser reproduces the paper's update (checked against a
    literal transcription of Algorithm 1 in the tests), and under DDIM it is the DDIM step minus
    ``zeta g``. The implied likelihood score is ``-(alpha_t / sigma_t^2) (zeta / k_t) g``: DPS's step is a
    fixed length per sampler step, so it is tied to the sampler's grid and ``k_t`` is looked up on it.
    Few steps: ``zeta`` steps of that length cannot cross the distance to ``y``, so with 25 steps or fewer
    the samples fit ``y`` far worse than noise (mnist-mixture, box inpainting, ``sigma_y = 0.05``: data
    consistency 7.5, 8.3, 4.4, 3.7 at 2, 5, 10, 25 steps, the prior mean's 8.3, a posterior sample's about
    1); the paper uses 1000 steps.

    Args:
        prior: the prior denoiser ``D``.
        operator: any measurement model (linear or not).
        y: measurements (N, *measurement).
        times, weights: the sampler's grid times and ``k_t`` (:func:`x0_weights`).
        zeta: the step size: the official code's ``scale`` (0.3 to 1.0 in its configs), twice the
            paper's ``zeta'``; 1.0 by default.

    Shapes: ``x_t`` (N, *event) -> (N, *event).
    """

    def __init__(
        self,
        prior: Denoiser,
        operator: Operator,
        y: torch.Tensor,
        times: torch.Tensor,
        weights: torch.Tensor,
        zeta: float = 1.0,
    ) -> None:
        super().__init__(prior, operator, y)
        self.zeta = float(check_positive("zeta", zeta))
        # k_t by grid time, rounded as the sampler's times arrive in float32 or float64 (Python floats:
        # a lookup per step costs a dictionary access, not a search over the grid).
        self.weights_at = {
            float(time.to(dtype)): float(k)
            for time, k in zip(times, weights, strict=True)
            for dtype in (torch.float32, torch.float64)
        }

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """``k_t`` (B,) at grid times ``t`` (B,); off the grid the DPS step is undefined."""
        try:
            return torch.tensor(
                [self.weights_at[time] for time in t.tolist()], dtype=t.dtype, device=t.device
            )
        except KeyError:
            raise PosteriaError(
                "DPSDenoiser was called off the time grid of the sampler it was built for"
            ) from None

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        with torch.enable_grad():
            x, x0 = self.prior_with_graph(x_t, t, cond)
            residual = real_view(self.measurements(x_t) - self.operator(x0))
            norms = torch.linalg.vector_norm(flat(residual), dim=1)  # one norm per sample, never the batch's
            (grad,) = torch.autograd.grad(norms.sum(), x)
        step = expand_like(self.zeta / self.weight(t).to(x_t), x_t)
        return (x0 - step * grad).detach()


class DPSLikelihoodDenoiser(GuidedDenoiser):
    """``dps-squared``: ``E[x | x_t, y] ~ x0 + scale (sigma_t^2 / alpha_t) grad_{x_t} log N(y; A(x0), s^2)``.

    The DPS approximation ``p(y | x_t) ~ p(y | x0)`` put into the conditional-denoiser identity as it is,
    with the Gaussian log-likelihood ``-||y - A(x0)||^2 / (2 s^2)`` (DPS's ``zeta_i grad ||r||^2`` with a
    constant ``zeta_i``), so the step does not depend on the sampler. The approximation ignores
    ``Cov[x | x_t]`` and is overconfident: when ``s`` is small against the prior's uncertainty the step
    overshoots the data and an explicit sampler diverges. Safeguard (``limit``, per sample): the
    correction ``delta`` is scaled by ``min(1, c*)``, ``c* = <r, Delta> / ||Delta||^2`` with
    ``Delta = A(x0 + delta) - A(x0)``, the step length minimising the linearised misfit ``||r - c Delta||``
    along ``delta``; a step that does not overshoot is left unchanged. (Measured on an 8-D Gaussian prior
    with 1000 DDPM steps: without it the samples overflow already at ``sigma_y = 0.01``.)

    Args: as :class:`DPSDenoiser`, with ``scale`` (default 1) in place of ``zeta``; Gaussian noise with
    ``sigma_y > 0``. Shapes: ``x_t`` (N, *event) -> (N, *event).
    """

    def __init__(
        self, prior: Denoiser, operator: Operator, y: torch.Tensor, scale: float = 1.0, limit: bool = True
    ) -> None:
        super().__init__(prior, operator, y)
        self.scale, self.limit = float(check_positive("scale", scale)), bool(limit)
        self.sigma_y = check_positive("sigma_y (dps-squared needs noisy measurements)", operator.sigma_y)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        y = self.measurements(x_t)
        with torch.enable_grad():
            x, x0 = self.prior_with_graph(x_t, t, cond)
            residual = real_view(y - self.operator(x0))
            log_likelihood = -(residual**2).sum() / (2 * self.sigma_y**2)
            (grad,) = torch.autograd.grad(log_likelihood, x)
        x0, delta = x0.detach(), self.scale * self.gamma(t, x_t) * grad
        if self.limit:
            delta = delta * expand_like(self.overshoot_limit(x0, delta, residual.detach()), x0)
        return x0 + delta

    def overshoot_limit(self, x0: torch.Tensor, delta: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``min(1, max(0, c*))`` per sample (B,), ``c* = <r, Delta> / ||Delta||^2`` (see the class)."""
        change = flat(real_view(self.operator(x0 + delta) - self.operator(x0)))
        r = flat(residual)
        best = (r * change).sum(1) / (change**2).sum(1).clamp_min(torch.finfo(change.dtype).tiny)
        return best.clamp(0, 1)


def build_dps(
    denoiser: Denoiser,
    operator: Operator,
    y: torch.Tensor,
    steps: int,
    sampler: str = "ddpm",
    eta: float | None = None,
    zeta: float = 1.0,
    **options: object,
) -> Sampler:
    """DDPM (or DDIM) on :class:`DPSDenoiser`, its ``k_t`` read off the same sampler run on the prior."""
    check_choice("sampler for dps", sampler, ("ddpm", "ddim"))
    if eta is not None:
        options["eta"] = eta
    plain = get_sampler(sampler, denoiser, steps, **options)
    times, weights = x0_weights(plain)
    return get_sampler(sampler, DPSDenoiser(denoiser, operator, y, times, weights, zeta), steps, **options)


def build_dps_squared(
    denoiser: Denoiser,
    operator: Operator,
    y: torch.Tensor,
    steps: int,
    sampler: str = "ddpm",
    eta: float | None = None,
    scale: float = 1.0,
    limit: bool = True,
    **options: object,
) -> Sampler:
    """Any sampler on :class:`DPSLikelihoodDenoiser`."""
    wrapper = DPSLikelihoodDenoiser(denoiser, operator, y, scale, limit)
    return guided_sampler(wrapper, steps, sampler, eta, **options)


register(
    Method(
        name="dps",
        summary="diffusion posterior sampling: DDPM plus a step of -zeta grad ||y - A(D(x_t))|| per sample",
        reference=REFERENCE,
        needs=(),
        build=build_dps,
        options_of=guided_options(build_dps),
        default_steps=1000,
    )
)
register(
    Method(
        name="dps-squared",
        summary="DPS with the Gaussian likelihood score at D(x_t), Tweedie-weighted, overshoot-limited",
        reference=REFERENCE,
        needs=("gaussian", "noisy"),
        build=build_dps_squared,
        options_of=guided_options(build_dps_squared),
        default_steps=1000,
    )
)
