"""``posteria bench posterior``: how far each method's samples are from the exact posterior.

Over a grid of dimension ``D``, measurements ``m`` and noise ``sigma_y``, the prior is the seed chapter's
union of ``K`` random ``P``-dimensional subspaces (a low-rank Gaussian mixture with a small isotropic
floor), ``A`` is an ``(m, D)`` Gaussian matrix with rows of unit expected norm, and ``y = A x + w`` for
``x`` drawn from the prior. Every method of ``posteria.methods()`` that serves the operator runs on the
exact prior denoiser at each NFE budget; its samples are scored against the exact posterior (sliced and
Gaussian Wasserstein, mean and covariance error, coverage of credible intervals) next to the
Monte-Carlo floor: the same scores of exact samples against exact samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from posteria.lab import GaussianMixturePrior, monte_carlo_floor, summary
from posteria.noise import VPLinear
from posteria.operators import MatrixOperator
from posteria.posterior import METHODS, supported
from posteria.posterior.base import solve_in_batches
from posteria.report.figures import plt, save_figure


@dataclass
class PosteriorBench:
    """The grid (``dims`` x ``measurements`` x ``noise``), the NFE ``budgets``, and per setting ``batch``
    measurements with ``n`` samples each from a mixture of ``components`` subspaces of dimension
    ``rank`` (variance ``floor`` off them)."""

    dims: tuple[int, ...] = (8, 80, 800)
    measurements: tuple[int, ...] = (1, 4)
    noise: tuple[float, ...] = (0.1, 0.01)
    budgets: tuple[int, ...] = (10, 100, 1000)
    methods: tuple[str, ...] | None = None
    components: int = 4
    rank: int = 2
    floor: float = 0.01
    batch: int = 2
    n: int = 500
    seed: int = 0


@dataclass
class Problem:
    """One setting: the prior, the operator, the measurements and their exact posterior."""

    D: int
    m: int
    sigma_y: float
    prior: GaussianMixturePrior
    operator: MatrixOperator
    y: torch.Tensor
    posterior: object

    @classmethod
    def draw(cls, D: int, m: int, sigma_y: float, spec: PosteriorBench) -> Problem:
        g = torch.Generator().manual_seed(spec.seed + 7919 * D + 31 * m)
        prior = GaussianMixturePrior.subspaces(D, spec.components, spec.rank, g, floor=spec.floor)
        A = torch.randn(m, D, generator=g, dtype=torch.float64) / math.sqrt(D)
        operator = MatrixOperator(A, sigma_y=sigma_y)
        y = operator.measure(prior.sample(spec.batch, g), g)
        return cls(D, m, sigma_y, prior, operator, y, prior.posterior(operator, y))

    def setting(self) -> dict[str, object]:
        return {"D": self.D, "m": self.m, "sigma_y": self.sigma_y}


def runs(problem: Problem, spec: PosteriorBench) -> list[tuple[str, int]]:
    """(method, steps) for every method serving the problem: samplers at each budget, point estimates
    once at their default steps."""
    names = [m for m in supported(problem.operator) if spec.methods is None or m in spec.methods]
    out = []
    for name in names:
        budgets = [METHODS[name].default_steps] if METHODS[name].point else spec.budgets
        out += [(name, steps) for steps in budgets]
    return out


def score(problem: Problem, x: torch.Tensor, spec: PosteriorBench, floor: dict) -> dict[str, float]:
    """:func:`~posteria.lab.summary` of samples (B, n, D) against the exact posterior and a fixed set of
    exact reference samples, with ``sw_over_floor``."""
    post = problem.posterior
    reference = post.sample(spec.n, torch.Generator().manual_seed(spec.seed + 1))
    scores = summary(x.double(), post.mean, post.covariance(), reference, post.marginal_cdf, seed=spec.seed)
    return scores | {"sw_over_floor": scores["sw"] / floor["sw"]}


def score_run(problem: Problem, name: str, steps: int, spec: PosteriorBench, floor: dict) -> dict:
    """Sample ``n`` per measurement with ``name`` at ``steps`` on the exact prior denoiser; score it."""
    denoiser = problem.prior.denoiser(VPLinear())
    generator = torch.Generator().manual_seed(spec.seed)
    run = solve_in_batches(denoiser, problem.operator, problem.y, name, steps, spec.n, generator)
    scores = score(problem, run.samples, spec, floor)
    return {**problem.setting(), "method": name, "nfe": run.runners[0].nfe, **scores, "seconds": run.seconds}


def exact_row(problem: Problem, spec: PosteriorBench) -> tuple[dict, dict]:
    """The Monte-Carlo floor of the setting (exact against exact samples, averaged over 4 draws) and
    the row of one exact draw scored like every method (method ``exact``)."""
    post = problem.posterior
    floor = monte_carlo_floor(post.sample, spec.n, post.mean, post.covariance(), seed=spec.seed + 2)
    x = post.sample(spec.n, torch.Generator().manual_seed(spec.seed + 3))
    return {**problem.setting(), "method": "exact", "nfe": 0, **score(problem, x, spec, floor)}, floor


def run_posterior(spec: PosteriorBench, progress: bool = True) -> list[dict]:
    """Every row of the benchmark: per setting, the floor and every (method, budget)."""
    rows = []
    grid = [(D, m, s) for D in spec.dims for m in spec.measurements for s in spec.noise]
    for D, m, sigma_y in tqdm(grid, desc="settings", disable=not progress):
        problem = Problem.draw(D, m, sigma_y, spec)
        row, floor = exact_row(problem, spec)
        rows.append(row)
        for name, steps in tqdm(runs(problem, spec), desc=f"D={D} m={m}", leave=False, disable=not progress):
            rows.append(score_run(problem, name, steps, spec, floor))
    return rows


def best_per_budget(rows: list[dict]) -> list[dict]:
    """Per setting and budget: the method with the smallest ``sw_over_floor`` at NFE <= the budget."""
    out = []
    settings = dict.fromkeys((r["D"], r["m"], r["sigma_y"]) for r in rows)
    budgets = sorted({r["nfe"] for r in rows if r["method"] != "exact" and r["nfe"] > 0})
    for D, m, s in settings:
        mine = [r for r in rows if (r["D"], r["m"], r["sigma_y"]) == (D, m, s) and r["method"] != "exact"]
        for budget in budgets:
            within = [r for r in mine if r["nfe"] <= budget]
            if within:
                best = min(within, key=lambda r: r["sw_over_floor"])
                out.append({"D": D, "m": m, "sigma_y": s, "budget": budget, "best": best["method"],
                            "nfe": best["nfe"], "sw_over_floor": best["sw_over_floor"]})  # fmt: skip
    return out


def plot_posterior(rows: list[dict], path: Path) -> Path:
    """Sliced Wasserstein over its floor against NFE, one panel per setting, a line per method; the
    dashed line is the goal (2x the floor)."""
    settings = list(dict.fromkeys((r["D"], r["m"], r["sigma_y"]) for r in rows))
    cols = min(4, len(settings))
    rows_n = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.3 * cols, 3.0 * rows_n), squeeze=False)
    for ax, (D, m, s) in zip(axes.flat, settings, strict=False):
        mine = [r for r in rows if (r["D"], r["m"], r["sigma_y"]) == (D, m, s) and r["method"] != "exact"]
        for i, name in enumerate(dict.fromkeys(r["method"] for r in mine)):
            pts = sorted((max(r["nfe"], 1), r["sw_over_floor"]) for r in mine if r["method"] == name)
            # more methods than the 10 default colours: cycle the line style too, so no two look alike
            style = {"color": f"C{i % 10}", "ls": ("-", "--", ":")[i // 10 % 3], "marker": "os^"[i // 10 % 3]}
            ax.plot(*zip(*pts, strict=True), ms=3, label=name, **style)
        ax.axhline(2.0, ls="--", c="k", lw=0.8)
        ax.set(xscale="log", yscale="log", title=f"D={D} m={m} sigma_y={s:g}", xlabel="NFE")
    axes.flat[0].set_ylabel("sliced W / floor")
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    return save_figure(fig, path)
