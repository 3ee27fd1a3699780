"""The exact-posterior laboratory: Gaussian and Gaussian-mixture priors against brute force.

Brute force is independent of the closed forms: in 2-D the posterior is tabulated on a 401 x 401 grid
(prior density from ``torch.distributions`` times the Gaussian likelihood, normalised by the Riemann
sum; for Gaussians whose narrowest standard deviation spans >= 8 cells that sum is exact to ~1e-12), and
in 8-D it is estimated by importance sampling from the prior (self-normalised, likelihood weights; the
standard errors use the effective sample size). Monte-Carlo checks use fixed seeds and ~4.5-sigma
bounds; the comments give the errors measured.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from posteria.denoisers.gaussian import GaussianDenoiser
from posteria.denoisers.mixture import GaussianMixtureDenoiser
from posteria.errors import PosteriaError
from posteria.lab import (
    GaussianMixturePosterior,
    GaussianMixturePrior,
    GaussianPosterior,
    GaussianPrior,
    LowRank,
)
from posteria.noise import VPLinear
from posteria.operators import MatrixOperator
from posteria.operators.noise_models import PoissonNoise
from posteria.operators.phase import PhaseRetrieval

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


# --- brute force --------------------------------------------------------------------------------------


def grid(lo: float, hi: float, n: int = 401) -> tuple[torch.Tensor, float]:
    """The points (n^2, 2) of a square grid on [lo, hi]^2 and the area of one cell."""
    axis = torch.linspace(lo, hi, n, dtype=F64)
    X, Y = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([X.reshape(-1), Y.reshape(-1)], 1), float(axis[1] - axis[0]) ** 2


def log_likelihood(points: torch.Tensor, A: torch.Tensor, y: torch.Tensor, sigma_y: float) -> torch.Tensor:
    """``log p(y_b | x)`` up to a constant for every measurement and point: (B, N)."""
    r = y[:, None, :] - (points @ A.T)[None]
    return -0.5 * (r**2).sum(-1) / sigma_y**2


def grid_moments(log_joint: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, 2) and covariance (B, 2, 2) of the grid posterior ``p_i ∝ exp(log_joint_i)``."""
    p = torch.softmax(log_joint, -1)
    mean = p @ points
    c = points[None] - mean[:, None]
    return mean, torch.einsum("bn,bnd,bne->bde", p, c, c)


def mixture_parts() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-D, K = 3 mixture with full covariances (smallest standard deviation 0.45)."""
    means = t64([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])
    covs = t64([[[1.0, 0.5], [0.5, 0.6]], [[0.5, -0.2], [-0.2, 0.8]], [[0.7, 0.0], [0.0, 0.3]]])
    return means, covs, t64([0.5, 0.3, 0.2])


# --- the Gaussian prior --------------------------------------------------------------------------------


def test_gaussian_posterior_matches_grid() -> None:
    """Posterior mean and covariance of a 2-D prior, 1-row A, two measurements, against a 401^2 grid."""
    mean, cov = t64([0.3, -0.2]), t64([[1.0, 0.6], [0.6, 0.8]])
    A, ys, s = t64([[1.0, 0.5]]), t64([[0.7], [-1.5]]), 0.4
    post = GaussianPrior(mean, cov).posterior(MatrixOperator(A, sigma_y=s), ys)
    points, _ = grid(-7.0, 7.0)
    log_joint = MultivariateNormal(mean, cov).log_prob(points)[None] + log_likelihood(points, A, ys, s)
    g_mean, g_cov = grid_moments(log_joint, points)
    assert isinstance(post, GaussianPosterior) and post.covariance().shape == (2, 2, 2)
    torch.testing.assert_close(post.mean, g_mean, rtol=0, atol=1e-9)  # measured: 1e-14 (and cov)
    torch.testing.assert_close(post.covariance(), g_cov, rtol=0, atol=1e-9)


def test_gaussian_posterior_samples_and_log_prob() -> None:
    """``sample`` moments match ``mean``/``cov``; ``log_prob`` is MultivariateNormal's."""
    g = gen(0)
    Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))
    prior = GaussianPrior(
        torch.randn(5, generator=g, dtype=F64), Q @ torch.diag(t64([0.1, 0.3, 1, 2, 3])) @ Q.T
    )
    op = MatrixOperator(torch.randn(3, 5, generator=g, dtype=F64), sigma_y=0.2)
    post = prior.posterior(op, op.measure(prior.sample(2, g), g))
    n = 40000
    x = post.sample(n, gen(1))
    assert x.shape == (2, n, 5) and x.dtype == F64
    sd = post.cov.diagonal().sqrt()
    assert float(((x.mean(1) - post.mean) / sd).abs().max()) < 4.5 / math.sqrt(n)
    C = post.cov
    cov_err = torch.stack([torch.cov(x[b].T) for b in range(2)]) - C
    cov_sd = ((C.diagonal()[:, None] * C.diagonal()[None] + C**2) / n).sqrt()
    assert float((cov_err / cov_sd).abs().max()) < 4.5
    reference = MultivariateNormal(post.mean[:, None], post.cov).log_prob(x[:, :50])
    torch.testing.assert_close(post.log_prob(x[:, :50]), reference, rtol=1e-10, atol=1e-10)


