"""Samples scored against the exact posterior of a digit mixture (``posteria.lab.scores``): the gaps of
exact draws, of the posterior mean, and of MMPS with and without ``renoise``."""

from __future__ import annotations

import pytest
import torch

from posteria.data import load_dataset
from posteria.lab import GaussianMixturePrior
from posteria.lab.fit import fit_class_mixture, prior_draws
from posteria.lab.scores import ExactReference, exact_reference, paired, variance_ratio
from posteria.noise import VPLinear
from posteria.operators import get_operator
from posteria.operators.noise_models import PoissonNoise
from posteria.posterior.base import solve_in_batches

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits() -> GaussianMixturePrior:
    """Ten rank-6 PCAs of the 8x8 digits (floors 0.035-0.073)."""
    return fit_class_mixture(*load_dataset("digits", "train"), rank=6)


def problem(prior: GaussianMixturePrior, task: str, count: int = 24) -> tuple:
    truth = prior_draws(prior, count, seed=0)  # streams apart from the operator's and the noise's
    operator = get_operator(task, (1, 8, 8), 0.05, gen(0))
    return truth, operator, operator.measure(truth, gen(1))


def test_paired_differences_give_their_mean_and_standard_error():
    assert paired("gap", torch.tensor([1.0, 2.0, 3.0])) == {"gap": 2.0, "gap_se": pytest.approx(1 / 3**0.5)}


def test_fresh_exact_draws_have_no_gap_and_the_exact_mean_sits_too_close_to_the_centre(digits):
    """Other exact draws than the reference's score the same within 4 standard errors on both scales,
    with the posterior's variance; the posterior mean has the gaps of a collapsed sampler (+ and -)."""
    truth, operator, y = problem(digits, "sr2")
    reference = exact_reference(digits, operator, y, truth, seed=2)
    fresh = reference.scores(reference.posterior.sample(16, gen(3)), truth)
    for name in ("psnr_gap", "nll_gap"):
        assert abs(fresh[name]) < 4 * fresh[f"{name}_se"], fresh
    assert fresh["variance_ratio"] == pytest.approx(1.0, abs=0.1)  # 24 x 16 draws: about 3% error
    collapsed = reference.gaps(reference.posterior.mean.reshape(truth.shape)[:, None], truth)
    assert collapsed["psnr_gap"] > 4 * collapsed["psnr_gap_se"]
    assert collapsed["nll_gap"] == pytest.approx(-0.5, abs=0.02)  # E[-log p] - min = D/2 in a Gaussian


def test_there_is_no_exact_reference_without_a_posterior_density(digits):
    truth, _, _ = problem(digits, "sr2", count=2)
    poisson = get_operator("sr2", (1, 8, 8), 0.0, noise=PoissonNoise(50.0))
    for operator in (get_operator("sr2", (1, 8, 8), 0.0), get_operator("phase", (1, 8, 8), 0.05), poisson):
        assert exact_reference(digits, operator, operator.measure(truth, gen(0)), truth, seed=0) is None


@pytest.mark.parametrize("task", ["sr2", "inpaint-box"])
def test_renoising_mmps_collapses_it_towards_the_posterior_mean(digits, task):
    """``renoise = 1`` wins PSNR by losing spread: against the exact posterior it keeps 0.46-0.48 of the
    variance (default MMPS: 1.09-1.17; measured), sits 0.12-0.20 nats per pixel nearer the mode and
    scores 1.0-1.4 dB more PSNR than the default."""
    truth, operator, y = problem(digits, task)
    reference = ExactReference.draw(digits.posterior(operator, y), truth, seed=2)
    scores = {}
    for renoise in (0.0, 1.0):
        run = solve_in_batches(
            digits.denoiser(VPLinear()), operator, y, "mmps", 100, 4, gen(3), renoise=renoise
        )
        scores[renoise] = reference.scores(run.samples, truth)
    default, renoised = scores[0.0], scores[1.0]
    assert renoised["variance_ratio"] < 0.7 < 0.95 < default["variance_ratio"]
    assert renoised["nll_gap"] < default["nll_gap"] - 0.08
    assert renoised["psnr_gap"] > default["psnr_gap"] + 0.5


def test_the_variance_ratio_of_scaled_exact_draws_is_the_scale_squared(digits):
    truth, operator, y = problem(digits, "sr2", count=4)
    posterior = digits.posterior(operator, y)
    draws = posterior.sample(4000, gen(5))
    centre = posterior.mean.reshape(4, 1, *truth.shape[1:])
    assert torch.allclose(
        variance_ratio(posterior, centre + 0.5 * (draws - centre)),
        torch.full((4,), 0.25, dtype=torch.float64),
        rtol=0.06,
    )


def test_the_posterior_variance_is_the_diagonal_of_its_covariance(digits):
    _, _, y = problem(digits, "inpaint-box", count=3)
    posterior = digits.posterior(get_operator("inpaint-box", (1, 8, 8), 0.05, gen(0)), y)
    diagonal = torch.diagonal(posterior.covariance(), dim1=-2, dim2=-1)
    assert torch.allclose(posterior.variance(), diagonal, rtol=1e-12, atol=1e-15)


def test_the_variance_ratio_uses_unbiased_variances(digits):
    """Pairs of exact draws (n = 2, where a biased variance would halve the ratio) over 400 measurements."""
    truth, operator, y = problem(digits, "sr2", count=400)
    posterior = digits.posterior(operator, y)
    assert float(variance_ratio(posterior, posterior.sample(2, gen(6))).mean()) == pytest.approx(
        1.0, abs=0.06
    )
