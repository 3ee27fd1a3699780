"""Samplers against closed forms: an exact Gaussian denoiser must give back its prior N(mu, Sigma).

Every statistical check compares the sample mean and covariance, whitened by the prior
(``w = L^-1 (x - mu)``, ``Sigma = L L^T``), with the identity:
``mean_err = ||mean(w)||`` and ``cov_err = ||cov(w) - I||_F``. For exact samples ``n mean_err^2 ~ chi2_D``
and ``n cov_err^2 / 2 ~ chi2_{D(D+1)/2}`` (approximately), so with ``D = 3`` the 99.9% Monte-Carlo
bounds are ``sqrt(16.3 / n)`` and ``sqrt(2 * 22.5 / n)``. Each case's tolerance is that bound plus the
method's own discretisation bias, measured (the comments give the numbers) and rounded up; a sampler
whose denoiser is evaluated one grid time off must exceed it.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import BatchNoise

from posteria.denoisers.base import Denoiser
from posteria.denoisers.gaussian import GaussianDenoiser
from posteria.errors import PosteriaError
from posteria.noise import EDM, VE, Schedule, VPCosine, VPLinear
from posteria.random import PerSampleNoise
from posteria.samplers import DDIM, SAMPLERS, Euler, Heun, PredictorCorrector, Sampler, get_sampler, sample

D = 3
EIGVALS = (0.05, 0.4, 1.5)
MEAN = (0.5, -1.0, 0.8)


@pytest.fixture(autouse=True)
def float64_one_thread():
    """float64 for closed-form checks; one intra-op thread, because on a small shared machine thread
    contention made these (B, 3) tensor ops 20 times slower."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


class ShiftedTime(Denoiser):
    """The off-by-one bug: evaluate the denoiser at the grid time ``shift`` places away from ``t``
    (``+1``: at ``s`` instead of ``t``, one step less noisy; ``-1``: one step noisier)."""

    def __init__(self, inner: Denoiser, times: torch.Tensor, shift: int) -> None:
        super().__init__(inner.schedule, inner.event_shape)
        self.inner, grid = inner, [float(t) for t in times]
        self.moved = {t: grid[min(max(i + shift, 0), len(grid) - 1)] for i, t in enumerate(grid)}

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        t0 = float(t[0])
        return self.inner(x_t, self.moved.get(t0, t0), **cond)


class ShapelessDenoiser(Denoiser):
    """A denoiser that accepts any event shape (so ``sample`` must be told one)."""

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        return torch.zeros_like(x_t)


def prior_cov() -> torch.Tensor:
    """Sigma = Q diag(0.05, 0.4, 1.5) Q^T with a fixed random rotation Q (anisotropic, not diagonal)."""
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(0)))
    return Q @ torch.diag(torch.tensor(EIGVALS)) @ Q.T


def gaussian(schedule: Schedule, blocks: int = 1) -> GaussianDenoiser:
    """The exact denoiser of ``blocks`` independent copies of N(MEAN, Sigma); event shape (blocks, D)."""
    cov = torch.kron(torch.eye(blocks), prior_cov())
    return GaussianDenoiser.full(schedule, torch.tensor(MEAN).repeat(blocks), cov, event_shape=(blocks, D))


def exact_x1(schedule: Schedule, n: int, blocks: int, seed: int) -> torch.Tensor:
    """Draws of the exact marginal at t = 1, ``N(alpha_1 mu, alpha_1^2 Sigma + sigma_1^2 I)``, shape
    (n, blocks, D): starting there isolates the sampler's error from the ``x_1 = sigma_1 eps`` guess."""
    alpha, sigma = schedule(1.0)
    L = torch.linalg.cholesky(alpha**2 * prior_cov() + sigma**2 * torch.eye(D))
    eps = torch.randn(n, blocks, D, generator=torch.Generator().manual_seed(seed))
    return alpha * torch.tensor(MEAN) + eps @ L.T


def whitened_errors(x: torch.Tensor) -> tuple[float, float]:
    """``(||mean(w)||, ||cov(w) - I||_F)``, ``w = L^-1 (x - mu)``, pooling the blocks of (n, blocks, D)."""
    L = torch.linalg.cholesky(prior_cov())
    w = torch.linalg.solve_triangular(L, (x.reshape(-1, D) - torch.tensor(MEAN)).T, upper=False).T
    return float(w.mean(0).norm()), float((torch.cov(w.T) - torch.eye(D)).norm())


