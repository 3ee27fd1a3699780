"""Distances to an exact posterior against closed forms: Gaussian W2, sliced W2, moment errors, coverage."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from scipy.linalg import sqrtm

import posteria.lab.distances as distances
from posteria.errors import PosteriaError
from posteria.lab.distances import (
    cov_error,
    coverage,
    gaussian_w2,
    mean_error,
    monte_carlo_floor,
    sliced_wasserstein,
    summary,
)
from posteria.lab.gaussian import GaussianPosterior, psd_factor

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def exact_moments(mean: torch.Tensor, cov: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Samples (B, n, D) whose sample mean is exactly ``mean`` (B, D) and whose unbiased sample covariance
    is exactly ``cov`` (B, D, D): white noise whitened by its own moments, then coloured."""
    B, D = mean.shape
    z = torch.randn(B, n, D, generator=torch.Generator().manual_seed(seed), dtype=F64)
    z = z - z.mean(1, keepdim=True)
    L = torch.linalg.cholesky(z.mT @ z / (n - 1))
    white = torch.linalg.solve_triangular(L, z.mT, upper=False).mT  # unit sample covariance
    return mean[:, None] + white @ torch.stack([psd_factor(c) for c in cov]).mT


def random_spd(B: int, D: int, seed: int) -> torch.Tensor:
    A = torch.randn(B, D, D, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return A @ A.mT / D + 0.1 * torch.eye(D, dtype=F64)


def closed_form_w2(m1, S1, m2, S2) -> float:
    """W2 by an independent route: scipy's general square root, tr (S1 S2)^1/2 = tr (S2^1/2 S1 S2^1/2)^1/2."""
    cross = np.trace(sqrtm(S1.numpy() @ S2.numpy()).real)
    return math.sqrt(float((m1 - m2).square().sum() + S1.trace() + S2.trace()) - 2 * cross)


# --- Gaussian W2 ---------------------------------------------------------------------------------


def test_gaussian_w2_matches_the_closed_form_for_general_covariances():
    B, D = 3, 5
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(B, D, generator=g, dtype=F64), torch.randn(B, D, generator=g, dtype=F64)
    S1, S2 = random_spd(B, D, 2), random_spd(B, D, 3)
    x = exact_moments(m1, S1, n=50)
    got = gaussian_w2(x, m2, S2)
    expected = [closed_form_w2(m1[i], S1[i], m2[i], S2[i]) for i in range(B)]
    assert got.shape == (B,) and got.dtype == F64
    assert got.tolist() == pytest.approx(expected, rel=1e-8)
    # one covariance shared by the batch, given as (D, D)
    shared = gaussian_w2(x, m2, S2[0])
    assert shared.tolist() == pytest.approx(
        [closed_form_w2(m1[i], S1[i], m2[i], S2[0]) for i in range(B)], rel=1e-8
    )


def test_gaussian_w2_of_commuting_covariances_and_in_one_dimension():
    a, b = torch.tensor([0.5, 2.0, 3.0], dtype=F64), torch.tensor([1.5, 0.2, 3.0], dtype=F64)
    m1, m2 = torch.tensor([[0.0, 1.0, -1.0]], dtype=F64), torch.tensor([[0.5, 1.0, 1.0]], dtype=F64)
    x = exact_moments(m1, torch.diag(a)[None], n=20)
    expected = math.sqrt(float((m1 - m2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()))
    assert float(gaussian_w2(x, m2, torch.diag(b))) == pytest.approx(expected, rel=1e-10)
    # 1-D: W2^2 = (m1 - m2)^2 + (s1 - s2)^2
    x1 = exact_moments(torch.tensor([[2.0]], dtype=F64), torch.tensor([[[9.0]]], dtype=F64), n=10)
    w = float(gaussian_w2(x1, torch.tensor([[-1.0]], dtype=F64), torch.tensor([[4.0]], dtype=F64)))
    assert w**2 == pytest.approx(3.0**2 + (3.0 - 2.0) ** 2, rel=1e-10)


def test_gaussian_w2_is_zero_for_identical_and_symmetric():
    B, D = 2, 4
    m1, m2 = torch.zeros(B, D, dtype=F64), torch.ones(B, D, dtype=F64)
    S1, S2 = random_spd(B, D, 4), random_spd(B, D, 5)
    x, y = exact_moments(m1, S1, n=40, seed=1), exact_moments(m2, S2, n=30, seed=2)
    assert gaussian_w2(x, m1, S1).abs().max() < 1e-6
    assert gaussian_w2(x, m2, S2).tolist() == pytest.approx(gaussian_w2(y, m1, S1).tolist(), rel=1e-8)
    assert bool((gaussian_w2(x, m2, S2) > 1.0).all())


def test_gaussian_w2_handles_singular_covariances():
    # rank-deficient covariances that commute, in a rotated basis: W2^2 = |dm|^2 + sum (sqrt a - sqrt b)^2
    R = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(6), dtype=F64))[0]
    a, b = torch.tensor([2.0, 0.0, 1.0], dtype=F64), torch.tensor([0.0, 3.0, 0.0], dtype=F64)
    Sa, Sb = R @ torch.diag(a) @ R.T, R @ torch.diag(b) @ R.T
    m1, m2 = torch.zeros(1, 3, dtype=F64), torch.tensor([[0.3, 0.0, -0.4]], dtype=F64)
    x = exact_moments(m1, Sa[None], n=30)  # samples in a plane
    assert int(torch.linalg.matrix_rank(distances._moments(x)[1][0])) == 2
    expected = math.sqrt(0.25 + float((a.sqrt() - b.sqrt()).square().sum()))
    assert float(gaussian_w2(x, m2, Sb)) == pytest.approx(expected, rel=1e-6)
    assert float(gaussian_w2(x, m1, Sa)) < 1e-6


