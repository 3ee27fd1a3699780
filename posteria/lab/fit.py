"""Gaussian mixtures fitted to data: exact priors that look like the data (one probabilistic PCA per class).

A mixture fitted to MNIST has an exact denoiser and an exact posterior for every linear operator, so the
restoration tasks of the neural prior can be run where the right answer is known: draws from the
mixture are the truth, and the exact posterior's samples show what a correct sampler scores
(``posteria bench restore --prior mnist-mixture``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from posteria.data import load_dataset
from posteria.denoisers.base import Denoiser
from posteria.denoisers.mixture import GaussianMixtureDenoiser
from posteria.errors import PosteriaError, check_count
from posteria.lab.priors import GaussianMixturePrior, LowRank
from posteria.noise import VPLinear
from posteria.priors import load_prior
from posteria.random import PerSampleNoise, derived_seed

#: The rank of each class's principal subspace in the named mixture priors: enough for the
#: reconstructions of the restoration tasks to look like digits (floors of 0.001-0.012, a pixel noise
#: of 0.04-0.11 on [-1, 1]), and cheap: a denoiser call costs O(B K D rank).
MIXTURE_RANK = 150


def ppca(x: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The maximum-likelihood probabilistic PCA of rows ``x`` (N, D): ``N(mean, W W^T + floor I)``.

    ``W = Q_r (lam_r - floor)^{1/2}`` from the top ``rank`` eigenpairs of the sample covariance (divided
    by N - 1, where the maximum-likelihood one divides by N: a factor 1 + 1/N, 0.1% for a digit class), and
    ``floor`` the mean of the other ``D - rank`` eigenvalues (Tipping and Bishop, 1999, eq. 7-8), floored
    at 1e-6 so the component stays non-singular. Returns ``(mean (D,), W (D, rank), floor ())``, float64.
    """
    N, D = x.shape
    if not 1 <= rank < D or N < 2:
        raise PosteriaError(f"rank must be in [1, {D - 1}] with at least 2 rows, got rank {rank}, {N} rows")
    x = x.to(torch.float64)
    mean = x.mean(0)
    lam, Q = torch.linalg.eigh(torch.cov((x - mean).T))
    lam, Q = lam.flip(0).clamp_min(0), Q.flip(1)
    floor = lam[rank:].mean().clamp_min(1e-6)
    return mean, Q[:, :rank] * (lam[:rank] - floor).clamp_min(0).sqrt(), floor


def fit_class_mixture(x: torch.Tensor, labels: torch.Tensor, rank: int) -> GaussianMixturePrior:
    """One :func:`ppca` component per label of ``x`` (N, *event), weighted by the labels' frequencies."""
    check_count("rank", rank)
    classes = labels.unique()
    if classes.numel() < 1 or labels.shape != x.shape[:1]:
        raise PosteriaError(
            f"labels must be ({x.shape[0]},) with one class at least, got {tuple(labels.shape)}"
        )
    fits = [ppca(x[labels == k].flatten(1), rank) for k in classes]
    means, factors, floors = (torch.stack(part) for part in zip(*fits, strict=True))
    weights = torch.stack([(labels == k).sum() for k in classes]).to(torch.float64)
    return GaussianMixturePrior(means, LowRank(factors, floors), weights, tuple(x.shape[1:]))


def mnist_mixture(rank: int = MIXTURE_RANK) -> GaussianMixturePrior:
    """Ten probabilistic PCAs, one per digit, fitted to the bundled MNIST training split in model space."""
    x, labels = load_dataset("mnist", "train")
    return fit_class_mixture(x, labels, rank)


#: Exact priors by name: ``posteria bench restore --prior NAME`` and ``posteria solve --prior NAME``
#: restore their own draws and score the samples against their exact posterior.
EXACT_PRIORS: dict[str, Callable[[], GaussianMixturePrior]] = {"mnist-mixture": mnist_mixture}


def prior_draws(prior: GaussianMixturePrior, count: int, seed: int) -> torch.Tensor:
    """``count`` draws of an exact prior to restore (count, *event), float64: draw ``i`` from its own
    stream under ``derived_seed(seed, "truth")``, so it is the same whatever ``count``, and shares no
    random numbers with the operator, the measurement noise or the sampler of a run with ``seed``."""
    streams = PerSampleNoise(derived_seed(seed, "truth"), check_count("count", count)).generators
    return torch.cat([prior.sample(1, g) for g in streams])


def exact_denoiser(prior: GaussianMixturePrior) -> GaussianMixtureDenoiser:
    """The exact ``E[x | x_t]`` of ``prior`` on the shipped prior's VP schedule, so that every sampler
    takes the same time grid as on the network (float64)."""
    return prior.denoiser(VPLinear())


def restoration_prior(name: str) -> tuple[Denoiser, GaussianMixturePrior | None]:
    """What ``--prior name`` means to ``posteria solve`` and ``posteria bench restore``: an exact prior's
    denoiser (float64) and the prior itself, or a shipped or saved trained prior and None."""
    if name in EXACT_PRIORS:
        exact = EXACT_PRIORS[name]()
        return exact_denoiser(exact), exact
    try:
        return load_prior(name), None
    except PosteriaError as error:
        raise PosteriaError(f"{error}, or an exact prior ({', '.join(EXACT_PRIORS)})") from None