# --- the Gaussian mixture prior ------------------------------------------------------------------------


def test_mixture_posterior_matches_grid() -> None:
    """2-D, K = 3, full covariances, 1-row A: mean, covariance, weights, log_prob and marginal CDF."""
    means, covs, w = mixture_parts()
    A, ys, s = t64([[1.0, -0.7]]), t64([[0.4], [-1.8]]), 0.5
    post = GaussianMixturePrior(means, covs, w).posterior(MatrixOperator(A, sigma_y=s), ys)
    points, cell = grid(-9.0, 9.0)
    comp = torch.stack([MultivariateNormal(means[k], covs[k]).log_prob(points) for k in range(3)])  # (K, N)
    log_joint_k = w.log()[None, :, None] + comp[None] + log_likelihood(points, A, ys, s)[:, None]  # (B, K, N)
    log_joint = torch.logsumexp(log_joint_k, 1)
    g_mean, g_cov = grid_moments(log_joint, points)
    torch.testing.assert_close(post.mean, g_mean, rtol=0, atol=1e-9)  # measured: 5e-14 (cov 7e-14)
    torch.testing.assert_close(post.cov, g_cov, rtol=0, atol=1e-9)
    g_weights = torch.softmax(torch.logsumexp(log_joint_k, -1), -1)  # each component's share of the mass
    torch.testing.assert_close(post.weights, g_weights, rtol=0, atol=1e-9)
    # log_prob: normalised on the grid, and pointwise the grid's normalised log density where it matters
    lp = post.log_prob(points.expand(2, -1, -1))
    torch.testing.assert_close((lp.exp() * cell).sum(-1), torch.ones(2, dtype=F64), rtol=0, atol=1e-9)
    g_lp = log_joint - torch.logsumexp(log_joint, -1, keepdim=True) - math.log(cell)
    keep = g_lp > g_lp.amax(-1, keepdim=True) - 20
    torch.testing.assert_close(lp[keep], g_lp[keep], rtol=0, atol=1e-8)
    # marginal CDF of x_0 at the cell edges v_j = a_j + h / 2: the mass of the cells left of the edge
    axis = points[::401, 0]
    mass = torch.softmax(log_joint, -1).reshape(2, 401, 401).sum(-1).cumsum(-1)  # (B, 401) over x_0
    v = torch.stack([axis + (axis[1] - axis[0]) / 2, torch.zeros(401, dtype=F64)], -1).expand(2, -1, -1)
    torch.testing.assert_close(post.marginal_cdf(v)[..., 0], mass, rtol=0, atol=5e-4)  # measured: 6e-5


def random_mixture(D: int, K: int, g: torch.Generator, spread: float = 2.0) -> GaussianMixturePrior:
    """K components in R^D: random full covariances (eigenvalues 0.2 to 1.2), means ``spread`` N(0, I)."""
    Q, _ = torch.linalg.qr(torch.randn(K, D, D, generator=g, dtype=F64))
    lam = 0.2 + torch.rand(K, D, generator=g, dtype=F64)
    covs = Q @ torch.diag_embed(lam) @ Q.mT
    return GaussianMixturePrior(
        spread * torch.randn(K, D, generator=g, dtype=F64), covs, t64([0.5, 0.3, 0.2])
    )