# --- sliced Wasserstein ---------------------------------------------------------------------------


def test_sliced_wasserstein_is_zero_for_identical_sets_and_the_shift_for_a_translation():
    B, n, D = 2, 200, 4
    x = torch.randn(B, n, D, generator=torch.Generator().manual_seed(8), dtype=F64)
    assert sliced_wasserstein(x, x).tolist() == [0.0, 0.0]
    # a pure shift by v moves every 1-D projection by v.theta, so SW2^2 = mean_k (v.theta_k)^2 exactly
    # for POT's directions, and E (v.theta)^2 = |v|^2 / D for theta uniform on the sphere
    v = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=F64)
    got = sliced_wasserstein(x, x + v, projections=2000, seed=3)
    theta = torch.from_numpy(ot.sliced.get_random_projections(D, 2000, seed=3))  # (D, K)
    assert got.tolist() == pytest.approx([float((v @ theta).square().mean().sqrt())] * B, rel=1e-10)
    # relative std of the 2000-direction estimate of SW2 is about 1.5 % here
    assert got.tolist() == pytest.approx([float(v.norm()) / math.sqrt(D)] * B, rel=0.05)
    # fixed seed: reproducible; another seed: other directions
    assert sliced_wasserstein(x, x + v, 64, seed=1).equal(sliced_wasserstein(x, x + v, 64, seed=1))
    assert not sliced_wasserstein(x, x + v, 64, seed=1).equal(sliced_wasserstein(x, x + v, 64, seed=2))


def posterior(B: int = 3, D: int = 4) -> GaussianPosterior:
    g = torch.Generator().manual_seed(9)
    return GaussianPosterior(torch.randn(B, D, generator=g, dtype=F64), random_spd(1, D, 10)[0], (D,))


