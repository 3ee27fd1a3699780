"""Noise schedules ``x_t = alpha_t x + sigma_t eps`` on continuous time ``t in [0, 1]``, and time grids.

A schedule is a pure function of time. Samplers, losses and denoisers only ever ask it for
``(alpha_t, sigma_t)``; everything else (the noise-to-signal ratio ``r_t = sigma_t / alpha_t``, its
inverse, time derivatives) is derived here once.
"""

from __future__ import annotations

import math

import torch

from posteria.errors import PosteriaError, check_choice


class Schedule:
    """The forward process ``x_t = alpha_t x + sigma_t eps``, ``eps ~ N(0, I)``, ``t in [0, 1]``.

    Subclasses implement :meth:`alpha_sigma`; ``alpha_t`` must decrease and ``r_t = sigma_t / alpha_t``
    increase strictly in ``t`` (so a noise level determines its time).
    """

    name: str = "schedule"
    #: the smallest time samplers visit before the final jump to t = 0 (DDPM's step 1 of 1000)
    t_min: float = 1e-3
    #: the time grid samplers use unless told otherwise
    default_spacing: str = "uniform"

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(alpha_t, sigma_t)`` with the shape of ``t``."""
        t = torch.as_tensor(t)
        return self.alpha_sigma(t if t.is_floating_point() else t.to(torch.get_default_dtype()))

    def ratio(self, t: torch.Tensor | float) -> torch.Tensor:
        """Noise-to-signal ratio ``r_t = sigma_t / alpha_t`` (EDM's sigma; ``r^-2`` is the SNR)."""
        alpha, sigma = self(t)
        return sigma / alpha

    def derivatives(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return ``(alpha_t, sigma_t, d alpha / dt, d sigma / dt)``, derivatives by autograd (the
        schedule is elementwise in ``t``, so the gradient of a sum is the pointwise derivative)."""
        with torch.enable_grad():
            t = t.detach().clone().requires_grad_(True)
            alpha, sigma = self.alpha_sigma(t)
            dalpha, dsigma = (_pointwise_derivative(v, t) for v in (alpha, sigma))
        return alpha.detach(), sigma.detach(), dalpha, dsigma

    def time_of_ratio(self, r: torch.Tensor, iterations: int = 60) -> torch.Tensor:
        """Invert ``r_t`` by bisection on ``[0, 1]`` (float64); ``r`` outside the range is clamped."""
        lo = torch.zeros_like(r, dtype=torch.float64)
        hi = torch.ones_like(r, dtype=torch.float64)
        target = r.to(torch.float64)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            below = self.ratio(mid) < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return ((lo + hi) / 2).to(r.dtype)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v:g}" for k, v in vars(self).items() if isinstance(v, float))
        return f"{type(self).__name__}({fields})"


def _pointwise_derivative(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``dv/dt`` for ``v`` an elementwise function of ``t`` (zero where ``v`` does not depend on it)."""
    if not v.requires_grad:
        return torch.zeros_like(t).detach()
    return torch.autograd.grad(v.sum(), t, retain_graph=True)[0]


class VPLinear(Schedule):
    """Variance-preserving DDPM schedule with linear betas, in continuous time (Ho et al. 2020).

    ``beta(t) = beta_min + t (beta_max - beta_min)``,
    ``alpha_t = exp(-beta_min t / 2 - (beta_max - beta_min) t^2 / 4)``, ``sigma_t = sqrt(1 - alpha_t^2)``.
    The defaults 0.1 and 20 are DDPM's ``beta_1 = 1e-4`` and ``beta_N = 0.02`` scaled by N = 1000,
    so discrete step ``i`` of DDPM sits at ``t = i / 1000`` (Song et al. 2021, appendix B).
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_alpha = -0.5 * self.beta_min * t - 0.25 * (self.beta_max - self.beta_min) * t**2
        # 1 - alpha^2 = -expm1(2 log alpha) keeps sigma accurate near t = 0.
        return torch.exp(log_alpha), torch.sqrt(-torch.expm1(2 * log_alpha))

    def time_of_ratio(self, r: torch.Tensor, iterations: int = 60) -> torch.Tensor:
        """Invert ``r_t`` in closed form: ``log(1 + r^2) = beta_min t + (beta_max - beta_min) t^2 / 2 = L``,
        so ``t = 2 L / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) L))`` (the root without
        cancellation). ``L`` is clamped to ``[0, L(1)]``, so ``r`` beyond ``r_1`` (infinity included) gives 1
        and ``r = 0`` gives 0, as the bisection does; NaN stays NaN. ``iterations`` is unused (one formula,
        no bisection: a peer's denoiser adapter inverts it at every call)."""
        spread, top = self.beta_max - self.beta_min, self.beta_min + (self.beta_max - self.beta_min) / 2
        log_snr = torch.log1p(r.to(torch.float64) ** 2).clamp(max=top)
        t = 2 * log_snr / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * spread * log_snr))
        t = torch.where(log_snr == top, 1.0, t)  # exactly 1, not 1 - 2e-16
        return torch.where(log_snr == 0, 0.0, t).to(r.dtype)  # 0 / 0 at r = 0 when beta_min = 0