def run(spec: dict, seed: int = 0, shift: int = 0) -> torch.Tensor:
    """Sample ``spec['n']`` points from exact x_1; ``shift != 0`` plants the off-by-one bug."""
    den = gaussian(spec["schedule"], spec["blocks"])
    sampler = get_sampler(spec["sampler"], den, spec["steps"], spacing=spec["spacing"])
    if shift:
        sampler.denoiser = ShiftedTime(den, sampler.times, shift)
    x1 = exact_x1(den.schedule, spec["n"], spec["blocks"], seed)
    return sampler(x1, noise=BatchNoise(spec["n"], 1000 + seed))


def tolerances(spec: dict) -> tuple[float, float]:
    """99.9% Monte-Carlo bounds for n * blocks points, plus the measured discretisation bias."""
    m = spec["n"] * spec["blocks"]
    return math.sqrt(16.3 / m) + spec["bias"][0], math.sqrt(2 * 22.5 / m) + spec["bias"][1]


def accepted(x: torch.Tensor, spec: dict) -> bool:
    """Whether the statistical check passes."""
    mean_err, cov_err = whitened_errors(x)
    mean_tol, cov_tol = tolerances(spec)
    return mean_err <= mean_tol and cov_err <= cov_tol


def case(sampler: str, schedule: Schedule, steps: int, spacing: str, bias, n=20000, blocks=1) -> dict:
    """One statistical check; ``bias`` = (mean, cov) discretisation allowances."""
    return dict(
        sampler=sampler, schedule=schedule, steps=steps, spacing=spacing, bias=bias, n=n, blocks=blocks
    )


# bias = (mean, cov) discretisation allowances. Measured cov_err with n = 20000 (seeds 0-3), then the
# population value for the deterministic samplers (their exact per-eigendirection variance ratios, from
# the map of test_flow_map), then the off-by-one variants (seed 0; +1 = "at s instead of t", -1 = at the
# previous, noisier grid time). The Monte-Carlo bound is 0.047 (0.053 for the pooled 250 x 64 pc cases).
CASES = {
    # 0.077 0.089 0.089 0.076; +1: 0.059 (undetectable: it offsets DDPM's own under-dispersion), -1: 0.198
    "ddpm-vp": case("ddpm", VPLinear(), 500, "uniform", (0.01, 0.08)),
    # 0.034 0.059 0.044 0.045; +1: 0.057, -1: 0.112 (uniform-in-t on VE gives 0.48: too coarse near data)
    "ddpm-ve": case("ddpm", VE(), 500, "karras", (0.01, 0.04)),
    # 0.054 0.063 0.091 0.058, population 0.061; +1: 0.153, -1: 0.217
    "ddim-vp": case("ddim", VPLinear(), 100, "quadratic", (0.01, 0.07)),
    # 0.089 0.097 0.125 0.092, population 0.096; +1: 0.337, -1: 0.424
    "ddim-ve": case("ddim", VE(), 100, "karras", (0.01, 0.10)),
    # 0.049 0.055 0.085 0.051, population 0.053; +1: 0.119, -1: 0.176
    "ddim-cosine": case("ddim", VPCosine(), 100, "quadratic", (0.01, 0.06)),
    # 0.020 0.036 0.052 0.035, population 0.028; +1: 0.223, -1: 0.236
    "euler-vp": case("euler", VPLinear(), 200, "uniform", (0.01, 0.03)),
    # 0.046 0.051 0.079 0.048, population 0.049; +1: 0.170, -1: 0.221
    "euler-ve": case("euler", VE(), 200, "karras", (0.01, 0.05)),
    # 0.036 0.017 0.037 0.027, population 0.0065 (35 NFE); +1: 1.44, -1: 0.82
    "heun-vp": case("heun", VPLinear(), 18, "quadratic", (0.01, 0.01)),
    # 0.067 0.049 0.034 0.059, population 0.046 (69 NFE; EDM's 18 steps give 0.21 here); +1: 1.71, -1: 0.82
    "heun-edm": case("heun", EDM(), 35, "karras", (0.01, 0.05)),
    # Langevin's per-sample step 2 (snr ||z|| / ||score||)^2 assumes ||score|| concentrates, i.e. a high
    # dimension (in D = 3 it has heavy tails: cov_err 4.7); 64 independent blocks make the event
    # 192-dimensional and are pooled. The bias does not vanish with more steps: it is the corrector's
    # (unadjusted Langevin) stationary bias at snr = 0.16.
    # 0.097 0.066 0.081 0.068; +1: 9.5, -1: 0.437
    "pc-vp": case("pc", VPLinear(), 200, "uniform", (0.01, 0.08), n=250, blocks=64),
    # 0.143 0.116 0.128 0.110; +1: diverges, -1: 0.227
    "pc-ve": case("pc", VE(), 200, "karras", (0.01, 0.13), n=250, blocks=64),
}
# The planted bug, per sampler family, on the configurations above.
OFF_BY_ONE = [("ddpm-vp", -1), ("ddim-vp", 1), ("ddim-vp", -1), ("euler-vp", 1), ("heun-vp", 1), ("pc-vp", 1)]


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_recovers_gaussian_prior(name: str) -> None:
    mean_err, cov_err = whitened_errors(run(CASES[name]))
    mean_tol, cov_tol = tolerances(CASES[name])
    assert mean_err <= mean_tol, f"{name}: whitened mean error {mean_err:.4f} > {mean_tol:.4f}"
    assert cov_err <= cov_tol, f"{name}: whitened covariance error {cov_err:.4f} > {cov_tol:.4f}"