def test_exact_samples_score_at_the_floor_and_a_wrong_sampler_above_it():
    post, n = posterior(), 400
    floor = monte_carlo_floor(post.sample, n, post.mean, post.cov, repeats=3)
    assert set(floor) == {"sw", "w2", "mean_err", "cov_err"}
    # an exact sampler, independent of the floor's draws, against an independent exact reference
    g = torch.Generator().manual_seed(100)
    exact, reference = post.sample(n, g), post.sample(n, g)
    exact_sw = float(sliced_wasserstein(exact, reference).mean())
    assert 0.5 * floor["sw"] < exact_sw < 2 * floor["sw"]
    assert 0.5 * floor["w2"] < float(gaussian_w2(exact, post.mean, post.cov).mean()) < 2 * floor["w2"]
    # the floor of the whitened mean error: E err^2 = D / n
    assert floor["mean_err"] == pytest.approx(math.sqrt(4 / n), rel=0.3)
    # half a posterior standard deviation off in every coordinate, or the spread shrunk to a half
    std = post.cov.diagonal().sqrt()
    shifted, shrunk = exact + 0.5 * std, post.mean[:, None] + 0.5 * (exact - post.mean[:, None])
    for wrong in (shifted, shrunk):
        assert float(sliced_wasserstein(wrong, reference).mean()) > 3 * floor["sw"]
        assert float(gaussian_w2(wrong, post.mean, post.cov).mean()) > 3 * floor["w2"]


# --- moment errors --------------------------------------------------------------------------------


def test_mean_error_plain_whitened_and_singular():
    m = torch.zeros(2, 2, dtype=F64)
    x = exact_moments(
        torch.tensor([[2.0, 3.0], [0.0, -1.0]], dtype=F64), torch.eye(2, dtype=F64).expand(2, 2, 2), 10
    )
    assert mean_error(x, m).tolist() == pytest.approx([math.sqrt(13), 1.0], rel=1e-12)
    # whitened: sqrt(d^T cov^-1 d) = sqrt((2/2)^2 + (3/1)^2) for cov = diag(4, 1)
    cov = torch.diag(torch.tensor([4.0, 1.0], dtype=F64))
    assert mean_error(x, m, cov).tolist() == pytest.approx([math.sqrt(10), 1.0], rel=1e-12)
    # a general covariance, per measurement
    C = random_spd(2, 2, 11)
    d = x.mean(1)
    expected = [float(d[i] @ torch.linalg.solve(C[i], d[i])) ** 0.5 for i in range(2)]
    assert mean_error(x, m, C).tolist() == pytest.approx(expected, rel=1e-10)
    # a singular covariance ignores the null direction: only the (2/2)^2 and 0 remain
    singular = torch.diag(torch.tensor([4.0, 0.0], dtype=F64))
    assert mean_error(x, m, singular).tolist() == pytest.approx([1.0, 0.0], abs=1e-12)


def test_cov_error_is_the_relative_frobenius_error():
    S1, S2 = random_spd(2, 3, 12), random_spd(2, 3, 13)
    x = exact_moments(torch.zeros(2, 3, dtype=F64), S1, n=25)
    expected = [
        float(torch.linalg.matrix_norm(S1[i] - S2[i]) / torch.linalg.matrix_norm(S2[i])) for i in range(2)
    ]
    assert cov_error(x, S2).tolist() == pytest.approx(expected, rel=1e-10)
    assert cov_error(x, S1).abs().max() < 1e-12
    # twice the covariance: |2 S - S| / |S| = 1
    assert cov_error(x, S1 / 2).tolist() == pytest.approx([1.0, 1.0], rel=1e-10)


# --- coverage -------------------------------------------------------------------------------------


