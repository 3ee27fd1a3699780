"""DAPS (Zhang et al. 2025): decoupled annealing posterior sampling, for linear and nonlinear operators.

Each annealing level ``t`` turns the current noisy state into a clean estimate ``x0_hat`` (a short
probability-flow ODE solve), moves it towards the data by Langevin dynamics on ``p(x0 | x_t, y)``, and
re-noises the result to the next level with *fresh* noise: the states of two levels are coupled only through
``x0``, never through a shared noise path (the "decoupling"), so large Langevin moves are allowed.
"""

from __future__ import annotations

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_count, check_positive
from posteria.operators.base import Operator
from posteria.operators.svd import ImplicitSVD
from posteria.posterior.base import register, transition_method
from posteria.posterior.ddnm import match
from posteria.posterior.guidance import real_view
from posteria.samplers.base import Noise, Sampler
from posteria.tensors import expand_like, flat

REFERENCE = (
    "Zhang, Chu, Berner, Meng, Anandkumar & Song, Improving diffusion inverse problem solving with "
    "decoupled noise annealing, CVPR 2025"
)

#: the likelihood width used for noiseless measurements (the official code's ``tau``)
NOISELESS_TAU = 1e-2


def start_vector(like: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random direction per sample, (B, *event): the same whatever the batch or the seed,
    so power iterations are reproducible and never start orthogonal to a structured top singular vector."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(tuple(like.shape[1:]), generator=g, dtype=like.dtype).to(like.device)
    return v.expand_as(like).clone()


def jacobian_norm2(operator: Operator, x: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """``lambda_max(J^T J)`` per sample (B,), ``J = dA/dx`` at ``x`` (B, *event), by power iteration.

    ``J v = grad_u <J^T u, v>``, with ``J^T u`` itself a vjp built with ``create_graph``, so only autograd
    through ``A`` is needed: linear and nonlinear operators alike, complex measurements through
    :func:`real_view`. The Rayleigh quotient after ``k`` iterations lies below the top eigenvalue, by a
    relative error of order ``(lambda_2 / lambda_1)^(2 k)``; callers use it inside a safety factor.
    """
    v = start_vector(x)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = real_view(operator(x))
        u = torch.zeros_like(out, requires_grad=True)
        (jt_u,) = torch.autograd.grad(out, x, u, create_graph=True)
        for _ in range(iterations):
            v = v / expand_like(flat(v).norm(dim=1).clamp_min(torch.finfo(v.dtype).tiny), v)
            (jv,) = torch.autograd.grad(jt_u, u, v, retain_graph=True)
            (jtjv,) = torch.autograd.grad(out, x, jv, retain_graph=True)
            lam, v = (flat(v) * flat(jtjv)).sum(1), jtjv
    return lam.detach()


def operator_norm2(operator: Operator, like: torch.Tensor) -> float:
    """``||A||^2`` of a linear operator: exact from its SVD, else ``lambda_max(J^T J)`` by
    :func:`jacobian_norm2` at a fixed, seed-independent point of the size of data in model space
    (``like``: a batch (B, *event), for its dtype and device)."""
    svd = getattr(operator, "svd", None)
    if svd is not None:
        return float(svd.s.max()) ** 2
    return float(jacobian_norm2(operator, 0.5 * start_vector(like[:1]))[0])


def likelihood_score(
    operator: Operator, y: torch.Tensor, x: torch.Tensor, variance: torch.Tensor | float
) -> torch.Tensor:
    """``grad_x log N(y; A(x), diag(v)) = J^T ((y - A(x)) / v)`` (B, *event), ``v`` a float or a tensor
    that broadcasts against ``y``, by the operator's :meth:`~posteria.operators.base.Operator.vjp`: the
    adjoint for a linear ``A``, a closed form where a nonlinear one has it, else autograd through ``A``."""
    if isinstance(variance, torch.Tensor):  # computed from y: move it to x's dtype and device
        variance = variance.to(device=x.device, dtype=x.real.dtype)
    value, pullback = operator.vjp(x)
    return pullback((match(y, x) - value) / variance)


class DAPS(Sampler):
    """DAPS: per level, ODE estimate ``x0_hat``, Langevin on ``p(x0 | x_t, y)``, fresh re-noising.

    At grid time ``t`` (noise level ``r_t = sigma_t / alpha_t``, the variance-exploding sigma the paper
    anneals), with ``x_s`` the next level:

    1. ``x0_hat``: ``ode_steps`` deterministic DDIM steps (Euler for the probability-flow ODE in
       ``(x / alpha, r)``) from ``t`` to 0 on a Karras grid in ``r`` (``rho = 7``, as the official code's
       ``poly-7``); ``ode_steps = 1`` is Tweedie's ``D(x_t, t)``.
    2. ``x0``: ``K = langevin_steps`` steps of unadjusted Langevin dynamics started at ``x0_hat`` on
       ``log p(x0 | x_t, y) = -||x0 - x0_hat||^2 / (2 r_t^2) + log N(y; A(x0), tau^2 I) + const``
       (the paper's Gaussian approximation ``p(x0 | x_t) ~ N(x0_hat, r_t^2 I)``, as in the official code):
       ``x0 <- x0 + eta (J^T (y - A(x0)) / tau^2 - (x0 - x0_hat) / r_t^2) + sqrt(2 eta) z``. Poisson
       noise enters as its Gaussian approximation at ``y``, with ``tau^2`` the mean of its variances
       (:meth:`likelihood_variance`). For a linear ``A`` with an SVD the ``K`` steps are one Gaussian draw
       from their exact law (:meth:`spectral_law`), so their cost does not grow with ``K``.
    3. ``x_s = alpha_s x0 + sigma_s z`` with fresh ``z`` (``x_0 = x0`` at the last level).

    Step size, per sample ``i``: ``eta_i = step_size / L_i`` with ``L_i = 1 / r_t^2 + lambda_i / tau^2``
    the largest curvature of the target, ``lambda_i = ||J||^2`` the top eigenvalue of ``J^T J``
    (:func:`jacobian_norm2`, once for a linear ``A``; for a nonlinear one the operator's closed form,
    phase retrieval's 1/4, or power iteration at ``x0_hat`` of every level). The official code uses a
    fixed learning rate (5e-5 to 1e-4, decayed linearly to 1% over the levels), tuned for 256x256 images
    and ``tau = 0.01``; a curvature-scaled step is stable for any signal size, operator norm and
    ``sigma_y`` (at ``sigma_y = 1e-3`` a fixed 1e-4 diverges once ``||A|| > 0.14``), and it shrinks with
    ``r_t`` as the paper's decay does.

    Defaults, chosen by cost and measured on a Gaussian prior (D = 4, a 2 x 4 matrix, 100 levels,
    ``n = 2000``, posterior-whitened errors at ``sigma_y`` = 0.1, 0.01, 1e-3; the prior mean is 7.4 to 800
    away; Monte-Carlo noise about 0.1 on the mean): ``ode_steps = 1`` (the paper's DAPS-1K uses 5, five
    times the denoiser calls, and measured no better: mean 0.07 against 0.08, covariance error 0.4-0.8
    against 0.5-1.0; on a two-component mixture both put 57% of the mass on the mode that holds 77%);
    ``langevin_steps = 20`` (the paper: 100, measured no better here, and on MNIST validation digits
    500-515 at ``sigma_y = 0.05`` 0.1-0.9 dB worse on all six benchmark tasks, at the same cost with an
    SVD; 5 steps double the covariance error at ``sigma_y = 1e-3``, 1.6 against 0.8); ``step_size = 0.5`` (the
    official inpainting ``lr = 5e-5`` with ``tau = 0.01`` is ``0.5 / L`` for a mask; 1.0 gives covariance
    errors 1.0-1.4); ``tau = sigma_y`` (the noise of ``y``; the official code sets ``tau = 0.01`` whatever
    the noise; noiseless ``y`` uses 0.01); 100 levels (the paper: 200; mean error 0.24, 0.11, 0.07, 0.04 at
    20, 50, 100, 200 levels and ``sigma_y = 0.1``). Like every sampler here the run stops at ``t_min``
    (``r = 0.01`` for VP): the last Langevin run still fits ``y`` to ``tau``, so ``sigma_y = 1e-3`` works.
    Shapes: ``x_t`` (N, *event), sample ``i`` conditioned on ``y[i]`` (N, *measurement).
    """

    def __init__(
        self,
        denoiser: Denoiser,
        steps: int,
        operator: Operator,
        y: torch.Tensor,
        ode_steps: int = 1,
        langevin_steps: int = 20,
        step_size: float = 0.5,
        tau: float | None = None,
        **options: object,
    ) -> None:
        super().__init__(denoiser, steps, **options)
        self.operator, self.y = operator, y
        self.ode_steps = check_count("ode_steps", ode_steps)
        self.langevin_steps = check_count("langevin_steps", langevin_steps, minimum=0)
        self.step_size = float(check_positive("step_size", step_size))
        if self.step_size > 1:
            raise PosteriaError(f"step_size must lie in (0, 1] (a fraction of 1 / L), got {step_size!r}")
        self.variance = self.likelihood_variance(operator, y, tau)
        self.ode_grids = {t: self.ode_grid(t) for t, _ in self.pairs}
        self._linear_norm2: float | None = None

    @staticmethod
    def likelihood_variance(operator: Operator, y: torch.Tensor, tau: float | None) -> torch.Tensor | float:
        """``tau^2`` if given; else the noise's: ``sigma_y^2`` (``NOISELESS_TAU^2`` for noiseless ``y``),
        or for Poisson noise the mean over ``y``'s entries of its variance at ``y``, per sample (N,).
        Not the diagonal itself: the Langevin step is set by the smallest entry (a black pixel's
        one count), and 20 such steps under-fit the rest (rate 50, 16 test digits, 100 levels: box,
        random, SR x4, deblur 13.1, 14.8, 13.9, 14.8 dB with the diagonal, 14.7, 18.6, 14.7, 17.8 with the
        mean)."""
        if tau is not None:
            return float(check_positive("tau", tau)) ** 2
        variance = operator.noise.likelihood_variance(y)
        if isinstance(variance, float):
            return variance or NOISELESS_TAU**2
        return flat(variance).mean(1)

    def sample_variance(self, like: torch.Tensor) -> torch.Tensor:
        """The likelihood variance of each sample, (N,) like ``like`` (N,)."""
        if isinstance(self.variance, float):
            return torch.full_like(like, self.variance)
        return self.variance.to(like)

    @property
    def nfe(self) -> int:
        """``ode_steps`` denoiser calls per level (Langevin steps call only the operator)."""
        return self.steps * self.ode_steps

    @property
    def vjps(self) -> int:
        """Vector-Jacobian products through the denoiser: none (the gradients are through ``A`` only)."""
        return 0

    def ode_grid(self, t: float) -> list[float]:
        """Times ``t = u_0 > ... > u_{n-1}`` then 0: Karras spacing in ``r`` from ``r_t`` to ``r(t_min)``."""
        n, schedule = self.ode_steps, self.denoiser.schedule
        t_end = min(schedule.t_min, t)
        if n == 1 or t_end >= t:
            return [t, 0.0]
        lo, hi = (schedule.ratio(torch.tensor(v, dtype=torch.float64)) ** (1 / 7) for v in (t_end, t))
        r = (hi + torch.linspace(0, 1, n, dtype=torch.float64) * (lo - hi)) ** 7
        times = [float(u) for u in schedule.time_of_ratio(r)]
        return [t, *times[1:-1], t_end, 0.0]

    def step(self, x_t: torch.Tensor, t: float, s: float, noise: Noise, **cond: object) -> torch.Tensor:
        x0_hat = self.ode_estimate(x_t, t, cond)
        alpha_t, sigma_t = self.alpha_sigma(t)
        x0 = self.langevin(x0_hat, sigma_t / alpha_t, noise)
        if s == 0:
            return x0
        alpha_s, sigma_s = self.alpha_sigma(s)
        return alpha_s * x0 + sigma_s * noise.randn(tuple(x_t.shape[1:]), like=x_t)

    def ode_estimate(self, x_t: torch.Tensor, t: float, cond: dict) -> torch.Tensor:
        """``x0_hat``: deterministic DDIM, ``x_v = alpha_v x0 + sigma_v (x_u - alpha_u x0) / sigma_u``,
        over :meth:`ode_grid` (``x0 = D(x_u, u)``); the last step returns ``x0``."""
        grid, x = self.ode_grids.get(t) or self.ode_grid(t), x_t
        for u, v in zip(grid[:-1], grid[1:], strict=True):
            x0 = self.denoiser(x, u, **cond)
            if v == 0:
                return x0
            (alpha_u, sigma_u), (alpha_v, sigma_v) = self.alpha_sigma(u), self.alpha_sigma(v)
            x = alpha_v * x0 + sigma_v * (x - alpha_u * x0) / sigma_u
        return x

    def langevin(self, x0_hat: torch.Tensor, r: float, noise: Noise) -> torch.Tensor:
        """``K`` unadjusted Langevin steps on ``p(x0 | x_t, y)`` from ``x0_hat`` (see the class): drawn from
        their exact law in one go when ``A`` has an SVD (:meth:`spectral_law`), else stepped with the ``K``
        noise draws of a sample from its stream in one call, (N, K, *event)."""
        if self.langevin_steps == 0:
            return x0_hat
        norm2 = self.operator_norm2(x0_hat)
        variance = self.sample_variance(norm2)
        eta = self.step_size / (1 / r**2 + norm2 / variance)
        svd = self.operator.svd if self.operator.linear else None
        if svd is not None:
            mean, std = self.spectral_law(x0_hat, r, eta, variance, svd)
            return svd.V((mean + std * noise.randn((mean.shape[1],), like=mean)).to(x0_hat))
        z = noise.randn((self.langevin_steps, *x0_hat.shape[1:]), like=x0_hat)
        eta = expand_like(eta, x0_hat)
        if self.operator.linear:
            return self.linear_langevin(x0_hat, r, eta, expand_like(variance, x0_hat), z)
        x, variance = x0_hat, expand_like(variance, self.y)
        for k in range(self.langevin_steps):
            drift = likelihood_score(self.operator, self.y, x, variance) - (x - x0_hat) / r**2
            x = x + eta * drift + (2 * eta).sqrt() * z[:, k]
        return x

    def spectral_law(
        self, x0_hat: torch.Tensor, r: float, eta: torch.Tensor, variance: torch.Tensor, svd: ImplicitSVD
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact law of :meth:`langevin`'s ``K`` steps for ``A = U diag(s) V^T``, in the coordinates
        ``c = V^T x``, where every step is a scalar recursion per coordinate ``i`` (float64, (N, D) each):

        ``c_{k+1} = m c_k + b + sqrt(2 eta) xi_k``, ``m = 1 - a``, ``a = eta (1 / r^2 + s_i^2 / v)``,
        ``b = eta (s_i (U^T y)_i / v + c_0 / r^2)``, so ``c_K ~ N(m^K c_0 + b S_1, 2 eta S_2)`` with
        ``S_1 = sum_{j<K} m^j = (1 - m^K) / a`` and ``S_2 = sum_{j<K} m^{2j} = (1 - m^{2K}) / (a (2 - a))``.

        Gaussian in law, not just in the limit: the same chain as stepping, ``K``-step bias included, at
        the cost of two transforms and one draw of D normals per sample, not ``K`` of ``A^T A`` and of the
        noise (stepping spent 10-30% of a batch-8 MNIST forward per level). ``a <= step_size <= 1``, and
        ``expm1`` / ``log1p`` keep ``S_1`` and ``S_2`` exact where ``a`` is below float32's resolution.
        ``eta`` and ``variance`` (N,); returns the mean and the standard deviation of ``c_K``."""
        c0 = svd.Vt(x0_hat).double()
        s = svd.s.to(c0)
        eta, variance = eta.double()[:, None], variance.double()[:, None]
        a = eta * (1 / r**2 + s**2 / variance)
        log_m = torch.log1p(-a)
        s1 = -torch.expm1(self.langevin_steps * log_m) / a
        s2 = -torch.expm1(2 * self.langevin_steps * log_m) / (a * (2 - a))
        b = eta * (s * svd.Ut(match(self.y, x0_hat)).double() / variance + c0 / r**2)
        return torch.exp(self.langevin_steps * log_m) * c0 + b * s1, (2 * eta * s2).sqrt()

    def linear_langevin(
        self, x0_hat: torch.Tensor, r: float, eta: torch.Tensor, variance: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """The steps of :meth:`langevin` for a linear ``A`` without an SVD, regrouped so that each costs one
        ``A^T A`` and two fused multiply-adds (the direct form spent 11% of a batch-8 forward on a mask):

        ``x_{k+1} = (1 - eta / r^2) x_k - (eta / v) A^T A x_k + b_k``,
        ``b_k = eta (A^T y / v + x0_hat / r^2) + sqrt(2 eta) z_k``, all ``b_k`` formed at once.
        ``x0_hat`` (N, *event); ``eta`` and ``variance`` (N, 1, ..., 1); ``z`` (N, K, *event)."""
        precision = 1 / variance
        target = self.operator.adjoint(match(self.y, x0_hat)) * precision + x0_hat / r**2
        drive = (eta * target).unsqueeze(1) + (2 * eta).sqrt().unsqueeze(1) * z
        keep, gain = 1 - eta / r**2, eta * precision
        x = x0_hat
        for k in range(self.langevin_steps):
            x = torch.addcmul(drive[:, k], keep, x).addcmul_(self.operator.gram(x), gain, value=-1)
        return x

    def operator_norm2(self, x: torch.Tensor) -> torch.Tensor:
        """``||J||^2`` per sample (B,) at ``x``: computed once for a linear operator; for a nonlinear one the
        operator's closed form (:meth:`~posteria.operators.base.Operator.jacobian_norm2`) or power
        iteration at ``x``."""
        if not self.operator.linear:
            known = self.operator.jacobian_norm2(x)
            return jacobian_norm2(self.operator, x) if known is None else known
        if self._linear_norm2 is None:
            self._linear_norm2 = operator_norm2(self.operator, x)
        return torch.full((x.shape[0],), self._linear_norm2, dtype=x.dtype, device=x.device)


register(
    transition_method(
        DAPS,
        name="daps",
        summary="Decoupled annealing: ODE estimate of x0, Langevin on p(x0 | x_t, y), fresh re-noising",
        reference=REFERENCE,
        needs=("gaussian-or-poisson",),
        default_steps=100,
    )
)
