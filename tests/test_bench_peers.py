"""azula's DPS, MMPS and TDS on our denoisers (:mod:`posteria.bench.peers`), on Gaussian problems.

The prior is ``N(mu, Sigma)`` on R^8 (eigenvalues 0.05 to 2, a random rotation) or on 4x4 images, and the
exact posterior comes from :func:`posteria.lab.gaussian_posterior`. MMPS's moments are exact for a Gaussian
prior, so azula's MMPS denoiser on our adapter must *be* the posterior denoiser once its CG has converged,
and DDPM on it must sample the posterior up to DDPM's own bias on azula's grid (measured on the exact
posterior denoiser; comments give the numbers). Tests that need azula skip without it (install with
``pip install --no-deps azula==0.11.1 einops``); the first runs everywhere.
"""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import pytest
import torch

from posteria.bench.peers import (
    AZULA_METHODS,
    azula_denoiser,
    azula_schedule,
    azula_version,
    flat_operator,
    run_azula,
    run_posteria,
)
from posteria.denoisers.gaussian import GaussianDenoiser
from posteria.errors import PosteriaError
from posteria.lab import gaussian_posterior
from posteria.noise import VE, VPCosine, VPLinear
from posteria.operators import MatrixOperator, get_operator
from posteria.posterior.mmps import default_iterations

pytestmark = pytest.mark.usefixtures("one_thread")
requires_azula = pytest.mark.skipif(azula_version() is None, reason="azula is not installed")

D, M = 8, 4


def problem(operator: str = "matrix", batch: int = 1, sigma_y: float = 0.1) -> SimpleNamespace:
    """A float64 Gaussian prior, an operator (a random (4, 8) matrix, or 2x downsampling of 4x4 images),
    ``batch`` measurements of prior draws, their exact posterior and its denoiser (for ``y[0]``)."""
    g = torch.Generator().manual_seed(0)
    f64, event = torch.float64, (D,) if operator == "matrix" else (1, 4, 4)
    dim = math.prod(event)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=f64))
    cov = Q @ torch.diag(torch.logspace(-1.3, 0.3, dim, dtype=f64)) @ Q.T
    mean = 0.5 * torch.randn(event, generator=g, dtype=f64)
    if operator == "matrix":
        op = MatrixOperator(torch.randn(M, D, generator=g, dtype=f64) / math.sqrt(D), sigma_y=sigma_y)
    else:
        op = get_operator("sr2", event, sigma_y=sigma_y).to(f64)
    x = mean + (torch.randn(batch, dim, generator=g, dtype=f64) @ torch.linalg.cholesky(cov).T).reshape(
        -1, *event
    )
    y = op.measure(x, generator=g)
    prior = GaussianDenoiser.full(VPLinear(), mean, cov)
    post = gaussian_posterior(mean, cov, op, y)
    exact = GaussianDenoiser.full(VPLinear(), post.mean[0].reshape(event), post.cov)
    return SimpleNamespace(prior=prior, op=op, y=y, mean=mean, post=post, exact=exact)