def standard_normal_cdf(v: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(v)


@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0])
def test_coverage_of_exact_collapsed_and_over_dispersed_samples(scale):
    # samples from N(0, scale^2) per coordinate against the exact N(0, 1): the interval at level q is
    # about [-scale z_q, scale z_q], z_q = Phi^-1((1 + q) / 2), of exact mass 2 Phi(scale z_q) - 1
    B, n, D = 3, 4000, 8
    x = scale * torch.randn(B, n, D, generator=torch.Generator().manual_seed(14), dtype=F64)
    got = coverage(x, standard_normal_cdf)
    assert list(got) == [0.5, 0.9, 0.95]
    for q, c in got.items():
        z = torch.special.ndtri(torch.tensor((1 + q) / 2, dtype=F64))
        expected = float(2 * torch.special.ndtr(scale * z) - 1)
        # the mass of an exact sampler's interval has std sqrt(q (1 - q) / n) (a Beta variable); the delta
        # method scales it by exact / sampler density at the ends: scale phi(scale z) / phi(z)
        density_ratio = float(scale * torch.exp((1 - scale**2) * z**2 / 2))
        tolerance = 4 * math.sqrt(q * (1 - q) / (n * D)) * max(1.0, density_ratio)
        assert c.shape == (B,)
        assert (c - expected).abs().max() < tolerance, (q, c, expected)
        if scale < 1:
            assert bool((c < q - 0.1).all())
        if scale > 1:
            assert bool((c > q + 0.04).all())


def test_coverage_with_a_gaussian_posterior_and_chunked_quantiles(monkeypatch):
    post = posterior(B=2, D=3)
    x = post.sample(500, torch.Generator().manual_seed(15))
    cdf = post.marginal_cdf
    whole = coverage(x, cdf, levels=(0.8,))[0.8]
    assert (whole - 0.8).abs().max() < 0.05
    # the same numbers when torch.quantile's size limit forces one column at a time
    monkeypatch.setattr(distances, "QUANTILE_MAX_NUMEL", 7)
    assert coverage(x, cdf, levels=(0.8,))[0.8].equal(whole)


def test_summary_averages_every_score_over_the_batch():
    post = posterior()
    g = torch.Generator().manual_seed(16)
    x, reference = post.sample(300, g), post.sample(300, g)
    cdf = post.marginal_cdf
    s = summary(x, post.mean, post.cov, reference, cdf)
    assert list(s) == ["sw", "w2", "mean_err", "cov_err", "cov50", "cov90", "cov95"]
    assert s["sw"] == pytest.approx(float(sliced_wasserstein(x, reference).mean()), rel=1e-12)
    assert s["mean_err"] == pytest.approx(float(mean_error(x, post.mean, post.cov).mean()), rel=1e-12)
    assert s["cov90"] == pytest.approx(float(coverage(x, cdf)[0.9].mean()), rel=1e-12)


# --- bad input ------------------------------------------------------------------------------------


def one_line_error(name: str, call) -> None:
    with pytest.raises(PosteriaError, match=name) as err:
        call()
    assert "\n" not in str(err.value)


def test_bad_input_raises_one_line_naming_the_argument():
    x, m, C = torch.randn(2, 5, 3, dtype=F64), torch.zeros(2, 3, dtype=F64), torch.eye(3, dtype=F64)
    one_line_error("x", lambda: gaussian_w2(x[:, :1], m, C))  # n < 2
    one_line_error("x", lambda: gaussian_w2(x[0], m, C))  # not (B, n, D)
    one_line_error("x", lambda: mean_error(torch.where(x > 1, float("nan"), x), m))
    one_line_error("mean", lambda: gaussian_w2(x, m[:, :2], C))
    one_line_error("cov", lambda: gaussian_w2(x, m, torch.eye(2, dtype=F64)))
    one_line_error("cov", lambda: cov_error(x, torch.full((3, 3), float("nan"), dtype=F64)))
    one_line_error("cov", lambda: cov_error(x, torch.zeros(3, 3, dtype=F64)))
    one_line_error("reference", lambda: sliced_wasserstein(x, x[:, :, :2]))
    one_line_error("reference", lambda: sliced_wasserstein(x, x[:, :1]))
    one_line_error("levels", lambda: coverage(x, standard_normal_cdf, levels=(0.5, 1.0)))
    one_line_error("cdf", lambda: coverage(x, lambda v: v[:, :1]))