def test_mixture_posterior_matches_importance_sampling() -> None:
    """D = 8, m = 2: posterior mean and weights against self-normalised importance sampling from the prior.

    Labelled prior draws are made here, not by the prior's ``sample``; the seed gives well-mixed posterior
    weights (0.50 / 0.40 / 0.11 and 0.22 / 0.43 / 0.35). Measured: ESS 2.7e3 and 1.3e4 of 2e5; errors
    1.5 (mean) and 1.8 (weights) standard errors.
    """
    g = gen(4)
    prior = random_mixture(8, 3, g, spread=1.0)
    op = MatrixOperator(torch.randn(2, 8, generator=g, dtype=F64), sigma_y=0.5)
    ys = op.measure(prior.sample(2, g), g)
    post = prior.posterior(op, ys)
    n = 200_000
    labels = torch.multinomial(prior.weights, n, replacement=True, generator=g)
    L = torch.linalg.cholesky(prior.covs)
    z = torch.randn(n, 8, 1, generator=g, dtype=F64)
    x = prior.means[labels] + (L[labels] @ z)[..., 0]
    lw = log_likelihood(x, op.matrix, ys, 0.5)  # (B, n)
    p = torch.softmax(lw, -1)
    ess = 1 / (p**2).sum(-1)
    is_mean = p @ x
    se = (post.covariance().diagonal(dim1=-2, dim2=-1) / ess[:, None]).sqrt()
    assert float(((is_mean - post.mean) / se).abs().max()) < 4.5
    is_weights = torch.stack([p[:, labels == k].sum(-1) for k in range(3)], -1)
    w = post.weights
    se_w = (w * (1 - w) / ess[:, None]).sqrt().clamp_min(1e-4)
    assert float(((is_weights - w) / se_w).abs().max()) < 4.5


def test_marginal_cdf_is_the_law_of_the_samples() -> None:
    """Probability integral transform: ``marginal_cdf(x)`` of exact draws is U(0, 1) per coordinate."""
    g = gen(4)
    prior = random_mixture(4, 3, g)
    op = MatrixOperator(torch.randn(2, 4, generator=g, dtype=F64), sigma_y=0.3)
    ys = op.measure(prior.sample(2, g), g)
    n = 20000
    u = torch.linspace(0, 1, n + 1, dtype=F64)[1:, None]
    for post in (prior.posterior(op, ys), GaussianPrior(prior.mean, prior.cov).posterior(op, ys)):
        pit = post.marginal_cdf(post.sample(n, gen(5))).sort(1).values  # (B, n, D)
        ks = torch.maximum((u - pit).abs(), (u - 1 / n - pit).abs()).amax(1)
        assert float(ks.max()) < 1.95 / math.sqrt(n)  # KS, p ~ 0.001 per coordinate; measured ~0.6 of it


def test_priors_sample_their_moments() -> None:
    """The priors' ``sample`` matches their ``mean`` and ``cov``; the mixture's are the total moments."""
    g = gen(6)
    mix = random_mixture(3, 3, g)
    m = (mix.weights[:, None] * mix.means).sum(0)
    c = sum(
        w * (S + torch.outer(mu - m, mu - m))
        for w, mu, S in zip(mix.weights, mix.means, mix.covs, strict=True)
    )
    torch.testing.assert_close(mix.mean, m)
    torch.testing.assert_close(mix.cov, c)
    n = 100_000
    for prior in (mix, GaussianPrior(m, LowRank(torch.randn(3, 2, generator=g, dtype=F64), 0.1))):
        x = prior.sample(n, gen(7))
        assert x.shape == (n, 3) and x.dtype == F64
        sd = prior.cov.diagonal().sqrt()
        assert float(((x.mean(0) - prior.mean) / sd).abs().max()) < 4.5 / math.sqrt(n)
        # entries of the sample covariance: the fourth moments of a mixture are wider, so a loose 2 %
        assert float((torch.cov(x.T) - prior.cov).abs().max() / prior.cov.abs().max()) < 0.02


