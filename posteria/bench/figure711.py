"""The seed chapter's Figure 7.11, with the exact laboratory: DPS loses the posterior's variance along ``A``.

Setting. A 2-D Gaussian prior ``x ~ N(0, Sigma)``, ``Sigma = [[1, 0.6], [0.6, 0.5]]`` (correlated and
anisotropic), and one linear measurement ``y = a^T x + w``, ``a = (1, 1)``, ``w ~ N(0, sigma_y^2)``, at a
large and a small noise (``sigma_y = 1`` and ``0.05``). The posterior is Gaussian (seed chapter, Example
7.4), so everything has a closed form to compare with: its variance along the row of ``A``,
``u^T Sigma_post u`` with ``u = a / |a|``, and across it, ``v^T Sigma_post v`` with ``v`` orthogonal to ``u``.

Samplers, one column each (all diffusion samplers run DDPM on the same grid, so only the denoiser differs):

* ``exact``: closed-form posterior samples (the reference).
* ``exact-denoiser``: DDPM on the exact ``E[x | x_t, y]``, the denoiser of the Gaussian posterior.
* ``dps-squared``: the chapter's DPS approximation ``p(y | x_t) ~ N(y; A D(x_t), sigma_y^2)``, the
  likelihood at Tweedie's mean with ``Cov[x | x_t]`` ignored (Chung et al. 2023); posteria's
  ``dps-squared`` method, whose overshoot limit keeps it finite at small ``sigma_y``.
* ``mmps``: moment matching (Rozet et al. 2024), exact for a Gaussian prior.
* ``dps``: the DPS paper's step ``-zeta grad ||y - A D(x_t)||`` with ``zeta = 1`` (their Algorithm 1): the
  norm, not the likelihood, so it does not see ``sigma_y`` at all.

Measured (n = 2000, DDPM 200 steps, Karras grid, ``t_min = 1e-4``, seed 0): at ``sigma_y = 0.05`` the
exact denoiser and MMPS keep about 0.9 of the variance along ``a`` (the 0.9 is DDPM's own bias on this
grid, :func:`ddpm_covariance`), DPS keeps about half; the paper-step DPS scatters its samples hundreds of
times wider than the posterior along ``a`` (it jitters across the line by a fixed step). At
``sigma_y = 1`` DPS keeps about 0.65 and its mean is off by half a posterior standard deviation; the
paper-step DPS is 1.8 times too wide. Across ``a`` all are within ~20%. The grid matters: on the
default uniform grid (``t_min = 1e-3``) even the exact denoiser keeps only half the variance along ``a``
at ``sigma_y = 0.05``: its steps near ``t = 0`` (``dt = 0.005``, ``sigma_t = 0.031`` at the last time but
one) are as coarse as the posterior's standard deviation along ``a`` (0.035).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from posteria.lab import GaussianPosterior, GaussianPrior, mean_error
from posteria.noise import VPLinear
from posteria.operators import MatrixOperator
from posteria.posterior import solve
from posteria.random import PerSampleNoise
from posteria.report.figures import plt, save_figure
from posteria.samplers import get_sampler
from posteria.samplers.ddim import DDPM

#: the prior covariance: correlated (0.6) and anisotropic (variances 1 and 0.5)
SIGMA = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
#: the measurement row: y = a^T x + w
A_ROW = torch.tensor([1.0, 1.0], dtype=torch.float64)
#: the DDPM time grid of every diffusion sampler: fine near t = 0, where the posterior along a is resolved
GRID = {"spacing": "karras", "t_min": 1e-4}
#: column key -> panel title; the keys other than the first two are posteria method names
SAMPLERS = {
    "exact": "exact posterior",
    "exact-denoiser": "DDPM on exact E[x | x_t, y]",
    "dps-squared": "DPS (likelihood at D(x_t))",
    "mmps": "MMPS",
    "dps": "DPS paper step, zeta = 1",
}


@dataclass(frozen=True)
class Problem:
    """One noise level: the prior, the operator ``a^T x + w``, one measurement ``y`` (1, 1) and its exact
    posterior; ``u`` is ``a / |a|`` and ``v`` the orthogonal unit vector."""

    sigma_y: float
    prior: GaussianPrior
    operator: MatrixOperator
    y: torch.Tensor
    posterior: GaussianPosterior
    u: torch.Tensor
    v: torch.Tensor


def make_problem(sigma_y: float, x_true: torch.Tensor, z: float) -> Problem:
    """The problem at ``sigma_y`` with ``y = a^T x_true + sigma_y z``: the same ``x_true`` and standard noise
    ``z`` at every level, so the levels differ only in the noise scale."""
    prior = GaussianPrior(torch.zeros(2, dtype=torch.float64), SIGMA)
    operator = MatrixOperator(A_ROW[None], sigma_y=sigma_y)  # float64 matrix: float64 SVD and measurements
    y = (A_ROW @ x_true + sigma_y * z).reshape(1, 1)
    u = A_ROW / A_ROW.norm()
    v = torch.stack([-u[1], u[0]])
    return Problem(sigma_y, prior, operator, y, prior.posterior(operator, y), u, v)


def draw(problem: Problem, sampler: str, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` samples (n, 2), float64, of one column of :data:`SAMPLERS`."""
    post = problem.posterior
    if sampler == "exact":
        return post.sample(n, generator)[0]
    schedule = VPLinear()
    if sampler == "exact-denoiser":
        # the posterior is Gaussian, so its exact denoiser E[x | x_t, y] is a Gaussian denoiser
        denoiser = GaussianPrior(post.mean[0], post.cov).denoiser(schedule)
        noise = PerSampleNoise.from_generator(generator, n)
        return get_sampler("ddpm", denoiser, steps, **GRID)((n, 2), noise=noise)
    prior = problem.prior.denoiser(schedule)
    # the other columns are posteria methods; each runs DDPM (its default) on GRID, like the column above
    x = solve(prior, problem.operator, problem.y, sampler, steps, n, generator, **GRID)
    return x[0].to(torch.float64)


