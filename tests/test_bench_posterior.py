"""``posteria bench posterior`` on a tiny grid: the floor, every method scored, the best per budget."""

from __future__ import annotations

import math

import pytest

from posteria.bench.posterior import PosteriorBench, best_per_budget, plot_posterior, run_posterior

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    spec = PosteriorBench(dims=(4,), measurements=(1,), noise=(0.01,), budgets=(5, 50), n=400,
                          methods=("mmps", "dps", "tikhonov"))  # fmt: skip
    return run_posterior(spec, progress=False)


def test_every_method_and_budget_is_scored_next_to_the_exact_floor(rows):
    assert [(r["method"], r["nfe"]) for r in rows] == [
        ("exact", 0), ("dps", 5), ("dps", 50), ("mmps", 5), ("mmps", 50), ("tikhonov", 0)
    ]  # fmt: skip
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("sw", "w2", "mean_err", "cov_err", "cov90"))
    exact = rows[0]
    assert 0.5 < exact["sw_over_floor"] < 2 and abs(exact["cov90"] - 0.9) < 0.05


def test_the_scores_separate_good_samplers_from_point_estimates(rows):
    """Measured (D = 4, m = 1, sigma_y = 0.01, n = 400): MMPS-50 1.6x the floor with the posterior mean
    within 0.14 posterior sds; a point estimate (Tikhonov) 7.8x, covering none of any interval."""
    by = {(r["method"], r["nfe"]): r for r in rows}
    assert by[("mmps", 50)]["sw_over_floor"] < 2.5 and by[("mmps", 50)]["mean_err"] < 0.4
    assert by[("tikhonov", 0)]["sw_over_floor"] > 5 and by[("tikhonov", 0)]["cov90"] == 0
    assert by[("mmps", 50)]["sw"] < by[("mmps", 5)]["sw"]


def test_best_per_budget_and_the_figure(rows, tmp_path):
    best = best_per_budget(rows)
    assert [b["budget"] for b in best] == [5, 50]
    assert all(b["nfe"] <= b["budget"] for b in best)
    assert best[1]["sw_over_floor"] == min(r["sw_over_floor"] for r in rows if r["method"] != "exact")
    assert plot_posterior(rows, tmp_path / "posterior.png").stat().st_size > 1000
