"""Moment matching posterior sampling (Rozet et al., 2024): ``mmps``."""

from __future__ import annotations

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import check_count, check_positive
from posteria.operators.base import LinearOperator
from posteria.posterior.base import Method, register
from posteria.posterior.guidance import (
    GuidedDenoiser,
    Matvec,
    guided_options,
    guided_sampler,
    real_view,
    solve_measurements,
    vjp,
)
from posteria.posterior.pigdm import isotropic_variance
from posteria.samplers.base import Sampler

REFERENCE = (
    "Rozet, Andry, Lanusse & Louppe, Learning diffusion priors from observations by expectation "
    "maximization, NeurIPS 2024"
)


class MMPSDenoiser(GuidedDenoiser):
    """``E[x | x_t, y] ~ x0 + C A^T (A C A^T + S)^-1 (y - A x0)``, ``C = (sigma_t^2 / alpha_t) J``.

    MMPS matches the first two moments of ``p(x | x_t)``: mean ``x0 = D(x_t)`` and, by Tweedie's
    second-order formula, covariance ``C = Cov[x | x_t] = (sigma_t^2 / alpha_t) d x0 / d x_t`` (a symmetric
    Jacobian ``J``, so one vector-Jacobian product applies it). With ``p(x | x_t) ~ N(x0, C)`` the
    posterior mean is the Gaussian conditioning above; for a Gaussian prior both moments are exact, so
    MMPS is then the exact posterior denoiser and any sampler on it samples ``p(x | y)``. ``S`` is the
    noise covariance: ``s^2 I`` for Gaussian noise, and for Poisson noise the diagonal of its Gaussian
    approximation at ``y`` (:meth:`~posteria.operators.noise_models.NoiseModel.likelihood_variance`):
    then MMPS on a Gaussian prior samples exactly the posterior of that approximate likelihood.

    The (m, m) system ``(A C A^T + S) u = y - A x0`` is solved per sample by conjugate gradients (each
    iteration one vjp through the denoiser), iterated in float64; the correction ``C A^T u`` is then
    recombined from the iterations' own products (:class:`RecordedProducts`), not one more vjp. With an SVD
    the solve is preconditioned by PiGDM's ``P = r_t^2 A A^T + s^2 I``
    (:func:`~posteria.posterior.pigdm.isotropic_variance`), applied as ``P^-1/2 (.) P^-1/2`` in closed form:
    the preconditioned matrix is ``I`` when ``C = r_t^2 I``, and its conditioning is that of ``C / r_t^2``,
    whatever ``sigma_y`` (unpreconditioned: about ``||A C A^T|| / s^2``; for a diagonal ``S``, ``s^2`` is its
    mean, and the spread of ``S``'s entries adds to the conditioning). Measured (float32, Gaussian 8x8 image
    prior, ``sigma_y = 1e-3``, DDPM 100 steps, 5 iterations): Gaussian blur, sample-mean error 0.15% and
    covariance as the exact sampler's, against 6.6% for plain float32 CG; with one iteration (azula's and the
    paper code's default) 0.9% against 37% and a covariance error 22 times the covariance. Masks gain nothing
    (``A A^T = I``, so ``P`` is a scalar). Few steps on a network: at ``t = 1`` the Tweedie covariance is
    ``sigma^2 / alpha`` (150 under VP) times the network's Jacobian, far from ``Cov[x]`` and not symmetric,
    so the correction can move ``A x0`` away from ``y`` (MNIST prior, 30% inpainting, ``sigma_y = 0.5``:
    residual 11 before, 25 to 60 after one CG iteration; GMRES(1), azula's default, 10 to 11), and with 1 or
    2 steps that estimate is the sample (values up to 121 in model space; 3 steps: 3.7); at the default 100
    steps, DDPM's first step keeps 0.13% of it (``k_t``, :func:`~posteria.posterior.dps.x0_weights`).

    Args: ``prior``, a linear ``operator`` with Gaussian (or Poisson) noise, ``y`` (N, *measurement);
    ``maxiter`` CG iterations (``"auto"``: :func:`default_iterations`; ``None``: until ``rtol``);
    ``rtol`` (default ``eps^0.75`` of float64); ``precondition``.
    Shapes: ``x_t`` (N, *event) -> (N, *event).
    """

    def __init__(
        self,
        prior: Denoiser,
        operator: LinearOperator,
        y: torch.Tensor,
        maxiter: int | str | None = "auto",
        rtol: float | None = None,
        precondition: bool = True,
    ) -> None:
        super().__init__(prior, operator, y)
        maxiter = default_iterations(prior) if maxiter == "auto" else maxiter
        self.maxiter = None if maxiter is None else check_count("maxiter", maxiter)
        self.rtol = None if rtol is None else float(check_positive("rtol", rtol))
        self.precondition = bool(precondition) and operator.svd is not None
        self.fallbacks = 0  # calls whose recombined C A^T u failed its check and took one more vjp

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        x0, _, _, correction = self.moments(x_t, t, cond)
        return x0 + correction

    def moments(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x0, r, u, C A^T u)``, detached: the prior's estimate (N, *event), the residual
        ``r = y - A x0`` and ``u = (A C A^T + S)^-1 r`` (N, *measurement), and the correction."""
        alpha, sigma = self.schedule(t)
        with torch.enable_grad():
            x, x0 = self.prior_with_graph(x_t, t, cond)
            cov = self.covariance(x, x0, self.gamma(t, x_t))

            products = RecordedProducts(lambda u: cov(self.operator.adjoint(u)), RECORDED_PRODUCTS)

            def system(u: torch.Tensor) -> torch.Tensor:  # (A C A^T + S) u
                return self.operator(products(u)) + self.noise_covariance(u)

            residual = self.measurements(x_t) - self.operator(x0.detach())
            u = self.solve(system, residual, isotropic_variance(alpha, sigma))
            correction = products.combine(u, like=x0)
            if correction is None:  # more products than recorded, or the check failed: one more vjp
                self.fallbacks += products.calls <= products.limit
                correction = products(u)
            return x0.detach(), residual, u, correction.detach()

    def covariance(self, x: torch.Tensor, x0: torch.Tensor, gamma: torch.Tensor) -> Matvec:
        """``v -> Cov[x | x_t] v = gamma J^T v``, ``gamma = sigma_t^2 / alpha_t``, ``J = d x0 / d x_t``
        symmetric (it is ``(gamma / alpha) (I + sigma^2 Hessian log p_t)``), so a vjp applies it."""
        return lambda v: gamma * vjp(x0, x, v)

    def solve(self, system: Matvec, b: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """``u = M^-1 b`` by CG, preconditioned by :meth:`inverse_sqrt_preconditioner` if asked."""
        W = self.inverse_sqrt_preconditioner(r2.to(torch.float64)) if self.precondition else None
        return solve_measurements(system, b, self.maxiter, self.rtol, W)

    @property
    def vjps_per_call(self) -> int:
        """At most one per CG iteration; the final ``C A^T u`` is recombined from them
        (:class:`RecordedProducts`) when there are at most :data:`RECORDED_PRODUCTS`, else one more. A call
        whose recombination fails its check takes one more too: counted in ``fallbacks``, which
        :func:`posteria.restore.restore` adds to the total."""
        iterations = self.maxiter or 2 * self.measurement_dim
        return iterations + (iterations > RECORDED_PRODUCTS)


#: Products ``C A^T u_k`` that :class:`RecordedProducts` keeps: enough for every default iteration count.
RECORDED_PRODUCTS = 8


class RecordedProducts:
    """A linear map ``L`` (MMPS's ``C A^T``: one vjp per product) that keeps each ``(u_k, L u_k)`` it
    computes, up to ``limit`` of them, so that ``L u`` for ``u = sum_k c_k u_k`` in their span costs no
    further product: ``L u = sum_k c_k L u_k``, by linearity.

    Conjugate gradients started at 0 return exactly such a ``u``, a combination of the search directions
    that were its matvec inputs (preconditioned: of ``P^-1/2`` times them, which are the inputs again), so
    MMPS's final ``C A^T u`` comes free: with 2 CG iterations, 2 vjps per call instead of 3. The ``c_k``
    are found per sample by least squares on the normalised ``u_k``, in float64, and used only if they
    reproduce ``u`` to ``1000 eps`` of its dtype (relative) and do not cancel (``sum_k |c_k| ||L u_k||``
    at most 100 times ``||L u||``, so the rounding of the ``L u_k`` is not amplified): else
    :meth:`combine` returns None and the caller applies ``L`` once more.
    """

    def __init__(self, linear_map: Matvec, limit: int) -> None:
        self.linear_map, self.limit = linear_map, limit
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        self.calls = 0

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        out = self.linear_map(u)
        self.calls += 1
        if self.calls <= self.limit:
            self.inputs.append(u.detach())
            self.outputs.append(out.detach())
        return out

    def combine(self, u: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
        """``L u`` (shaped like ``like``, (N, *event)) from the recorded products, or None."""
        if self.calls > self.limit:
            return None
        eps = torch.finfo(u.real.dtype).eps
        target = real_view(u.detach()).flatten(1).to(torch.float64)
        if not self.inputs:  # no CG iteration: u = 0
            return torch.zeros_like(like) if bool((target == 0).all()) else None
        U = torch.stack([real_view(v).flatten(1) for v in self.inputs], dim=2).to(torch.float64)
        scale = U.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)  # (N, 1, k)
        c = (torch.linalg.pinv(U / scale, rtol=100 * eps) @ target[..., None]) / scale.transpose(1, 2)
        misfit = (U @ c)[..., 0] - target
        if bool((misfit.norm(dim=1) > 1000 * eps * target.norm(dim=1)).any()):
            return None
        Z = torch.stack([z.flatten(1) for z in self.outputs], dim=2).to(torch.float64)
        combined = (Z @ c)[..., 0]
        terms = (Z.norm(dim=1) * c[..., 0].abs()).sum(1)
        if bool((terms > 100 * combined.norm(dim=1)).any()):
            return None
        return combined.reshape(like.shape).to(like.dtype)


#: CG iterations by default: to convergence in practice where the Jacobian is an exact covariance, and
#: the few a trained network's Jacobian supports (see :func:`default_iterations`).
EXACT_ITERATIONS, NETWORK_ITERATIONS = 5, 2


def default_iterations(prior: Denoiser) -> int:
    """CG iterations of ``mmps`` when ``maxiter="auto"``: 5 for a prior with an exact covariance, else 2.

    Five: on Gaussian priors (a 16-D random projection to 8, 8x8 inpainting with m = 48, at ``sigma_y``
    0.1 and 0.01) the sample mean is then within 1.5% of the prior-to-posterior distance and the
    covariance matches the exact sampler's; 1 iteration leaves 6 to 14% and covariance errors of 40 to
    120% on inpainting, 3 iterations 1 to 2%. A network's ``A C A^T`` is asymmetric and indefinite
    (:attr:`~posteria.denoisers.base.Denoiser.exact_covariance`), and solving it further moves away from
    the answer: MNIST prior (8,000 training steps), 30% inpainting, 8 digits, DDPM-100, PSNR 20.3, 20.1,
    17.3, 9.7 dB at 1, 3, 5, 10 iterations. Two (1) give, in dB: box 15.9 (15.9), SR x4 17.2 (17.7),
    blur 22.2 (21.6), CS 36.2 (35.0), MRI x4 33.1 (30.6): 2 on average (the paper and azula use 1).
    """
    return EXACT_ITERATIONS if prior.exact_covariance else NETWORK_ITERATIONS


def build_mmps(
    denoiser: Denoiser,
    operator: LinearOperator,
    y: torch.Tensor,
    steps: int,
    sampler: str = "ddpm",
    eta: float | None = None,
    maxiter: int | str | None = "auto",
    rtol: float | None = None,
    precondition: bool = True,
    spacing: str | None = "log",
    **options: object,
) -> Sampler:
    """Any sampler on :class:`MMPSDenoiser`; DDPM and preconditioned CG by default, ``maxiter="auto"``
    iterations from :func:`default_iterations`. Give ``maxiter=None`` to solve to ``rtol``.

    ``spacing="log"``: steps uniform in ``log r_t``, the grid of the paper's code (DDPM on a
    variance-exploding ``sigma_t`` geometric in ``t``). Measured on an exact prior
    (``posteria bench restore --prior mnist-mixture``, 64 draws, 100 steps), it brings the samples'
    ``nll_gap`` to the exact posterior from -0.18..-0.24 (uniform in ``t``) to -0.03..-0.08 nats per
    pixel, as close as 1,000 uniform steps (-0.03..-0.07): the fine directions' small variances are
    resolved in the low-noise steps that a uniform grid skips. ``spacing=None``: the schedule's default
    (uniform in ``t`` for VP)."""
    wrapper = MMPSDenoiser(denoiser, operator, y, maxiter, rtol, precondition)
    return guided_sampler(wrapper, steps, sampler, eta, spacing=spacing, **options)


register(
    Method(
        name="mmps",
        summary="moment matching: Tweedie covariance (sigma^2/alpha) dD/dx_t, Gaussian conditioning by CG",
        reference=REFERENCE,
        needs=("linear", "gaussian-or-poisson"),
        build=build_mmps,
        options_of=guided_options(build_mmps),
        default_steps=100,
    )
)