# --- denoisers ------------------------------------------------------------------------------------------


def test_denoisers_are_the_existing_ones() -> None:
    """``prior.denoiser`` gives the outputs of GaussianDenoiser / GaussianMixtureDenoiser built directly."""
    g, schedule = gen(8), VPLinear()
    mix = random_mixture(4, 3, g)
    x_t = torch.randn(6, 4, generator=g, dtype=F64)
    t = torch.linspace(0.05, 0.95, 6, dtype=F64)
    direct = GaussianMixtureDenoiser.full(schedule, mix.means, mix.covs, weights=mix.weights)
    torch.testing.assert_close(mix.denoiser(schedule)(x_t, t), direct(x_t, t), rtol=0, atol=0)
    gauss = GaussianPrior(mix.means[0], mix.covs[0])
    direct = GaussianDenoiser.full(schedule, mix.means[0], mix.covs[0])
    torch.testing.assert_close(gauss.denoiser(schedule)(x_t, t), direct(x_t, t), rtol=0, atol=0)
    U = torch.randn(3, 4, 2, generator=g, dtype=F64)
    low = GaussianMixturePrior(mix.means, LowRank(U, 0.05), mix.weights)
    direct = GaussianMixtureDenoiser.low_rank(schedule, mix.means, U, floor=0.05, weights=mix.weights)
    torch.testing.assert_close(low.denoiser(schedule)(x_t, t), direct(x_t, t), rtol=0, atol=0)


