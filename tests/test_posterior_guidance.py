"""Guidance methods (DPS, dps-squared, PiGDM, MMPS) against the exact posterior of a Gaussian prior.

The prior is ``N(mu, Sigma)`` on R^8 (eigenvalues 0.05 to 2, a random rotation), the operator a random
(4, 8) matrix, and ``p(x | y)`` is known in closed form (:func:`posteria.lab.gaussian_posterior`). MMPS's
moments are exact for a Gaussian prior, so its denoiser *is* the posterior denoiser and DDPM on it must
sample ``p(x | y)``. Sample checks whiten by the posterior, ``w = L^-1 (x - mu_post)``, and compare
``||mean(w)||`` and ``||cov(w) - I||_F`` with 99.9% Monte-Carlo bounds (``n ||mean(w)||^2 ~ chi2_8``:
``sqrt(26.1 / n)``; ``n ||cov(w) - I||^2 / 2 ~ chi2_36`` approximately: ``sqrt(2 * 68.0 / n)``) plus
DDPM's own discretisation bias, measured on the exact posterior denoiser (comments give the numbers).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import BatchNoise

from posteria.denoisers.gaussian import GaussianDenoiser
from posteria.errors import PosteriaError
from posteria.lab import gaussian_posterior, operator_matrix
from posteria.noise import VPLinear
from posteria.operators import MatrixOperator, PoissonNoise, get_operator
from posteria.posterior import METHODS, solve
from posteria.posterior.dps import DPSDenoiser, x0_weights
from posteria.posterior.guidance import vjp
from posteria.posterior.mmps import MMPSDenoiser
from posteria.posterior.pigdm import PiGDMDenoiser
from posteria.samplers import get_sampler

D, M = 8, 4
GUIDANCE = ("dps", "dps-squared", "pigdm", "mmps")


@pytest.fixture
def float64(one_thread: None) -> Iterator[None]:
    """float64 for closed-form checks (samplers draw x_1 in the default dtype), on one thread."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def problem(sigma_y: float = 0.1, dtype: torch.dtype = torch.float64, unit: bool = False) -> SimpleNamespace:
    """Prior, operator, one measurement ``y`` (1, M) of a prior draw, and the exact posterior (float64).

    ``unit``: the prior covariance is ``I`` (PiGDM's assumption) instead of the anisotropic one.
    """
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    f64 = torch.float64
    cov = torch.eye(D, dtype=f64) if unit else Q @ torch.diag(torch.logspace(-1.3, 0.3, D, dtype=f64)) @ Q.T
    mean = 0.5 * torch.randn(D, generator=g, dtype=torch.float64)
    A = torch.randn(M, D, generator=g, dtype=torch.float64) / math.sqrt(D)
    op = MatrixOperator(A.to(dtype), sigma_y=sigma_y)
    x = mean + torch.randn(D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    y = op.measure(x[None].to(dtype), generator=g)
    prior = GaussianDenoiser.full(VPLinear(), mean.to(dtype), cov.to(dtype))
    post = gaussian_posterior(mean, cov, op, y)
    exact = GaussianDenoiser.full(VPLinear(), post.mean[0], post.cov)  # the posterior's own denoiser
    return SimpleNamespace(prior=prior, op=op, y=y, mean=mean, cov=cov, post=post, exact=exact)


def whitened_errors(x: torch.Tensor, post) -> tuple[float, float]:
    """``(||mean(w)||, ||cov(w) - I||_F)`` for samples ``x`` (n, D) of the posterior of ``y[0]``."""
    w = post.whiten(x[None])[0]
    return float(w.mean(0).norm()), float((torch.cov(w.T) - torch.eye(D, dtype=w.dtype)).norm())


def whitened_gap(a: torch.Tensor, b: torch.Tensor, post) -> torch.Tensor:
    """Per-sample ``||L^-1 (a - b)||``: a difference in units of the posterior's standard deviations."""
    L = torch.linalg.cholesky(post.cov)
    return torch.linalg.solve_triangular(L, (a.double() - b.double()).T, upper=False).T.norm(dim=1)


def noisy_batch(post, t: float, n: int, seed: int) -> torch.Tensor:
    """``x_t = alpha_t x + sigma_t eps`` for ``x`` from the posterior: where the posterior denoiser acts."""
    alpha, sigma = VPLinear()(torch.tensor(t, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    return alpha * post.sample(n, g)[0] + sigma * torch.randn(n, D, generator=g, dtype=torch.float64)


# --- the exact-posterior laboratory -------------------------------------------------------------------


def test_gaussian_posterior_is_bayes_rule(float64: None) -> None:
    """Kalman form against the information form ``(Sigma^-1 + A^T A / s^2)^-1``; a batch of y."""
    p = problem(0.3)
    ys = torch.randn(3, M, generator=torch.Generator().manual_seed(1))
    post = gaussian_posterior(p.mean, p.cov, p.op, ys)
    A = p.op.matrix
    precision = torch.linalg.inv(p.cov) + A.T @ A / 0.09
    cov = torch.linalg.inv(precision)
    mean = (torch.linalg.solve(p.cov, p.mean) + ys @ A / 0.09) @ cov
    assert post.mean.shape == (3, D) and post.cov.shape == (D, D)
    torch.testing.assert_close(post.cov, cov, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(post.mean, mean, rtol=1e-9, atol=1e-12)
    x = post.sample(20000, torch.Generator().manual_seed(2))
    assert x.shape == (3, 20000, D)
    w = post.whiten(x)[1]  # the samples of y[1], whitened by its posterior
    assert float(w.mean(0).norm()) < math.sqrt(26.1 / 20000)
    assert float((torch.cov(w.T) - torch.eye(D)).norm()) < math.sqrt(2 * 68.0 / 20000)


def test_operator_matrix_and_noiseless_posterior(float64: None) -> None:
    """The dense matrix reproduces an image operator; sigma_y = 0 gives a singular, consistent posterior."""
    op = get_operator("sr2", (1, 4, 4), sigma_y=0.0)
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    A = operator_matrix(op)
    torch.testing.assert_close(x.reshape(5, -1) @ A.T, op(x).reshape(5, -1))
    post = gaussian_posterior(torch.zeros(16), torch.eye(16), op, op(x))
    assert bool(torch.isfinite(post.cov).all())
    samples = post.sample(4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(op(samples.reshape(-1, 1, 4, 4)), op(x).repeat_interleave(4, 0))


# --- MMPS: exact for a Gaussian prior -----------------------------------------------------------------


class IdentityCovariance(MMPSDenoiser):
    """Planted bug: ``Cov[x | x_t] = I`` (the second moment ignored)."""

    def covariance(self, x, x0, gamma):
        return lambda v: v


class NoTweedieWeight(MMPSDenoiser):
    """Planted bug: ``Cov[x | x_t] = d x0 / d x_t`` (``sigma_t^2 / alpha_t`` dropped)."""

    def covariance(self, x, x0, gamma):
        return lambda v: vjp(x0, x, v)


@pytest.mark.parametrize("precondition", [True, False])
def test_mmps_denoiser_is_the_posterior_denoiser(float64: None, precondition: bool) -> None:
    """Pointwise, at every noise level: MMPS(x_t) = E[x | x_t, y] (a full CG solve, m = 4 iterations)."""
    p = problem()
    den = MMPSDenoiser(p.prior, p.op, p.y.repeat(64, 1), maxiter=None, precondition=precondition)
    for i, t in enumerate((1.0, 0.5, 0.1, 0.01, 1e-3)):
        x_t = noisy_batch(p.post, t, 64, seed=i)
        assert float(whitened_gap(den(x_t, t), p.exact(x_t, t), p.post).max()) < 1e-8


# DDPM, 100 quadratic steps, n = 4000, seed 1. On the exact posterior denoiser (n = 40000) the bias is
# (0.010, 0.27); MMPS gives (0.038, 0.28) here, identical to the exact denoiser's run. Planted bugs:
# identity covariance (2.40, 2.16), no sigma^2 / alpha weight (2.17, 2.00).
MMPS_TOL = (math.sqrt(26.1 / 4000) + 0.02, math.sqrt(2 * 68.0 / 4000) + 0.3)


@pytest.mark.parametrize("variant", [MMPSDenoiser, IdentityCovariance, NoTweedieWeight])
def test_mmps_samples_the_exact_posterior(float64: None, variant: type) -> None:
    p, n = problem(), 4000
    sampler = get_sampler(
        "ddpm", variant(p.prior, p.op, p.y.repeat(n, 1), maxiter=None), 100, spacing="quadratic"
    )
    mean_err, cov_err = whitened_errors(sampler((n, D), noise=BatchNoise(n, 1)), p.post)
    exact = mean_err <= MMPS_TOL[0] and cov_err <= MMPS_TOL[1]
    assert exact == (variant is MMPSDenoiser), (mean_err, cov_err)


def test_mmps_float32_at_small_noise(one_thread: None) -> None:
    """sigma_y = 1e-3 in float32, default options: DDPM trajectories on MMPS follow those on the exact
    float64 posterior denoiser (same noise, MMPS's log grid) to 2e-3 posterior standard deviations
    (measured 3.1e-4), and the mean is right (whitened error 0.10, bound 0.26)."""
    n = 500
    p32, p64 = problem(1e-3, torch.float32), problem(1e-3)
    x = METHODS["mmps"].build(p32.prior, p32.op, p32.y.repeat(n, 1), 100)((n, D), noise=BatchNoise(n, 1))
    assert x.dtype == torch.float32
    torch.set_default_dtype(torch.float64)
    try:
        reference = get_sampler("ddpm", p64.exact, 100, spacing="log")((n, D), noise=BatchNoise(n, 1))
    finally:
        torch.set_default_dtype(torch.float32)
    assert float(whitened_gap(x, reference, p64.post).max()) < 2e-3
    assert whitened_errors(x.double(), p64.post)[0] < math.sqrt(26.1 / n) + 0.03


# --- every method: closer to the posterior than the prior, finite at small noise -----------------------


# |mean - mu_post| measured (n = 500) at sigma_y = 0.1 / 1e-3: mmps 0.02 / 0.02, pigdm 0.20 / 0.16,
# dps-squared 0.41 / 1.03, dps 1.01 / 0.28; the prior mean is 2.3 / 2.8 away. Without its overshoot
# limit dps-squared diverges (inf) already at sigma_y = 0.01.
@pytest.mark.parametrize("sigma_y, dtype", [(0.1, torch.float64), (1e-3, torch.float32)])
@pytest.mark.parametrize("method", GUIDANCE)
def test_guidance_moves_towards_the_posterior(one_thread: None, method: str, sigma_y: float, dtype) -> None:
    p, n = problem(sigma_y, dtype), 500
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        x = METHODS[method].build(p.prior, p.op, p.y.repeat(n, 1), METHODS[method].default_steps)(
            (n, D), noise=BatchNoise(n, 2)
        )
    finally:
        torch.set_default_dtype(default)
    assert bool(torch.isfinite(x).all())
    gap = float((x.double().mean(0) - p.post.mean[0]).norm())
    assert gap < float((p.mean - p.post.mean[0]).norm()), gap


def test_dps_squared_needs_its_overshoot_limit(one_thread: None) -> None:
    """The plain Tweedie-weighted Gaussian likelihood step diverges at small noise; the limit holds it."""
    p, n = problem(1e-3, torch.float32), 50
    with pytest.raises(PosteriaError, match="NaN or infinite"):
        METHODS["dps-squared"].build(p.prior, p.op, p.y.repeat(n, 1), 1000, limit=False)((n, D))


# --- Poisson noise: MMPS and PiGDM on its Gaussian approximation at y -------------------------------------


def poisson_problem(unit: bool = False, isotropic: bool = False) -> SimpleNamespace:
    """:func:`problem` measured with Poisson noise (rate 20) instead, and the exact posterior of the
    Gaussian approximation ``N(y; A x, diag(v))``, ``v`` the variance at ``y``: by whitening,
    ``A -> diag(v)^-1/2 A``, ``y -> v^-1/2 y``, unit noise. ``isotropic``: with ``v``'s mean for every
    entry instead (the answer of a method that ignored the diagonal)."""
    p = problem(unit=unit)
    op = MatrixOperator(p.op.matrix, noise=PoissonNoise(20.0))
    y = op.measure((p.mean + 0.5)[None], generator=torch.Generator().manual_seed(3))
    v = op.noise.likelihood_variance(y)[0]
    v = v.mean().expand_as(v) if isotropic else v
    whitened = MatrixOperator(p.op.matrix / v.sqrt()[:, None], sigma_y=1.0)
    post = gaussian_posterior(p.mean, p.cov, whitened, y / v.sqrt())
    exact = GaussianDenoiser.full(VPLinear(), post.mean[0], post.cov)
    return SimpleNamespace(prior=p.prior, op=op, y=y, v=v, post=post, exact=exact)


def test_poisson_variance_is_the_counts_variance_at_y(float64: None) -> None:
    """``v = 2 (y + 1) / rate``, floored at one count (``y = -1``: ``4 / rate^2``); it is the variance of
    ``y`` given a clean value equal to ``y`` (200,000 draws per value)."""
    noise = PoissonNoise(20.0)
    y = torch.tensor([[-1.0, -0.5, 0.0, 0.9]])
    torch.testing.assert_close(noise.likelihood_variance(y), torch.tensor([[0.01, 0.05, 0.1, 0.19]]))
    draws = noise.sample(y[:, 1:].expand(200_000, 3), torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.var(0), noise.likelihood_variance(y)[0, 1:], rtol=0.02, atol=0)


@pytest.mark.parametrize("precondition", [True, False])
def test_mmps_with_poisson_noise_is_the_approximate_posterior_denoiser(
    float64: None, precondition: bool
) -> None:
    """MMPS with the diagonal ``S = diag(v)`` is the posterior denoiser of the Gaussian approximation, to
    CG precision; an isotropic ``S`` (``v``'s mean) would be off by more than 1e-2 posterior sds."""
    p, isotropic = poisson_problem(), poisson_problem(isotropic=True)
    assert float(p.v.std() / p.v.mean()) > 0.3  # the entries' variances differ
    den = MMPSDenoiser(p.prior, p.op, p.y.repeat(64, 1), maxiter=None, precondition=precondition)
    for i, t in enumerate((1.0, 0.3, 0.01)):
        x_t = noisy_batch(p.post, t, 64, seed=i)
        got = den(x_t, t)
        assert float(whitened_gap(got, p.exact(x_t, t), p.post).max()) < 1e-8
        assert float(whitened_gap(got, isotropic.exact(x_t, t), p.post).max()) > 1e-2


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
def test_pigdm_is_exact_for_a_unit_covariance_prior(float64: None, noise: str) -> None:
    """Under ``N(mu, I)`` PiGDM's ``r_t^2 I`` is ``Cov[x | x_t]``, so its denoiser is the posterior's;
    with Poisson noise that of its Gaussian approximation, through CG on ``r^2 A A^T + diag(v)``."""
    p = problem(unit=True) if noise == "gaussian" else poisson_problem(unit=True)
    den = PiGDMDenoiser(p.prior, p.op, p.y.repeat(64, 1))
    for i, t in enumerate((1.0, 0.3, 0.01)):
        x_t = noisy_batch(p.post, t, 64, seed=i)
        assert float(whitened_gap(den(x_t, t), p.exact(x_t, t), p.post).max()) < 1e-8


# --- DPS is the paper's step ------------------------------------------------------------------------


class FixedNoise:
    """Returns the same z every call."""

    def __init__(self, z: torch.Tensor) -> None:
        self.z = z

    def __len__(self) -> int:
        return self.z.shape[0]

    def randn(self, event_shape, like=None) -> torch.Tensor:
        return self.z.to(like)


def paper_dps_step(p, x_i: torch.Tensor, t: float, s: float, z: torch.Tensor, zeta: float) -> torch.Tensor:
    """Chung et al. (2023), Algorithm 1, transcribed with ``abar_i = alpha_t^2``, ``abar_{i-1} = alpha_s^2``
    and the gradient in closed form: ``x0 = mu + J (x_i - sqrt(abar) mu)`` with
    ``J = sqrt(abar) Sigma (abar Sigma + (1 - abar) I)^-1``, so ``grad ||y - A x0|| = -J^T A^T r / ||r||``."""
    abar_i, abar_prev = (float(VPLinear()(torch.tensor(v, dtype=torch.float64))[0]) ** 2 for v in (t, s))
    alpha_i, eye = abar_i / abar_prev, torch.eye(D)
    beta_i = 1 - alpha_i
    score = p.prior.score(x_i, t)
    x0 = (x_i + (1 - abar_i) * score) / math.sqrt(abar_i)
    sigma_tilde = math.sqrt((1 - abar_prev) / (1 - abar_i) * beta_i)
    x_prime = (
        math.sqrt(alpha_i) * (1 - abar_prev) / (1 - abar_i) * x_i
        + math.sqrt(abar_prev) * beta_i / (1 - abar_i) * x0
        + sigma_tilde * z
    )
    J = math.sqrt(abar_i) * p.cov @ torch.linalg.inv(abar_i * p.cov + (1 - abar_i) * eye)
    r = p.y - x0 @ p.op.matrix.T
    grad = -(r / r.norm(dim=1, keepdim=True)) @ p.op.matrix @ J  # rows: (J^T A^T r)^T = r^T A J
    return x_prime - zeta * grad


def test_dps_step_is_the_papers_step(float64: None) -> None:
    """One DDPM step on DPSDenoiser equals Algorithm 1 of the paper, at the first, a middle and the last
    step (where ``abar_0 = 1`` makes ``x'_0 = x0``); per-sample norms, so a batch of 5."""
    p, zeta = problem(), 0.7
    sampler = METHODS["dps"].build(p.prior, p.op, p.y.repeat(5, 1), 1000, zeta=zeta)
    g = torch.Generator().manual_seed(3)
    for t, s in (sampler.pairs[0], sampler.pairs[500], sampler.pairs[-1]):
        x_i = p.post.mean[0] + torch.randn(5, D, generator=g)
        z = torch.randn(5, D, generator=g)
        ours = sampler.step(x_i, t, s, FixedNoise(z))
        torch.testing.assert_close(ours, paper_dps_step(p, x_i, t, s, z if s > 0 else 0 * z, zeta))


def test_dps_under_ddim_is_ddim_minus_the_step(float64: None) -> None:
    p = problem()
    guided = METHODS["dps"].build(p.prior, p.op, p.y.repeat(5, 1), 50, sampler="ddim", eta=0.5, zeta=0.3)
    plain = get_sampler("ddim", p.prior, 50, eta=0.5)
    t, s = guided.pairs[10]
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(0))
    z = torch.randn(5, D, generator=torch.Generator().manual_seed(1))
    with torch.enable_grad():
        leaf = x.clone().requires_grad_(True)
        norms = (p.y - p.op(p.prior(leaf, t))).norm(dim=1)
        (grad,) = torch.autograd.grad(norms.sum(), leaf)
    expected = plain.step(x, t, s, FixedNoise(z)) - 0.3 * grad
    torch.testing.assert_close(guided.step(x, t, s, FixedNoise(z)), expected)


def test_dps_weights_and_grid(float64: None) -> None:
    """``k_t`` is DDPM's ``sqrt(abar_{i-1}) beta_i / (1 - abar_i)``; off the grid the wrapper refuses."""
    p = problem()
    sampler = get_sampler("ddpm", p.prior, 10)
    times, weights = x0_weights(sampler)
    t, s = sampler.pairs[3]
    abar_t, abar_s = (float(VPLinear()(torch.tensor(v))[0]) ** 2 for v in (t, s))
    assert float(weights[3]) == pytest.approx(math.sqrt(abar_s) * (1 - abar_t / abar_s) / (1 - abar_t))
    assert float(weights[-1]) == pytest.approx(1.0)
    den = DPSDenoiser(p.prior, p.op, p.y, times, weights)
    with pytest.raises(PosteriaError, match="off the time grid"):
        den(torch.zeros(1, D), 0.123456)


# --- shapes, seeds, image operators, errors ---------------------------------------------------------


def image_prior() -> GaussianDenoiser:
    """A smooth Gaussian prior on 8x8 images: squared-exponential covariance, length scale 2 pixels."""
    ij = torch.stack(torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij"), -1).reshape(-1, 2)
    cov = 0.3 * torch.exp(-((ij[:, None] - ij[None]) ** 2).sum(-1) / 8.0) + 1e-3 * torch.eye(64)
    return GaussianDenoiser.full(VPLinear(), torch.zeros(1, 8, 8), cov, event_shape=(1, 8, 8))


@pytest.mark.parametrize("name", ["inpaint-box", "sr2", "mri4", "phase"])
@pytest.mark.parametrize("method", GUIDANCE)
def test_image_operators_shapes_and_seeds(one_thread: None, method: str, name: str) -> None:
    """Finite (B, n, *event) samples in a few steps; same seed, same samples; sample i of a batch does
    not depend on the others (per-sample step sizes and solves)."""
    op = get_operator(name, (1, 8, 8), sigma_y=0.05)
    if method in ("pigdm", "mmps") and not op.linear:
        pytest.skip("needs a linear operator")
    y = op.measure(0.5 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)))

    def run(prior: GaussianDenoiser, y: torch.Tensor) -> torch.Tensor:
        return solve(prior, op, y, method, steps=4, n=3, generator=torch.Generator().manual_seed(7))

    prior = image_prior()
    x = run(prior, y)
    assert x.shape == (2, 3, 1, 8, 8) and x.dtype == torch.float32 and not x.requires_grad
    assert bool(torch.isfinite(x).all())
    torch.testing.assert_close(run(prior, y), x, rtol=0, atol=0)
    # Independence in float64: in float32 MMPS's CG amplifies the round-off of different batch sizes
    # (matmul blocking) to ~1e-5.
    torch.set_default_dtype(torch.float64)
    try:
        prior, y = image_prior(), y.to(torch.complex128 if y.is_complex() else torch.float64)
        torch.testing.assert_close(run(prior, y[:1]), run(prior, y)[:1], rtol=0, atol=1e-10)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("name", ["mri4", "mri4-radial", "sr2"])
@pytest.mark.parametrize("method", ["mmps", "tds-mmps", "pigdm"])
def test_noiseless_measurements_are_fitted_in_float32(one_thread: None, method: str, name: str) -> None:
    """``sigma_y = 0`` on the shipped dtype: k-space's real view has more coordinates than ``A`` has rank,
    and the preconditioner once scaled their round-off by 1e8 (MMPS reached 1e13). Samples stay in range,
    and MMPS fits ``y`` (20 steps; measured |x| <= 1.3; largest residual: MMPS 4e-7, PiGDM 0.04, TDS-MMPS
    0.08)."""
    op = get_operator(name, (1, 8, 8), sigma_y=0.0)
    y = op(0.5 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    x = solve(image_prior(), op, y, method, steps=20, n=2, generator=torch.Generator().manual_seed(1))
    residual = float((op(x.flatten(0, 1)) - y.repeat_interleave(2, 0)).abs().max())
    assert float(x.abs().max()) < 3 and residual < (1e-5 if method == "mmps" else 0.5), residual


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["mmps", "pigdm", "ddrm"])
def test_noiseless_rank_deficient_matrix_gives_the_posterior_mean(
    one_thread: None, method: str, dtype: torch.dtype
) -> None:
    """A rank-2 (4, 8) matrix at ``sigma_y = 0``: its round-off singular values (~1e-7 of the largest in
    float32) are cut as DDRM's are, in the operator's precision, so the samples' mean is near the exact
    posterior's as DDRM's is (once: MMPS 5e8 away in float32, PiGDM 11 in float64). Measured distance
    (float64 / float32): MMPS 0.08 / 0.08, PiGDM 0.18 / 0.18, DDRM 0.27 / 0.21; the prior mean's: 3.0."""
    p = problem(dtype=dtype)
    g = torch.Generator().manual_seed(3)
    A = torch.randn(M, 2, generator=g, dtype=torch.float64) @ torch.randn(
        2, D, generator=g, dtype=torch.float64
    )
    op = MatrixOperator(A.to(dtype), sigma_y=0.0)
    y = op(p.mean[None].to(dtype) + 2 * torch.randn(1, D, generator=g, dtype=dtype))
    post = gaussian_posterior(p.mean, p.cov, MatrixOperator(A, sigma_y=1e-6), y.double()).mean[0]
    x = solve(p.prior, op, y, method, steps=100, n=400, generator=torch.Generator().manual_seed(0))[0]
    got, prior = float((x.double().mean(0) - post).norm()), float((p.mean - post).norm())
    assert got < 0.15 * prior, (got, prior)


def test_svd_and_cg_paths_agree(float64: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """PiGDM's closed-form inverse equals its CG solve, MMPS preconditioned equals plain, on a mask, a
    random projection and complex k-space (solved on real pairs)."""
    prior, g = image_prior(), torch.Generator().manual_seed(0)
    for name in ("inpaint-box", "cs25", "mri4"):
        op = get_operator(name, (1, 8, 8), sigma_y=0.01)
        x = 0.5 * torch.randn(3, 1, 8, 8, generator=g)
        y, x_t, t = op.measure(x, g), 0.7 * x + 0.7 * torch.randn(x.shape, generator=g), 0.3
        pigdm, mmps = PiGDMDenoiser(prior, op, y), MMPSDenoiser(prior, op, y, maxiter=None)
        closed_form, preconditioned = pigdm(x_t, t), mmps(x_t, t)
        monkeypatch.setattr(type(op), "svd", property(lambda self: None))
        torch.testing.assert_close(PiGDMDenoiser(prior, op, y)(x_t, t), closed_form)
        plain = MMPSDenoiser(prior, op, y, maxiter=None)
        assert not plain.precondition
        torch.testing.assert_close(plain(x_t, t), preconditioned, rtol=1e-8, atol=1e-9)
        monkeypatch.undo()


def test_bad_input(one_thread: None) -> None:
    p = problem(dtype=torch.float32)
    with pytest.raises(PosteriaError, match="sampler for dps"):
        METHODS["dps"].build(p.prior, p.op, p.y, 10, sampler="euler")
    with pytest.raises(PosteriaError, match="eta"):
        METHODS["dps"].build(p.prior, p.op, p.y, 10, eta=0.5)
    with pytest.raises(PosteriaError, match="zeta"):
        METHODS["dps"].build(p.prior, p.op, p.y, 10, zeta=-1.0)
    with pytest.raises(PosteriaError, match="sigma_y"):
        METHODS["dps-squared"].build(p.prior, MatrixOperator(p.op.matrix), p.y, 10)
    with pytest.raises(PosteriaError, match="4 measurements"):
        MMPSDenoiser(p.prior, p.op, p.y.repeat(4, 1))(torch.zeros(2, D), 0.5)
    with pytest.raises(PosteriaError, match="unknown option"):
        METHODS["mmps"].build(p.prior, p.op, p.y, 10, zeta=1.0)
    wrong = GaussianDenoiser.full(VPLinear(), torch.zeros(D + 1), torch.eye(D + 1))
    for wrapper in (DPSDenoiser, MMPSDenoiser, PiGDMDenoiser):  # built directly, without solve's checks
        with pytest.raises(PosteriaError, match=rf"prior's samples have shape \({D + 1},\) but the operator"):
            wrapper(wrong, p.op, p.y, *((torch.zeros(1), torch.ones(1)) if wrapper is DPSDenoiser else ()))
    with pytest.raises(PosteriaError, match="linear"):
        phase = get_operator("phase", (1, 8, 8))
        solve(image_prior(), phase, phase(torch.zeros(1, 1, 8, 8)), "mmps")
    with pytest.raises(PosteriaError, match="generator must be a torch.Generator"):
        solve(p.prior, p.op, p.y, "pigdm", 3, generator=5)
    # a numpy integer is a count like any other
    assert solve(p.prior, p.op, p.y, "pigdm", 3, n=np.int64(2)).shape == (1, 2, D)
    assert {"dps", "dps-squared", "pigdm", "mmps"} <= set(METHODS)
    # cost accounting: vjps through the prior per step, beyond its forward pass
    assert METHODS["mmps"].build(p.prior, p.op, p.y, 10).denoiser.vjps_per_call == 5  # C A^T u recombined
    assert METHODS["mmps"].build(p.prior, p.op, p.y, 10, maxiter=20).denoiser.vjps_per_call == 21
    assert METHODS["dps"].build(p.prior, p.op, p.y, 10).denoiser.vjps_per_call == 1


def test_mmps_iterations_follow_the_priors_covariance(tiny_prior: SimpleNamespace, one_thread: None) -> None:
    """``maxiter="auto"``: 5 CG iterations where the Jacobian is an exact covariance (closed-form
    denoisers), 2 on a trained network, whose ``A C A^T`` is asymmetric and indefinite; an explicit count
    wins. tds-mmps follows the same rule."""
    from posteria.posterior.mmps import EXACT_ITERATIONS, NETWORK_ITERATIONS
    from posteria.priors import load_prior

    network = load_prior(tiny_prior.folder)
    exact = GaussianDenoiser.full(VPLinear(), torch.zeros(64), torch.eye(64), event_shape=(1, 8, 8))
    assert not network.exact_covariance and exact.exact_covariance
    op = get_operator("inpaint-box", (1, 8, 8), sigma_y=0.05)
    y = op(torch.zeros(2, 1, 8, 8))
    for prior, expected in ((exact, EXACT_ITERATIONS), (network, NETWORK_ITERATIONS)):
        assert METHODS["mmps"].build(prior, op, y, 4).denoiser.maxiter == expected
        assert METHODS["tds-mmps"].build(prior, op, y, 4).moments.maxiter == expected
    assert METHODS["mmps"].build(network, op, y, 4, maxiter=7).denoiser.maxiter == 7
    assert (EXACT_ITERATIONS, NETWORK_ITERATIONS) == (5, 2)


@pytest.mark.parametrize("name", ["inpaint-random", "sr2", "mri4"])
def test_mmps_recombines_its_last_product_from_the_cg_ones(
    tiny_prior: SimpleNamespace, one_thread: None, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """On a trained network (float32, complex k-space included): the correction ``C A^T u`` rebuilt from
    the CG iterations' products is the one an extra vjp gives, to float32 rounding; the vjps actually
    taken are ``vjps_per_call`` per call (2, not 3), and no call falls back."""
    import posteria.posterior.mmps as mmps
    from posteria.priors import load_prior
    from posteria.tensors import batch_times

    network = load_prior(tiny_prior.folder)
    op = get_operator(name, (1, 8, 8), sigma_y=0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 8, 8, generator=g).clamp(-1, 1)
    den = MMPSDenoiser(network, op, op.measure(x, g))
    calls = []
    monkeypatch.setattr(mmps, "vjp", lambda *args: calls.append(1) or vjp(*args))
    for t in (0.8, 0.3, 0.05):
        x_t = 0.7 * x + 0.5 * torch.randn(x.shape, generator=g)
        recombined = den(x_t, batch_times(t, x_t))
        assert len(calls) == den.vjps_per_call == 2
        monkeypatch.setattr(mmps, "RECORDED_PRODUCTS", 0)  # every product by its own vjp
        explicit = den(x_t, batch_times(t, x_t))
        monkeypatch.setattr(mmps, "RECORDED_PRODUCTS", 8)
        correction = explicit - network(x_t, batch_times(t, x_t))
        assert float((recombined - explicit).norm() / correction.norm()) < 1e-5
        calls.clear()
    assert den.fallbacks == 0  # no recombination failed its check