class VPCosine(Schedule):
    """Variance-preserving cosine schedule (Nichol & Dhariwal 2021).

    ``alpha_t = cos(phi(t)) / cos(phi(0))`` with ``phi(t) = (pi / 2) (t * t_end + s) / (1 + s)``;
    ``t_end < 1`` stops just short of ``alpha = 0`` so that ``x_t / alpha_t`` stays finite.
    """

    name = "cosine"

    def __init__(self, s: float = 0.008, t_end: float = 0.9946) -> None:
        self.s, self.t_end = float(s), float(t_end)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi = (math.pi / 2) * (t * self.t_end + self.s) / (1 + self.s)
        alpha = torch.cos(phi) / math.cos((math.pi / 2) * self.s / (1 + self.s))
        return alpha, torch.sqrt((1 - alpha**2).clamp_min(0))


class VE(Schedule):
    """Variance-exploding schedule: ``alpha_t = 1``, ``sigma_t = sigma_max * t``; samplers stop at
    ``sigma_min`` before the final jump to 0.

    With ``sigma_max = 1`` this is the seed chapter's convention ``sigma_t = t``; the default
    ``sigma_max = 80`` makes ``x_1`` indistinguishable from pure noise for data in [-1, 1].
    """

    name = "ve"
    # sigma spans 0.002 to 80: uniform steps in t would leave the low-noise end with almost none
    default_spacing = "karras"

    def __init__(self, sigma_max: float = 80.0, sigma_min: float = 0.002) -> None:
        self.sigma_max, self.sigma_min = float(sigma_max), float(sigma_min)
        self.t_min = self.sigma_min / self.sigma_max

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones_like(t), self.sigma_max * t


class EDM(VE):
    """The EDM schedule (Karras et al. 2022): ``alpha = 1``, ``sigma = t * sigma_max``, used with the
    Karras time grid down to ``sigma_min`` and the preconditioning of :class:`EDMDenoiser`."""

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5):
        super().__init__(sigma_max, sigma_min)
        self.sigma_data = float(sigma_data)


SCHEDULES: dict[str, type[Schedule]] = {"vp": VPLinear, "cosine": VPCosine, "ve": VE, "edm": EDM}


def get_schedule(name: str, **options: float) -> Schedule:
    """Build a schedule by name: ``vp``, ``cosine``, ``ve`` or ``edm``."""
    return SCHEDULES[check_choice("schedule", name, list(SCHEDULES))](**options)


GRIDS = ("uniform", "quadratic", "reverse-quadratic", "karras", "log")


def time_grid(
    schedule: Schedule,
    steps: int,
    spacing: str | None = None,
    t_min: float | None = None,
    rho: float = 7.0,
) -> torch.Tensor:
    """Decreasing times ``t_0 = 1 > t_1 > ... > t_{steps-1} = t_min > t_steps = 0``, shape (steps + 1,).

    ``spacing`` and ``t_min`` default to ``schedule.default_spacing`` and ``schedule.t_min``; with
    ``steps = 1`` the grid is ``[1, 0]``.

    A sampler makes ``steps`` transitions ``t_i -> t_{i+1}``; the last one lands on ``t = 0``, where
    ``x_0`` is the denoiser's estimate. Spacings: ``uniform`` in t (DDPM with 1000 steps visits
    exactly ``i / 1000``), ``quadratic`` in sqrt(t) (DDIM's choice, Song et al. 2021),
    ``reverse-quadratic`` in ``(1 - t)^2`` (DiffPIR's "quad" skip, Zhu et al. 2023: long steps at high
    noise, half the uniform step at ``t_min``), ``karras`` uniform in ``r_t^(1/rho)`` between ``r(t_min)``
    and ``r(1)`` (Karras et al. 2022, eq. 5), ``log`` uniform in ``log r_t`` (its ``rho -> inf`` limit: a
    variance-exploding ``sigma_t = a (b / a)^t`` stepped uniformly in ``t``, the grid of MMPS's code,
    Rozet et al. 2024).
    """
    spacing = check_choice("time spacing", spacing or schedule.default_spacing, GRIDS)
    t_min = schedule.t_min if t_min is None else t_min
    if steps < 1:
        raise PosteriaError(f"steps must be a positive integer, got {steps}")
    if isinstance(t_min, bool) or not isinstance(t_min, int | float) or not 0 < t_min < 1:
        raise PosteriaError(f"t_min must lie in (0, 1), got {t_min!r}")
    u = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1)
    if spacing == "uniform":
        t = 1 - u * (1 - t_min)
    elif spacing == "quadratic":
        t = (1 - u * (1 - math.sqrt(t_min))) ** 2
    elif spacing == "reverse-quadratic":
        t = 1 - u.sqrt() * (1 - t_min)
    else:
        lo, hi = (schedule.ratio(torch.tensor(v, dtype=torch.float64)) for v in (t_min, 1.0))
        if spacing == "log":
            r = hi * (lo / hi) ** u
        else:
            r = (hi ** (1 / rho) + u * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        t = schedule.time_of_ratio(r)
        t[-1], t[0] = t_min, 1.0  # exact ends despite the bisection; [1, 0] when steps = 1
    return torch.cat([t, torch.zeros(1, dtype=t.dtype)]).to(torch.get_default_dtype())
