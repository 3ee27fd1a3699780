"""Mixture priors fitted to data (one probabilistic PCA per class), and exact posteriors of complex
(k-space) operators as real pairs."""

from __future__ import annotations

import pytest
import torch

from posteria.data import load_dataset
from posteria.errors import PosteriaError
from posteria.lab import GaussianPrior
from posteria.lab.fit import fit_class_mixture, mnist_mixture, ppca, prior_draws
from posteria.operators import get_operator
from posteria.random import derived_seed

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def test_ppca_recovers_a_ppca_law_and_its_floor_is_the_mean_of_the_discarded_eigenvalues():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(12, 3, generator=g, dtype=F64)
    x = 0.5 + torch.randn(40_000, 3, generator=g, dtype=F64) @ W.T
    x += 0.3 * torch.randn(40_000, 12, generator=g, dtype=F64)
    mean, factor, floor = ppca(x, 3)
    cov = factor @ factor.T + floor * torch.eye(12, dtype=F64)
    truth = W @ W.T + 0.09 * torch.eye(12, dtype=F64)
    # sampling error of a covariance from 40,000 draws: about 1% of its largest entries here
    assert torch.allclose(cov, truth, atol=0.05 * truth.diagonal().max())
    assert torch.allclose(mean, torch.full((12,), 0.5, dtype=F64), atol=0.05)
    lam = torch.linalg.eigvalsh(torch.cov((x - mean).T)).flip(0)
    assert float(floor) == pytest.approx(float(lam[3:].mean()), rel=1e-9)
    # the fitted covariance keeps the top eigenvalues exactly: W W^T + floor has eigenvalues lam_1..3
    assert torch.allclose(torch.linalg.eigvalsh(cov).flip(0)[:3], lam[:3], rtol=1e-9)


def test_a_class_mixture_has_one_component_per_label_with_its_mean_and_frequency():
    x, labels = load_dataset("digits", "train")
    prior = fit_class_mixture(x, labels, rank=6)
    classes = labels.unique()
    assert prior.n_components == len(classes) and prior.event_shape == tuple(x.shape[1:])
    for k, c in enumerate(classes):
        assert torch.allclose(prior.means[k], x[labels == c].flatten(1).double().mean(0), atol=1e-9)
        assert float(prior.weights[k]) == pytest.approx(float((labels == c).double().mean()), rel=1e-9)
    assert prior.sample(3, torch.Generator().manual_seed(0)).shape == (3, *x.shape[1:])


def test_prior_draws_have_streams_of_their_own():
    """Draw i is the same whatever the count, and shares no numbers with ``Generator(seed)`` (which seeds
    the operator) or with the streams of the run's noise and sampler."""
    x, labels = load_dataset("digits", "train")
    prior = fit_class_mixture(x, labels, rank=6)
    three = prior_draws(prior, 3, seed=0)
    assert torch.equal(prior_draws(prior, 1, seed=0)[0], three[0])
    assert not torch.equal(three[:1], prior.sample(1, torch.Generator().manual_seed(0)))
    seeds = {derived_seed(0, "truth"), derived_seed(0, "exact posterior"), derived_seed(1, "truth"), 0, 1}
    assert len(seeds) == 5 and all(0 <= s < 2**62 for s in seeds)


def test_the_mnist_mixture_is_ten_digit_components_of_28_by_28():
    prior = mnist_mixture(rank=20)
    assert prior.n_components == 10 and prior.event_shape == (1, 28, 28) and prior.form == "low_rank"


@pytest.mark.parametrize(
    "rank, labels, match",
    [(0, None, "rank must be a positive integer"), (64, None, "rank must be in"), (4, 3, "labels must be")],
)
def test_bad_fits_raise_one_line(rank, labels, match):
    x, y = load_dataset("digits", "train")
    with pytest.raises(PosteriaError, match=match):
        fit_class_mixture(x, y[:labels] if labels else y, rank)


def test_the_exact_posterior_of_k_space_measurements_solves_the_normal_equations():
    """Complex measurements are real pairs, each part with noise sigma_y: the posterior mean of a
    Gaussian prior solves ``(Sigma^-1 + A^T A / s^2) mu = Sigma^-1 m + A^T y / s^2``, where ``A^T y`` is
    the operator's own adjoint ``Re(A^H y)`` (not the dense matrix the posterior is built from)."""
    g = torch.Generator().manual_seed(0)
    L = torch.randn(64, 64, generator=g, dtype=F64) / 8
    Sigma = L @ L.T + 0.01 * torch.eye(64, dtype=F64)
    m = torch.randn(64, generator=g, dtype=F64) / 4
    prior = GaussianPrior(m.reshape(1, 8, 8), Sigma)
    op = get_operator("mri4", (1, 8, 8), 0.1, torch.Generator().manual_seed(0))
    y = op.measure(prior.sample(2, g), g)
    assert y.is_complex()
    post = prior.posterior(op, y)
    precision = torch.linalg.inv(Sigma)
    AtA = torch.stack(
        [op.adjoint(op(e.reshape(1, 1, 8, 8)))[0].reshape(-1) for e in torch.eye(64, dtype=F64)]
    )
    lhs = post.mean @ (precision + AtA / 0.01)
    rhs = m @ precision + op.adjoint(y).reshape(2, -1) / 0.01
    assert torch.allclose(lhs, rhs, rtol=1e-8, atol=1e-8)