def test_mixture_denoiser_tends_to_identity() -> None:
    """At ``t -> 0`` the exact denoiser of a full-rank mixture returns its input (sanity)."""
    g = gen(9)
    mix = random_mixture(4, 3, g)
    x = mix.sample(64, g)
    errors = [float((mix.denoiser(VPLinear())(x, t) - x).abs().max()) for t in (1e-2, 1e-4, 1e-6)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-5  # measured: 8e-3, 4e-5, 4e-7


# --- covariance forms ----------------------------------------------------------------------------------


def _same_prior(priors: list, op: MatrixOperator, y: torch.Tensor) -> None:
    """Same dense covariance, posterior moments, log density and denoiser output for every prior."""
    x_t = torch.randn(3, op.signal_dim, generator=gen(10), dtype=F64)
    ref = priors[0]
    ref_post, ref_den = ref.posterior(op, y), ref.denoiser(VPLinear())(x_t, 0.3)
    for prior in priors[1:]:
        post = prior.posterior(op, y)
        torch.testing.assert_close(prior.cov, ref.cov, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(post.mean, ref_post.mean, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(post.covariance(), ref_post.covariance(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(prior.log_prob(x_t), ref.log_prob(x_t), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(prior.denoiser(VPLinear())(x_t, 0.3), ref_den, rtol=1e-10, atol=1e-10)


def test_covariance_forms_describe_the_same_prior() -> None:
    """Full / diagonal / scalar / low rank, for a Gaussian and for a K = 2 mixture."""
    g, D = gen(11), 4
    op = MatrixOperator(torch.randn(2, D, generator=g, dtype=F64), sigma_y=0.3)
    y = torch.randn(2, 2, generator=g, dtype=F64)
    mu, I = torch.randn(D, generator=g, dtype=F64), torch.eye(D, dtype=F64)
    scalar = [
        0.7,
        t64(0.7),
        0.7 * torch.ones(D, dtype=F64),
        0.7 * I,
        LowRank(0.7**0.5 * I),
        LowRank(I[:, :1] * 0, 0.7),
    ]
    _same_prior([GaussianPrior(mu, c) for c in scalar], op, y)
    v = t64([0.2, 0.5, 1.0, 2.0])
    _same_prior([GaussianPrior(mu, c) for c in (v, torch.diag(v), LowRank(torch.diag(v.sqrt())))], op, y)
    U = torch.randn(D, 2, generator=g, dtype=F64)
    _same_prior([GaussianPrior(mu, c) for c in (LowRank(U, 0.1), U @ U.T + 0.1 * I)], op, y)
    means, s = torch.randn(2, D, generator=g, dtype=F64), t64([0.4, 1.5])
    forms = [s, s[:, None].expand(2, D), s[:, None, None] * I, LowRank(s.sqrt()[:, None, None] * I)]
    forms += [LowRank(torch.zeros(2, D, 1, dtype=F64), s)]
    _same_prior([GaussianMixturePrior(means, c) for c in forms], op, y)
    Us = torch.randn(2, D, 2, generator=g, dtype=F64)
    _same_prior(
        [GaussianMixturePrior(means, c) for c in (LowRank(Us, s), Us @ Us.mT + s[:, None, None] * I)], op, y
    )


# --- the union of subspaces ----------------------------------------------------------------------------


def _subspace_distance(x: torch.Tensor, bases: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance of each x (n, D) to its nearest subspace, and that subspace's index."""
    resid = x[:, None] - torch.einsum("kdp,kep,ne->nkd", bases, bases, x)
    d = resid.norm(dim=-1)
    return d.min(-1).values, d.argmin(-1)


def test_subspace_mixture_samples_lie_on_the_union() -> None:
    """floor 0: exactly on the union; floor f: the mean squared distance is f (D - P)."""
    D, K, P = 20, 4, 3
    exact = GaussianMixturePrior.subspaces(D, K, P, gen(12), scale=2.0)
    bases = exact.factors / 2.0
    torch.testing.assert_close(bases.mT @ bases, torch.eye(P, dtype=F64).expand(K, P, P))
    x = exact.sample(2000, gen(13))
    assert float(_subspace_distance(x, bases)[0].max()) < 1e-12
    assert float(x.norm(dim=-1).pow(2).mean()) == pytest.approx(4.0 * P, rel=0.05)
    fuzzy = GaussianMixturePrior.subspaces(D, K, P, gen(12), floor=1e-6)
    dist = _subspace_distance(fuzzy.sample(2000, gen(13)), bases)[0]
    assert float(dist.pow(2).mean()) == pytest.approx(1e-6 * (D - P), rel=0.05)


def test_subspace_posterior_finds_the_component() -> None:
    """m = 8 > P = 3 measurements with small noise: the posterior picks the right subspace."""
    D, K, P = 20, 4, 3
    prior = GaussianMixturePrior.subspaces(D, K, P, gen(14))
    x = prior.sample(5, gen(15))
    truth = _subspace_distance(x, prior.factors)[1]
    op = MatrixOperator(torch.randn(8, D, generator=gen(16), dtype=F64) / math.sqrt(8), sigma_y=1e-3)
    post = prior.posterior(op, op.measure(x, gen(17)))
    assert isinstance(post, GaussianMixturePosterior)
    assert torch.equal(post.weights.argmax(-1), truth)
    assert float(post.weights.max(-1).values.min()) > 1 - 1e-9
    assert float((post.mean - x).norm(dim=-1).max()) < 0.05  # measured: ~3e-3
    # sigma_y = 0 with a floor: exact conditioning, samples satisfy A x = y
    noiseless = MatrixOperator(op.matrix, sigma_y=0.0)
    fuzzy = GaussianMixturePrior.subspaces(D, K, P, gen(14), floor=1e-4)
    post = fuzzy.posterior(noiseless, noiseless(x))
    assert torch.equal(post.weights.argmax(-1), truth)
    draws = post.sample(10, gen(18))
    # psd_factor takes square roots of ~1e-16 round-off eigenvalues: A x = y to ~1e-9 (measured 7e-10)
    torch.testing.assert_close(
        draws @ op.matrix.T, noiseless(x)[:, None].expand(-1, 10, -1), rtol=0, atol=1e-7
    )
    with pytest.raises(PosteriaError, match="sigma_y = 0.*singular"):  # no floor: the weights are undefined
        prior.posterior(noiseless, noiseless(x))


def test_gaussian_prior_noiseless_posterior() -> None:
    """sigma_y = 0 with a singular A Sigma A^T (pseudo-inverse path): finite, consistent samples."""
    prior = GaussianPrior(torch.zeros(3, dtype=F64), LowRank(t64([[1.0], [0.0], [0.0]])))
    op = MatrixOperator(t64([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), sigma_y=0.0)
    post = prior.posterior(op, t64([[0.5, 0.0]]))
    torch.testing.assert_close(post.mean, t64([[0.5, 0.0, 0.0]]))
    assert float(post.cov.abs().max()) < 1e-12
    torch.testing.assert_close(post.marginal_cdf(t64([[[0.4, 0.0, 0.1]]])), t64([[[0.0, 1.0, 1.0]]]))


# --- bad input -----------------------------------------------------------------------------------------

MEANS, COVS, W = mixture_parts()
A2 = MatrixOperator(t64([[1.0, 0.0]]), sigma_y=0.1)
BAD = {
    "covs shape": (lambda: GaussianMixturePrior(MEANS, COVS[:2]), r"covs must be \(K, D, D\) = \(3, 2, 2\)"),
    "weights shape": (lambda: GaussianMixturePrior(MEANS, COVS, W[:2]), "weights must be 3 positive numbers"),
    "negative weight": (lambda: GaussianMixturePrior(MEANS, COVS, t64([0.5, -0.1, 0.6])), "weights must be"),
    "non-PSD mixture": (
        lambda: GaussianMixturePrior(MEANS, COVS * t64([1, -1, 1])[:, None, None]),
        r"covs\[1\]",
    ),
    "non-PSD": (
        lambda: GaussianPrior(MEANS[0], t64([[1.0, 2.0], [2.0, 1.0]])),
        "cov must be positive semi-def",
    ),
    "asymmetric": (lambda: GaussianPrior(MEANS[0], t64([[1.0, 0.5], [0.0, 1.0]])), "cov must be symmetric"),
    "negative variance": (lambda: GaussianPrior(MEANS[0], t64([1.0, -1.0])), "cov must be variances >= 0"),
    "mean vs cov": (lambda: GaussianPrior(t64([0.0, 0.0, 0.0]), COVS[0]), r"cov must be \(D, D\) = \(3, 3\)"),
    "factor shape": (
        lambda: GaussianPrior(MEANS[0], LowRank(torch.ones(3, 1))),
        r"cov.factor must have shape",
    ),
    "negative floor": (lambda: GaussianPrior(MEANS[0], LowRank(torch.ones(2, 1), -1.0)), "cov.floor must be"),
    "nan mean": (lambda: GaussianPrior(t64([0.0, math.nan]), 1.0), "mean contains NaN"),
    "event shape": (lambda: GaussianPrior(MEANS[0], 1.0, event_shape=(3,)), "event_shape"),
    "nonlinear": (
        lambda: GaussianPrior(torch.zeros(1, 4, 4), 1.0).posterior(
            PhaseRetrieval((1, 4, 4)), torch.zeros(1, 1)
        ),
        "operator must be a linear operator",
    ),
    "poisson": (
        lambda: GaussianPrior(MEANS[0], 1.0).posterior(
            MatrixOperator(t64([[1.0, 0.0]]), noise=PoissonNoise(10.0)), t64([[1.0]])
        ),
        "operator must have Gaussian noise",
    ),
    "operator shape": (
        lambda: GaussianPrior(MEANS[0], 1.0).posterior(
            MatrixOperator(torch.ones(1, 3), sigma_y=0.1), t64([[1.0]])
        ),
        "operator acts on signals of shape",
    ),
    "y shape": (
        lambda: GaussianMixturePrior(MEANS, COVS).posterior(A2, t64([1.0])),
        r"y must have shape \(B, 1\)",
    ),
    "singular log_prob": (
        lambda: GaussianPrior(MEANS[0], 0.0).posterior(A2, t64([[0.0]])).log_prob(torch.zeros(1, 1, 2)),
        "posterior covariance is singular",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_one_line(case: str) -> None:
    build, match = BAD[case]
    with pytest.raises(PosteriaError, match=match) as err:
        build()
    assert "\n" not in str(err.value)