@pytest.mark.parametrize(("name", "shift"), OFF_BY_ONE)
def test_off_by_one_time_is_rejected(name: str, shift: int) -> None:
    """The same check must fail when the denoiser is evaluated one grid time off."""
    try:
        x = run(CASES[name], shift=shift)
    except PosteriaError:  # diverged to inf / NaN: rejected as well
        return
    assert not accepted(x, CASES[name])


def flow_gains(sampler: Sampler) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic map x_1 -> x_0 of ``sampler`` on the Gaussian prior, in the eigenbasis of Sigma.

    Returns ``(M, exact)``: ``M[k, j] = q_j . (x_0(c + q_k) - x_0(c))`` with ``c = alpha_1 mu`` and
    ``exact_k = sqrt(lam_k / (alpha_1^2 lam_k + sigma_1^2))``, the exact probability-flow map, which
    scales each eigendirection so as to carry N(alpha_1 mu, ...) onto N(mu, Sigma).
    """
    lam, Q = torch.linalg.eigh(prior_cov())
    alpha, sigma = sampler.denoiser.schedule(1.0)
    x1 = alpha * torch.tensor(MEAN) + torch.cat([torch.zeros(1, D), Q.T])
    x0 = sampler(x1.reshape(D + 1, 1, D)).reshape(D + 1, D)
    assert torch.allclose(x0[0], torch.tensor(MEAN), atol=3e-3)  # the mean maps (almost) onto mu
    return (x0[1:] - x0[0]) @ Q, torch.sqrt(lam / (alpha**2 * lam + sigma**2))


# max_k |M_kk / exact_k - 1| measured: 0.0212, 0.0159, 0.0033, 0.0164.
@pytest.mark.parametrize(
    ("name", "schedule", "steps", "spacing", "tol"),
    [
        ("ddim", VPLinear(), 100, "quadratic", 0.025),
        ("euler", VE(), 200, "karras", 0.02),
        ("heun", VPLinear(), 18, "quadratic", 0.005),
        ("heun", EDM(), 35, "karras", 0.02),
    ],
)
def test_flow_map(name: str, schedule: Schedule, steps: int, spacing: str, tol: float) -> None:
    M, exact = flow_gains(get_sampler(name, gaussian(schedule), steps, spacing=spacing))
    assert torch.allclose(M, torch.diag(M.diagonal()), atol=1e-10)  # no mixing of eigendirections
    assert float((M.diagonal() / exact - 1).abs().max()) < tol


def test_ddim_map_is_the_closed_form_product() -> None:
    """Per eigendirection a DDIM step multiplies ``x - alpha mu`` by
    ``(alpha_s alpha_t lam + sigma_s sigma_t) / (alpha_t^2 lam + sigma_t^2)``; the last, by D's gain."""
    sampler = DDIM(gaussian(VPCosine()), 20, spacing="quadratic")
    lam = torch.linalg.eigvalsh(prior_cov())
    gain = torch.ones(D)
    for t, s in sampler.pairs:
        (a_t, s_t), (a_s, s_s) = sampler.alpha_sigma(t), sampler.alpha_sigma(s)
        v_t = a_t**2 * lam + s_t**2
        gain = gain * ((a_s * a_t * lam + s_s * s_t) / v_t if s > 0 else a_t * lam / v_t)
    M, _ = flow_gains(sampler)
    assert torch.allclose(M.diagonal(), gain, rtol=1e-10)


