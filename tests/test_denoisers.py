"""Denoisers against closed forms: Gaussian, Gaussian mixture, empirical, parameterisations, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from posteria import tweedie
from posteria.denoisers import EmpiricalDenoiser, GaussianMixtureDenoiser
from posteria.denoisers.gaussian import GaussianDenoiser
from posteria.denoisers.parameterisation import EDMDenoiser, EpsilonDenoiser, VDenoiser, X0Denoiser
from posteria.errors import PosteriaError, check_finite
from posteria.noise import EDM, VE, VPCosine, VPLinear

F64 = torch.float64
TIMES = torch.tensor([0.0, 0.01, 0.3, 0.7, 1.0], dtype=F64)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noisy(schedule, x: torch.Tensor, t: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """``x_t = alpha_t x + sigma_t eps`` with per-sample times ``t`` of shape (B,)."""
    alpha, sigma = (c.to(x)[:, None] for c in schedule(t))
    return alpha * x + sigma * torch.randn(x.shape, generator=gen(seed), dtype=x.dtype)


def textbook(schedule, mean, cov, x_t, t) -> torch.Tensor:
    """``mu + alpha Sigma (alpha^2 Sigma + sigma^2 I)^-1 (x_t - alpha mu)``, one sample at a time."""
    out = []
    for x, tt in zip(x_t, t, strict=True):
        alpha, sigma = (float(c) for c in schedule(tt))
        C = alpha**2 * cov + sigma**2 * torch.eye(len(mean), dtype=F64)
        out.append(mean + alpha * cov @ torch.linalg.solve(C, x - alpha * mean))
    return torch.stack(out)


def random_spd(D: int, seed: int) -> torch.Tensor:
    A = torch.randn(D, D, generator=gen(seed), dtype=F64)
    return A @ A.T / D + 0.1 * torch.eye(D, dtype=F64)


# ---------------------------------------------------------------- (a) Gaussian vs the textbook formula


@pytest.mark.parametrize("kind", ["full", "diagonal", "low_rank"])
@pytest.mark.parametrize("schedule", [VPLinear(), VPCosine(), VE(sigma_max=1.0)], ids=repr)
def test_gaussian_matches_textbook_formula(kind, schedule):
    D = 5
    mean = torch.randn(D, generator=gen(2), dtype=F64)
    if kind == "full":
        cov = random_spd(D, 3)
        den = GaussianDenoiser.full(schedule, mean, cov)
    elif kind == "diagonal":
        var = torch.rand(D, generator=gen(3), dtype=F64) + 0.05
        cov, den = torch.diag(var), GaussianDenoiser.diagonal(schedule, mean, var)
    else:
        U = torch.randn(D, 2, generator=gen(3), dtype=F64)
        cov = U @ U.T + 0.3 * torch.eye(D, dtype=F64)
        den = GaussianDenoiser.low_rank(schedule, mean, U, floor=0.3)
    x_t = torch.randn(len(TIMES), D, generator=gen(4), dtype=F64) * 2
    expected = textbook(schedule, mean, cov, x_t, TIMES)
    torch.testing.assert_close(den(x_t, TIMES), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(den.cov, cov, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- (b) mixture vs brute-force integration


def grid_posterior_mean(log_prior, grid, cell, schedule, x_t, t):
    """``E[x | x_t]`` and ``p_t(x_t)`` by quadrature: ``p(x | x_t) ∝ p(x) N(x_t; alpha x, sigma^2 I)``.

    ``grid`` (G, D) holds quadrature nodes of volume ``cell``; ``x_t`` (B, D), one time ``t``.
    """
    alpha, sigma = (float(c) for c in schedule(torch.tensor(t, dtype=F64)))
    sq = torch.cdist(x_t, alpha * grid) ** 2  # (B, G)
    D = grid.shape[1]
    log_lik = -sq / (2 * sigma**2) - D * math.log(sigma * math.sqrt(2 * math.pi))
    log_joint = log_prior(grid)[None] + log_lik
    mean = torch.softmax(log_joint, -1) @ grid
    return mean, torch.logsumexp(log_joint, -1) + math.log(cell)


def mixture_log_prob(den: GaussianMixtureDenoiser):
    """The prior log density at t = 0 from dense covariances (independent of the denoiser's algebra)."""
    comps = torch.distributions.MultivariateNormal(den.means, covariance_matrix=den.covs)

    def log_prob(x):
        return torch.logsumexp(comps.log_prob(x[:, None, :]) + den.log_weights, -1)

    return log_prob


@pytest.mark.parametrize("t", [0.05, 0.2, 0.5, 0.9])
def test_mixture_1d_matches_quadrature(t):
    schedule = VPLinear()
    means = torch.tensor([[-2.0], [0.5], [3.0]], dtype=F64)
    var = torch.tensor([[0.3], [1.0], [0.1]], dtype=F64)
    den = GaussianMixtureDenoiser.diagonal(schedule, means, var, weights=torch.tensor([0.2, 0.5, 0.3]))
    grid = torch.linspace(-12, 12, 24001, dtype=F64)[:, None]
    x_t = torch.linspace(-3, 4, 7, dtype=F64)[:, None]
    mean, log_pt = grid_posterior_mean(mixture_log_prob(den), grid, 1e-3, schedule, x_t, t)
    torch.testing.assert_close(den(x_t, t), mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(den.log_prob_t(x_t, t), log_pt, rtol=0, atol=1e-8)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_mixture_2d_full_covariance_matches_quadrature(t):
    schedule = VPLinear()
    means = torch.tensor([[-1.5, 0.5], [1.0, -1.0]], dtype=F64)
    covs = torch.stack([random_spd(2, 5) * 0.5, random_spd(2, 6) * 0.3])
    den = GaussianMixtureDenoiser.full(schedule, means, covs, weights=torch.tensor([0.4, 0.6], dtype=F64))
    axis = torch.linspace(-6, 6, 601, dtype=F64)
    grid = torch.cartesian_prod(axis, axis)
    x_t = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-2.0, 1.0], [0.3, 2.0]], dtype=F64)
    mean, log_pt = grid_posterior_mean(mixture_log_prob(den), grid, 0.02**2, schedule, x_t, t)
    torch.testing.assert_close(den(x_t, t), mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(den.log_prob_t(x_t, t), log_pt, rtol=0, atol=1e-8)


# ---------------------------------------------------------------- (c) mixture consistency


@pytest.mark.parametrize("kind", ["full", "diagonal", "low_rank"])
def test_mixture_with_one_component_is_the_gaussian(kind):
    schedule, D = VPLinear(), 6
    mean = torch.randn(D, generator=gen(7), dtype=F64)
    if kind == "full":
        cov = random_spd(D, 8)
        gmm = GaussianMixtureDenoiser.full(schedule, mean[None], cov[None])
        ref = GaussianDenoiser.full(schedule, mean, cov)
    elif kind == "diagonal":
        var = torch.rand(D, generator=gen(8), dtype=F64) + 0.1
        gmm = GaussianMixtureDenoiser.diagonal(schedule, mean[None], var[None])
        ref = GaussianDenoiser.diagonal(schedule, mean, var)
    else:
        U = torch.randn(D, 2, generator=gen(8), dtype=F64)
        gmm = GaussianMixtureDenoiser.low_rank(schedule, mean[None], U[None], floor=0.2)
        ref = GaussianDenoiser.low_rank(schedule, mean, U, floor=0.2)
    x_t = torch.randn(len(TIMES), D, generator=gen(9), dtype=F64)
    torch.testing.assert_close(gmm(x_t, TIMES), ref(x_t, TIMES), rtol=1e-10, atol=1e-10)


def low_rank_mixture(schedule, dtype=F64, floor=0.2, K=3, D=6, P=2):
    means = torch.randn(K, D, generator=gen(10), dtype=dtype)
    factors = torch.randn(K, D, P, generator=gen(11), dtype=dtype)
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=dtype)[:K]
    return GaussianMixtureDenoiser.low_rank(schedule, means, factors, floor=floor, weights=weights)