def whitened_gap(a: torch.Tensor, b: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||L^-1 (a - b)||`` (N,), ``L L^T = cov``: a difference in posterior standard
    deviations."""
    L = torch.linalg.cholesky(cov)
    return torch.linalg.solve_triangular(L, (a - b).reshape(a.shape[0], -1).T, upper=False).T.norm(dim=1)


# --- without azula ------------------------------------------------------------------------------------


def test_azula_version_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A string or None, never an exception; with azula unimportable, None and a one-line error to run."""
    version = azula_version()
    assert version is None or (isinstance(version, str) and version)
    monkeypatch.setitem(sys.modules, "azula", None)  # makes `import azula` raise ImportError
    assert azula_version() is None
    p = problem()
    with pytest.raises(PosteriaError, match="azula is not installed"):
        run_azula("dps", p.prior, p.op, p.y, steps=2)


# --- the adapter --------------------------------------------------------------------------------------


@requires_azula
@pytest.mark.parametrize("schedule", [VPLinear(), VPCosine(), VE()], ids=["vp", "cosine", "ve"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_schedule_adapter_is_ours(schedule, dtype: torch.dtype) -> None:
    """An azula Schedule returning our ``(alpha_t, sigma_t)`` in the shape and dtype of ``t``: () or (B,)."""
    from azula.noise import Schedule

    adapted = azula_schedule(schedule)
    assert isinstance(adapted, Schedule)
    for t in (torch.tensor(0.3, dtype=dtype), torch.linspace(1, 0, 5, dtype=dtype)):
        alpha, sigma = adapted(t)
        assert alpha.shape == sigma.shape == t.shape and alpha.dtype == sigma.dtype == dtype
        ours = schedule(t)
        assert torch.equal(alpha, ours[0]) and torch.equal(sigma, ours[1])


@requires_azula
def test_denoiser_adapter_is_ours() -> None:
    """The adapted denoiser returns our ``E[x | x_t]`` (to 1e-12 in float64) for azula's scalar ``t`` and
    for a (B,) ``t``, counts its calls, and counts a vjp only when one is taken through its output."""
    from azula.denoise import Denoiser

    p = problem()
    adapter = azula_denoiser(p.prior)
    assert isinstance(adapter, Denoiser)
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t in (torch.tensor(1.0, dtype=torch.float64), torch.tensor(1e-3), torch.rand(5, dtype=torch.float64)):
        assert float((adapter(x, t).mean - p.prior(x, t)).abs().max()) <= 1e-12
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(adapter(x, t).mean.square().sum(), x)
    (ours,) = torch.autograd.grad(p.prior(x, t).square().sum(), x)
    torch.testing.assert_close(grad, ours, rtol=0, atol=1e-12)
    assert (adapter.calls, adapter.vjps) == (4, 1)


@requires_azula
@pytest.mark.parametrize("operator", ["matrix", "sr2"])
def test_azula_mmps_denoiser_is_the_posterior_denoiser(operator: str) -> None:
    """azula's MMPSDenoiser on our adapter, CG run to convergence (m iterations), is ``E[x | x_t, y]``
    pointwise at every noise level; the sr2 case checks that flattened (B, 1, 2, 2) measurements work.

    Measured: below 3e-13 at t >= 0.1, 3e-8 at t = 0.01 whatever the iterations (azula's CG clips
    ``r^T r`` at float64's eps, so it stalls near residuals of 1e-8), hence the bound 1e-7."""
    from azula.guidance import MMPSDenoiser
    from azula.linalg.covariance import IsotropicCovariance

    p, n = problem(operator), 32
    ys = p.y.reshape(1, -1).repeat(n, 1)
    mmps = MMPSDenoiser(
        azula_denoiser(p.prior), ys, flat_operator(p.op), IsotropicCovariance(0.01), "cg", ys.shape[1]
    )
    g = torch.Generator().manual_seed(2)
    for t in (1.0, 0.5, 0.1, 0.01, 1e-3):
        alpha, sigma = VPLinear()(torch.tensor(t, dtype=torch.float64))
        x = p.post.sample(n, g)[0]
        x_t = alpha * x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
        t_ = torch.tensor(t, dtype=torch.float64)
        assert float(whitened_gap(mmps(x_t, t_).mean, p.exact(x_t, t), p.post.cov).max()) < 1e-7


# azula's DDPM, 50 steps on linspace(1, 0, 51), n = 40000, on the exact posterior denoiser: whitened errors
# (0.009, 1.04) (its last call, at t = 0.02, shrinks the small posterior directions). azula's MMPS through
# the adapter, n = 2000, seed 1: (0.074, 1.05); with 1 CG iteration instead of our 5: (0.91, 1.16).
MMPS_TOL = (math.sqrt(26.1 / 2000) + 0.02, 1.04 + math.sqrt(2 * 68.0 / 2000) + 0.1)


@requires_azula
def test_azula_mmps_samples_near_the_exact_posterior() -> None:
    """Whitened sample mean within the 99.9% Monte-Carlo bound plus DDPM's bias; covariance as azula's
    DDPM gives on the exact posterior denoiser (see MMPS_TOL)."""
    p, n = problem(), 2000
    run = run_azula("mmps", p.prior, p.op, p.y, steps=50, n=n, seed=1)
    w = p.post.whiten(run.samples)[0]
    mean_err, cov_err = float(w.mean(0).norm()), float((torch.cov(w.T) - torch.eye(D)).norm())
    assert mean_err < MMPS_TOL[0] and cov_err < MMPS_TOL[1], (mean_err, cov_err)


# --- every method: shapes, counts, seeds --------------------------------------------------------------


@requires_azula
@pytest.mark.parametrize("method", AZULA_METHODS)
def test_runs_have_our_nfe_and_finite_samples(method: str) -> None:
    """(B, n, *event) finite samples; one denoiser call per step and chain, as ours at the same ``steps``;
    vjps per chain: DPS and TDS one per step, MMPS one per CG iteration plus one per step."""
    p, steps, n = problem(batch=2), 10, 4
    run = run_azula(method, p.prior, p.op, p.y, steps=steps, n=n, seed=0)
    assert run.samples.shape == (2, n, D) and run.samples.dtype == torch.float64
    assert bool(torch.isfinite(run.samples).all()) and run.seconds > 0 and run.library == "azula"
    vjps = {"dps": steps, "mmps": steps * (default_iterations(p.prior) + 1), "tds": steps}[method]
    assert (run.nfe, run.vjps, run.runs) == (steps, vjps, 2 if method == "tds" else 1)
    ours = run_posteria(method, p.prior, p.op, p.y, steps=steps, n=n, seed=0)
    assert ours.samples.shape == run.samples.shape and ours.nfe == run.nfe and ours.library == "posteria"


@requires_azula
def test_options_and_batches() -> None:
    """MMPS ``iterations`` sets the vjps; DPS ``batch`` splits the chains into runs, nfe per chain kept;
    TDS refuses a batch, unknown methods are refused."""
    p, steps = problem(batch=2), 5
    run = run_azula("mmps", p.prior, p.op, p.y, steps=steps, n=2, iterations=2)
    assert (run.nfe, run.vjps) == (steps, 3 * steps)
    run = run_azula("dps", p.prior, p.op, p.y, steps=steps, n=4, batch=3)  # 8 chains: 3 + 3 + 2
    assert (run.nfe, run.vjps, run.runs) == (steps, steps, 3) and run.samples.shape == (2, 4, D)
    with pytest.raises(PosteriaError, match="no batch"):
        run_azula("tds", p.prior, p.op, p.y, steps=steps, batch=2)
    with pytest.raises(PosteriaError, match="method"):
        run_azula("pigdm", p.prior, p.op, p.y, steps=steps)


@requires_azula
@pytest.mark.parametrize("method", AZULA_METHODS)
def test_seeded_and_global_generator_untouched(method: str) -> None:
    """The same seed gives the same samples, another seed others; torch's global state is restored."""
    p = problem()
    state = torch.random.get_rng_state()
    a, b, c = (run_azula(method, p.prior, p.op, p.y, steps=4, n=3, seed=s).samples for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), state)