def test_ddim_is_euler_under_ve() -> None:
    """With alpha = 1 and sigma linear in t, DDIM(eta=0) and Euler take identical steps."""
    den = gaussian(VE(sigma_max=10.0))
    x1 = exact_x1(den.schedule, 8, 1, seed=0)
    a, b = DDIM(den, 30, spacing="karras")(x1), Euler(den, 30, spacing="karras")(x1)
    assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize(
    ("cls", "schedule", "steps", "ratio"), [(Euler, VE(), 50, (1.8, 2.2)), (Heun, EDM(), 20, (3.5, 5))]
)
def test_order_of_convergence(cls: type[Sampler], schedule: Schedule, steps: int, ratio: tuple) -> None:
    """Halving the step divides the flow-map error by 2 (Euler, first order) or 4 (Heun, second order);
    measured 1.99 and 4.51."""
    errors = []
    for k in (steps, 2 * steps):
        M, exact = flow_gains(cls(gaussian(schedule), k, spacing="karras"))
        errors.append(float((M.diagonal() / exact - 1).abs().max()))
    assert ratio[0] < errors[0] / errors[1] < ratio[1]


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_per_sample_seeds(name: str) -> None:
    """Sample i depends only on the seed and i: not on batch_size, nor on n. The noise is the same bit for
    bit; the denoiser's matrix products may round differently at another batch size (BLAS kernels differ
    by CPU; measured 1e-16 to 1.2e-14 in float64), hence a tolerance of 1e-12, far below what another
    seed changes."""
    den = gaussian(VPLinear())

    def draw(seed: int, **kwargs: int) -> torch.Tensor:
        return sample(den, name, steps=6, generator=torch.Generator().manual_seed(seed), **kwargs)

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.allclose(a, b, rtol=0, atol=1e-12)

    whole = draw(0, n=6, batch_size=6)
    assert whole.shape == (6, 1, D)
    assert same(whole, draw(0, n=6, batch_size=4))
    assert same(whole, draw(0, n=10, batch_size=3)[:6])
    assert torch.equal(whole, draw(0, n=6))
    assert not torch.allclose(whole, draw(1, n=6))
    sampler = get_sampler(name, den, 6)  # a sampler called on a shape draws the same base seed
    assert torch.equal(whole, sampler((6, 1, D), generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3,), (7, 5)])