def test_mixture_low_rank_equals_full_with_the_same_covariances():
    schedule = VE(sigma_max=3.0)
    low = low_rank_mixture(schedule)
    full = GaussianMixtureDenoiser.full(schedule, low.means, low.covs, weights=low.weights)
    x_t = torch.randn(len(TIMES), 6, generator=gen(12), dtype=F64) * 2
    torch.testing.assert_close(low(x_t, TIMES), full(x_t, TIMES), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(low.log_prob_t(x_t, TIMES), full.log_prob_t(x_t, TIMES), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("floor", [0.2, 0.0])
def test_mixture_score_is_the_gradient_of_log_p_t(floor):
    schedule = VPLinear()
    den = low_rank_mixture(schedule, floor=floor)
    t = torch.tensor([0.05, 0.2, 0.5, 0.9], dtype=F64)
    x_t = noisy(schedule, den.sample(4, gen(13)).to(F64), t)
    x = x_t.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(den.log_prob_t(x, t).sum(), x)
    torch.testing.assert_close(den.score(x_t, t), grad, rtol=1e-8, atol=1e-8)


def test_low_rank_subspaces_match_the_chapter_closed_form():
    """VE with sigma_t = t: ``E[x | x_t] = sum_k gamma_k U_k U_k^T x_t / (1 + t^2)`` with
    ``gamma_k ∝ w_k exp(|U_k^T x_t|^2 / (2 t^2 (1 + t^2)))`` (equal dimensions P)."""
    schedule, K, D, P = VE(sigma_max=1.0), 3, 10, 2
    bases = torch.linalg.qr(torch.randn(K, D, P, generator=gen(14), dtype=F64))[0]
    w = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    den = GaussianMixtureDenoiser.low_rank_subspaces(schedule, bases, weights=w)
    t = torch.tensor([0.125, 0.375, 0.75, 1.0], dtype=F64)  # exact in float32, see test_noise
    x_t = noisy(schedule, den.sample(4, gen(15)), t)
    proj = torch.einsum("bd,kdp->bkp", x_t, bases)  # (B, K, P)
    logits = w.log() + (proj**2).sum(-1) / (2 * t[:, None] ** 2 * (1 + t[:, None] ** 2))
    means = torch.einsum("bkp,kdp->bkd", proj, bases) / (1 + t[:, None, None] ** 2)
    expected = torch.einsum("bk,bkd->bd", torch.softmax(logits, -1), means)
    torch.testing.assert_close(den(x_t, t), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_low_rank_subspaces_stay_stable_in_high_dimension(dtype):
    """D = 800, zero floor: finite everywhere; at t -> 0 a point on a subspace is returned unchanged."""
    schedule, K, D, P = VPLinear(), 4, 800, 8
    bases = torch.linalg.qr(torch.randn(K, D, P, generator=gen(16), dtype=F64))[0]
    den = GaussianMixtureDenoiser.low_rank_subspaces(schedule, bases).to(dtype)
    x0 = den.sample(16, gen(17))
    assert x0.dtype == dtype and x0.shape == (16, D)
    for t in [0.0, 1e-6, 1e-3, 0.5, 1.0]:
        x_t = noisy(schedule, x0, torch.full((16,), t, dtype=F64))
        out = den(x_t, t)
        assert torch.isfinite(out).all() and torch.isfinite(den.log_prob_t(x_t, t)).all()
    torch.testing.assert_close(den(x0, 0.0), x0, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)
    ref = GaussianMixtureDenoiser.low_rank_subspaces(schedule, bases)
    x_t = noisy(schedule, x0.to(F64), torch.full((16,), 0.3, dtype=F64))
    torch.testing.assert_close(den(x_t.to(dtype), 0.3).to(F64), ref(x_t, 0.3), rtol=0, atol=1e-4)


def test_mixture_sample_has_the_prior_moments():
    den = low_rank_mixture(VPLinear(), D=3)
    x = den.sample(40000, gen(18))
    w, mu = den.weights, den.means
    mean = w @ mu
    second = torch.einsum("k,kij->ij", w, den.covs + mu[:, :, None] * mu[:, None, :])
    torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=0.05)
    torch.testing.assert_close(torch.cov(x.T), second - torch.outer(mean, mean), rtol=0, atol=0.1)
    assert torch.equal(den.sample(5, gen(3)), den.sample(5, gen(3)))


def test_mixture_rejects_inconsistent_components():
    with pytest.raises(PosteriaError, match="weights"):
        GaussianMixtureDenoiser.diagonal(
            VPLinear(), torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([1, -1])
        )
    with pytest.raises(PosteriaError, match="eigvals"):
        GaussianMixtureDenoiser(VPLinear(), torch.zeros(2, 3), torch.ones(2, 2))


# ---------------------------------------------------------------- (d) empirical denoiser


def training_points(n: int = 20, d: int = 2, seed: int = 19) -> torch.Tensor:
    return torch.rand(n, d, generator=gen(seed)) * 4 - 2


def test_empirical_at_small_t_returns_the_nearest_training_point():
    schedule, data = VPLinear(), training_points()
    den = EmpiricalDenoiser(schedule, data)
    target = data[[3, 7, 11]]
    x = target + 0.01 * torch.randn(3, 2, generator=gen(20))
    for t in [0.0, 1e-4]:
        alpha = float(schedule(t)[0])
        torch.testing.assert_close(den(alpha * x, t), target, rtol=0, atol=1e-6)


def test_empirical_at_large_t_returns_about_the_data_mean():
    schedule, data = VPLinear(), training_points()
    den = EmpiricalDenoiser(schedule, data)
    x_t = torch.randn(8, 2, generator=gen(21))
    err = (den(x_t, 1.0) - data.mean(0)).norm(dim=-1)
    assert float(err.max()) < 0.05 * float(data.std(0).norm())


def test_empirical_equals_mixture_of_point_masses_and_ignores_chunking():
    schedule, data = VPCosine(), training_points(n=13, d=3).to(F64)
    den = EmpiricalDenoiser(schedule, data, chunk_size=4)
    gmm = GaussianMixtureDenoiser.diagonal(schedule, data, torch.zeros_like(data))
    t = torch.tensor([0.02, 0.1, 0.3, 0.6, 0.95], dtype=F64)
    x_t = noisy(schedule, data[:5], t)
    torch.testing.assert_close(den(x_t, t), gmm(x_t, t), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(EmpiricalDenoiser(schedule, data, chunk_size=100)(x_t, t), den(x_t, t))


def test_empirical_takes_its_event_shape_from_the_data():
    den = EmpiricalDenoiser(VPLinear(), torch.randn(5, 1, 8, 8, generator=gen(22)))
    assert den.event_shape == (1, 8, 8)
    assert den(torch.randn(2, 1, 8, 8), 0.5).shape == (2, 1, 8, 8)
    with pytest.raises(PosteriaError):
        EmpiricalDenoiser(VPLinear(), torch.zeros(0, 3))


# ---------------------------------------------------------------- (e) memorisation


@pytest.mark.parametrize("spacing", ["quadratic", "karras"])
def test_ddim_with_the_empirical_denoiser_lands_on_training_points(spacing):
    """Deterministic DDIM with the memorising optimum reproduces training points. (With the uniform
    grid, 50 steps and t_min = 1e-3, about 2% of samples are still split between two points 0.17 apart:
    the last steps are too coarse for a basin that sharp; grids that are fine near t = 0 commit.)"""
    from posteria.samplers import get_sampler

    data = training_points()
    den = EmpiricalDenoiser(VPLinear(), data)
    x = get_sampler("ddim", den, steps=50, spacing=spacing)((64, 2), generator=gen(23))
    nearest = torch.cdist(x, data).min(dim=1).values
    assert float(nearest.max()) < 1e-4
    assert len(torch.cdist(x, data).argmin(dim=1).unique()) > 5  # not collapsed onto one point


# ---------------------------------------------------------------- (f) parameterisations


class OracleBackbone(nn.Module):
    """Returns the exact eps / x0 / v / EDM-F target of a Gaussian denoiser at a known time ``t``."""

    def __init__(self, oracle: GaussianDenoiser, target: str, t: torch.Tensor, sigma_data: float) -> None:
        super().__init__()
        self.oracle, self.target, self.t, self.sd = oracle, target, t, sigma_data

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.oracle.coefficients(self.t, x_in)
        torch.testing.assert_close(c_noise, torch.log(sigma / alpha).reshape(-1) / 4)
        x_t = x_in * torch.sqrt(alpha**2 * self.sd**2 + sigma**2)  # undo c_in
        x0 = self.oracle(x_t, self.t)
        if self.target == "eps":
            return tweedie.eps_from_x0(x_t, x0, alpha, sigma)
        if self.target == "v":
            return tweedie.v_from_x0(x_t, x0, alpha, sigma)
        if self.target == "edm":
            r = sigma / alpha
            c_skip, c_out = self.sd**2 / (r**2 + self.sd**2), r * self.sd / torch.sqrt(r**2 + self.sd**2)
            return (x0 - c_skip * x_t / alpha) / c_out
        return x0


@pytest.mark.parametrize(
    ("wrapper", "target"),
    [(EpsilonDenoiser, "eps"), (X0Denoiser, "x0"), (VDenoiser, "v"), (EDMDenoiser, "edm")],
)
@pytest.mark.parametrize("schedule", [VPLinear(), VE(sigma_max=5.0), EDM()], ids=repr)
def test_parameterisation_with_an_oracle_backbone_reproduces_the_oracle(wrapper, target, schedule):
    D, sd = 4, 0.7
    oracle = GaussianDenoiser.full(schedule, torch.randn(D, generator=gen(24), dtype=F64), random_spd(D, 25))
    t = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=F64)
    x_t = torch.randn(4, D, generator=gen(26), dtype=F64) * 3
    den = wrapper(OracleBackbone(oracle, target, t, sd), schedule, event_shape=(D,), sigma_data=sd)
    torch.testing.assert_close(den(x_t, t), oracle(x_t, t), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- (g) bad input


@pytest.mark.parametrize(
    "make",
    [
        lambda: GaussianDenoiser.diagonal(VPLinear(), torch.zeros(3), torch.ones(3)),
        lambda: GaussianMixtureDenoiser.diagonal(VPLinear(), torch.zeros(2, 3), torch.ones(2, 3)),
        lambda: EmpiricalDenoiser(VPLinear(), torch.randn(4, 3)),
    ],
    ids=["gaussian", "mixture", "empirical"],
)
@pytest.mark.parametrize(
    ("x_t", "t", "match"),
    [
        (torch.zeros(2, 4), 0.5, r"x_t must have shape \(B, 3\)"),
        (torch.tensor([[0.0, float("nan"), 0.0]]), 0.5, "NaN"),
        (torch.zeros(2, 3), 1.5, r"t must lie in \[0, 1\]"),
        (torch.zeros(2, 3), torch.tensor([0.5, -0.1]), r"t must lie in \[0, 1\]"),
    ],
    ids=["shape", "nan", "t-above", "t-below"],
)
def test_bad_input_raises_one_line(make, x_t, t, match):
    with pytest.raises(PosteriaError, match=match) as info:
        make()(x_t, t)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), math.inf, -math.inf])
@pytest.mark.parametrize("where", [0, 5, -1])
def test_check_finite_finds_any_non_finite_entry_and_passes_finite_values_whose_sum_overflows(bad, where):
    huge = torch.full((2, 3), 3e38)  # finite, but the sum the fast path takes first is infinite
    assert check_finite("x", huge) is huge
    huge.view(-1)[where] = bad
    with pytest.raises(PosteriaError, match="x contains NaN or infinite values"):
        check_finite("x", huge)