def ddpm_covariance(cov: torch.Tensor, steps: int) -> torch.Tensor:
    """The covariance (D, D) of DDPM's output on :data:`GRID` with the exact denoiser of ``N(m, cov)``.

    The exact denoiser is affine, ``D(x_t) = m + K_t (x_t - alpha_t m)``,
    ``K_t = alpha_t cov (alpha_t^2 cov + sigma_t^2 I)^-1``, so a DDPM step
    ``x_s = w_x0 D + w_eps (x_t - alpha_t D) / sigma_t + c z`` is affine too, ``x_s = M_t x_t + b + c z``
    with ``M_t = w_x0 K_t + w_eps (I - alpha_t K_t) / sigma_t``, and the covariance propagates as
    ``P_s = M_t P_t M_t^T + c^2 I`` from ``P_1 = sigma_1^2 I``; the last step returns ``D``:
    ``P_0 = K P K^T``. It falls short of ``cov`` by O(1 / steps): each step draws from
    ``q(x_s | x_t, x0 = D(x_t))`` and so drops ``Var[x0 | x_t]`` (Ho et al. 2020).
    This is the floor the exact denoiser and MMPS are measured against.
    """
    cov = cov.to(torch.float64)  # the mean only shifts the chain, so a zero mean gives the same covariance
    eye = torch.eye(cov.shape[0], dtype=torch.float64)
    sampler = DDPM(GaussianPrior(torch.zeros(cov.shape[0]), cov).denoiser(VPLinear()), steps, **GRID)
    P = sampler.alpha_sigma(sampler.pairs[0][0])[1] ** 2 * eye
    for t, s in sampler.pairs:
        alpha, sigma = sampler.alpha_sigma(t)
        K = alpha * cov @ torch.linalg.inv(alpha**2 * cov + sigma**2 * eye)
        if s == 0:
            return K @ P @ K.T
        w_x0, w_eps, c = sampler.transition(t, s)
        M = w_x0 * K + w_eps * (eye - alpha * K) / sigma
        P = M @ P @ M.T + c**2 * eye
    raise AssertionError("a time grid ends at t = 0")