def test_per_sample_noise_row_i_is_what_generator_i_draws(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Row ``i`` of ``randn`` / ``rand`` is ``torch.randn`` / ``torch.rand`` on sample ``i``'s own stream,
    whatever the event shape (vectorised and scalar kernels alike) and precision."""
    noise = PerSampleNoise(3, 4, offset=2)
    streams = [torch.Generator().manual_seed(seed) for seed in noise.seeds]
    like = torch.empty(0, dtype=dtype)
    for draw, plain in ((noise.randn, torch.randn), (noise.rand, torch.rand)):
        expected = torch.stack([plain(shape, generator=g, dtype=dtype) for g in streams])
        assert torch.equal(draw(shape, like), expected)


def test_nfe_and_registry() -> None:
    den = gaussian(VPLinear())
    assert SAMPLERS["langevin"] is SAMPLERS["pc"] is PredictorCorrector
    assert get_sampler("ddpm", den, 1000).nfe == 1000
    assert get_sampler("heun", den, 18).nfe == 35  # EDM's count
    assert get_sampler("pc", den, 10, corrector_steps=2).nfe == 10 + 2 * 9
    assert get_sampler("ddim", den, 1).nfe == 1


def test_ddpm_grid_visits_discrete_steps() -> None:
    """1000 uniform steps under VPLinear visit DDPM's t = i / 1000, then 0."""
    times = get_sampler("ddpm", gaussian(VPLinear()), 1000).times
    assert times.shape == (1001,)
    assert torch.allclose(times, torch.cat([torch.arange(1000, 0, -1) / 1000, torch.zeros(1)]), atol=1e-12)


def test_no_graph_across_steps_and_progress() -> None:
    den = gaussian(VPLinear())
    x1 = exact_x1(den.schedule, 4, 1, seed=0).requires_grad_()
    out = get_sampler("pc", den, 3)(x1, generator=torch.Generator().manual_seed(0), progress=True)
    assert out.shape == x1.shape and not out.requires_grad


def test_bad_input() -> None:
    den = gaussian(VPLinear())
    with pytest.raises(PosteriaError, match="sampler 'nope'.*ddpm, ddim, euler, heun, pc, langevin"):
        sample(den, "nope")
    for kwargs, word in [({"steps": 0}, "steps"), ({"n": 0}, "n must"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(PosteriaError, match=word):
            sample(den, **kwargs)
    with pytest.raises(PosteriaError, match="steps"):
        get_sampler("heun", den, 2.5)
    with pytest.raises(PosteriaError, match="eta"):
        sample(den, "ddim", eta=1.5)
    with pytest.raises(PosteriaError, match="unknown option.*: sigma"):
        sample(den, "euler", sigma=1.0)
    with pytest.raises(PosteriaError, match="event_shape"):
        sample(ShapelessDenoiser(VPLinear()))
    with pytest.raises(PosteriaError, match="x_or_shape"):
        get_sampler("ddim", den, 2)(5)
    with pytest.raises(PosteriaError, match="noise holds 3 samples"):
        get_sampler("ddpm", den, 2)((4, 1, D), noise=BatchNoise(3, 0))


@pytest.mark.parametrize("name", ["ddpm", "heun", "pc"])
def test_float32_by_default(name: str) -> None:
    """Outside the float64 fixture, samples come back float32 and finite (EDM and VP alike)."""
    torch.set_default_dtype(torch.float32)  # the fixture restores the previous default
    for schedule in (VPLinear(), EDM()):
        den = GaussianDenoiser.full(schedule, torch.tensor(MEAN).float(), prior_cov().float())
        x = sample(den, name, steps=8, n=5, generator=torch.Generator().manual_seed(0), spacing="karras")
        assert x.dtype == torch.float32 and x.shape == (5, D) and bool(torch.isfinite(x).all())


def _variance_ratio(renoise: float, steps: int) -> float:
    """Mean whitened variance of DDPM(renoise) samples of the Gaussian prior (1 for exact samples)."""
    den, n = gaussian(VPLinear()), 4000
    sampler = get_sampler("ddpm", den, steps, spacing="quadratic", renoise=renoise)
    x = sampler(exact_x1(den.schedule, n, 1, 0), noise=BatchNoise(n, 1000))
    L = torch.linalg.cholesky(prior_cov())
    w = torch.linalg.solve_triangular(L, (x.reshape(-1, D) - torch.tensor(MEAN)).T, upper=False).T
    return float(torch.cov(w.T).diagonal().mean())


def test_renoise_under_disperses_at_any_step_count() -> None:
    """renoise = c / sigma_s (DDRM's eta) re-noises the point estimate x0, so every step loses variance:
    measured 0.94 / 1.00 at renoise 0 and 0.72 / 0.74 at 0.85 (100 / 400 steps): the bias stays."""
    for steps in (100, 400):
        assert _variance_ratio(0.0, steps) > 0.9
        assert _variance_ratio(0.85, steps) < 0.85


def test_renoise_zero_is_ddim_and_one_restarts_from_x0() -> None:
    den = gaussian(VPLinear())
    plain, zero = DDIM(den, 10, eta=0.3), DDIM(den, 10, eta=0.3, renoise=0.0)
    t, s = plain.pairs[3]
    assert plain.transition(t, s) == zero.transition(t, s)
    alpha_s, sigma_s = plain.alpha_sigma(s)
    assert DDIM(den, 10, renoise=1.0).transition(t, s) == (alpha_s, 0.0, sigma_s)
    with pytest.raises(PosteriaError, match="renoise must lie in"):
        DDIM(den, 10, renoise=1.5)