def summarise(problem: Problem, sampler: str, x: torch.Tensor, grid_cov: torch.Tensor) -> dict:
    """One row: sample variances along ``u = a / |a|`` (``Var[u^T x]``) and across (``Var[v^T x]``), the
    exact ``u^T Sigma_post u`` and ``v^T Sigma_post v``, their ratios, the ratio DDPM reaches on this grid
    with the exact denoiser (``grid_ratio_along``, 1 for exact samples), and the whitened error of the
    sample mean ``|L^-1 (xbar - mu_post)|``, ``L L^T = Sigma_post`` (about ``sqrt(2 / n)`` for exact ones)."""
    post, u, v = problem.posterior, problem.u, problem.v
    exact_along, exact_across = float(u @ post.cov @ u), float(v @ post.cov @ v)
    along, across = float((x @ u).var()), float((x @ v).var())
    grid_along = 1.0 if sampler == "exact" else float(u @ grid_cov @ u) / exact_along
    return {
        "sigma_y": problem.sigma_y,
        "sampler": sampler,
        "n": x.shape[0],
        "var_along_a": along,
        "var_across": across,
        "exact_var_along_a": exact_along,
        "exact_var_across": exact_across,
        "ratio_along": along / exact_along,
        "ratio_across": across / exact_across,
        "grid_ratio_along": grid_along,
        "mean_error": float(mean_error(x[None], post.mean, post.cov)[0]),
    }


def draw_panel(ax: plt.Axes, problem: Problem, x: torch.Tensor, background: torch.Tensor, lim: float) -> None:
    """Samples ``x`` over faint prior samples, with the measurement line ``a^T x = y`` (the points
    ``y a / |a|^2 + s v``), on equal axes ``[-lim, lim]^2``."""
    ax.scatter(*background.T.numpy(), s=1, c="0.85", rasterized=True)
    ax.scatter(*x.T.numpy(), s=1, c="C0", alpha=0.5, rasterized=True)
    foot = float(problem.y) * A_ROW / A_ROW.dot(A_ROW)
    line = foot[None] + torch.linspace(-3 * lim, 3 * lim, 2, dtype=torch.float64)[:, None] * problem.v
    ax.plot(*line.T.numpy(), c="C3", lw=0.8)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot(
    path: Path, panels: list[list[tuple[Problem, torch.Tensor, dict]]], background: torch.Tensor
) -> Path:
    """The grid: a row per noise level, a column per sampler; titles give the variance ratio along ``a``."""
    rows, cols = len(panels), len(panels[0])
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
    lim = 1.15 * float(background.abs().max())
    for r, row in enumerate(panels):
        for c, (problem, x, stats) in enumerate(row):
            ax = axes[r][c]
            draw_panel(ax, problem, x, background, lim)
            title = SAMPLERS[stats["sampler"]] + "\n" if r == 0 else ""
            ax.set_title(f"{title}var along a: {stats['ratio_along']:.3g} x exact", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"sigma_y = {problem.sigma_y:g}", fontsize=8)
    fig.suptitle("Figure 7.11: DPS loses the posterior variance along a (red: a^T x = y)", fontsize=9)
    return save_figure(fig, path)


def figure_7_11(
    out: Path, n: int = 2000, steps: int = 200, seed: int = 0, noise_levels: tuple[float, ...] = (1.0, 0.05)
) -> list[dict]:
    """Write ``out/figure_7_11.png`` (seed chapter, Figure 7.11) and return one row per noise level and
    sampler (see :func:`summarise`). ``n`` samples per panel, ``steps`` DDPM steps on :data:`GRID`; one
    generator seeded with ``seed`` draws ``x_true``, the measurement noise and every sampler's noise, in
    that order. Cost: about 30 s on one busy CPU thread with the defaults (DDPM's per-sample noise streams
    dominate)."""
    generator = torch.Generator().manual_seed(seed)
    prior = GaussianPrior(torch.zeros(2, dtype=torch.float64), SIGMA)
    x_true = prior.sample(1, generator)[0]
    z = float(torch.randn(1, generator=generator, dtype=torch.float64))
    background = prior.sample(2000, generator)
    rows, panels = [], []
    for sigma_y in noise_levels:
        problem = make_problem(float(sigma_y), x_true, z)
        grid_cov = ddpm_covariance(problem.posterior.cov, steps)
        panels.append([])
        for sampler in SAMPLERS:
            x = draw(problem, sampler, n, steps, generator)
            rows.append(summarise(problem, sampler, x, grid_cov))
            panels[-1].append((problem, x, rows[-1]))
    plot(Path(out) / "figure_7_11.png", panels, background)
    return rows
