"""What a correct sampler scores: samples of an inverse problem compared with draws of its exact posterior
(``posteria bench restore --prior mnist-mixture``, ``posteria solve --prior mnist-mixture``).

Samples are compared per measurement with exact posterior draws on two scales whose gaps have opposite
meanings at their extremes: PSNR against the truth rewards sitting near the posterior mean (the exact
mean beats every draw), while the negative log posterior density ``-log p(x | y)`` per pixel penalises
samples the posterior finds implausible. A correct sampler has both gaps at 0 within their standard
errors. Too little spread shows as a positive PSNR gap and a negative NLL gap (the posterior mean
itself: -1/2 per pixel); the NLL gap averages ``(var_j / lam_j - 1) / 2`` over all D eigen-directions of
the posterior, so it weighs the many fine directions, where ``variance_ratio`` (a trace) weighs the few
large ones. Samples off the posterior show a positive NLL gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from posteria.lab.mixture import GaussianMixturePosterior
from posteria.lab.priors import GaussianMixturePrior
from posteria.metrics.image import psnr
from posteria.operators.base import LinearOperator, Operator
from posteria.operators.noise_models import GaussianNoise
from posteria.random import derived_seed

#: Exact posterior draws per measurement behind every gap.
EXACT_DRAWS = 16

#: What ``posteria solve`` reports where an exact prior's posterior has no density to score with.
NO_EXACT_POSTERIOR = "none: needs a linear operator with Gaussian noise and sigma_y > 0"


def sample_psnr(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR of each of samples (B, n, *event) against its truth (B, *event): (B, n)."""
    n = samples.shape[1]
    return psnr(samples.flatten(0, 1), truth.repeat_interleave(n, dim=0)).reshape(-1, n)


def nll_per_pixel(posterior: GaussianMixturePosterior, samples: torch.Tensor) -> torch.Tensor:
    """``-log p(x | y_i) / D`` of samples (B, n, *event) under their measurement's posterior: (B, n)."""
    return -posterior.log_prob(samples.to(torch.float64)) / samples[0, 0].numel()


def variance_ratio(posterior: GaussianMixturePosterior, samples: torch.Tensor) -> torch.Tensor:
    """``tr Cov[samples] / tr Cov[x | y_i]`` per measurement (B,), from n >= 2 samples (B, n, *event):
    1 for a correct sampler, below 1 for one that under-disperses (unbiased sample variances)."""
    spread = samples.flatten(2).to(torch.float64).var(1).sum(-1)
    return spread / posterior.variance().sum(-1)


def paired(name: str, differences: torch.Tensor) -> dict[str, float]:
    """``name``: the mean of per-measurement differences (B,), and ``name_se`` its standard error (NaN
    for a single measurement)."""
    se = float(differences.std() / differences.numel() ** 0.5) if differences.numel() > 1 else float("nan")
    return {name: float(differences.mean()), f"{name}_se": se}


@dataclass(frozen=True)
class ExactReference:
    """The exact posterior of B measurements, its ``draws`` (B, EXACT_DRAWS, *event), and what they score
    per measurement: mean ``-log p(x | y)`` per pixel (``draw_nll``, (B,)) and, when the truth is known,
    mean PSNR (``draw_psnr``, (B,))."""

    posterior: GaussianMixturePosterior
    draws: torch.Tensor
    draw_nll: torch.Tensor
    draw_psnr: torch.Tensor | None

    @classmethod
    def draw(
        cls, posterior: GaussianMixturePosterior, truth: torch.Tensor | None, seed: int
    ) -> ExactReference:
        """:data:`EXACT_DRAWS` exact draws per measurement (generator seeded with ``seed``), scored."""
        draws = posterior.sample(EXACT_DRAWS, torch.Generator().manual_seed(seed))
        draw_psnr = None if truth is None else sample_psnr(draws, truth).mean(1)
        return cls(posterior, draws, nll_per_pixel(posterior, draws).mean(1), draw_psnr)

    def gaps(self, samples: torch.Tensor, truth: torch.Tensor | None = None) -> dict[str, float]:
        """``nll_gap`` and, with the truth, ``psnr_gap`` (each with ``_se``) of samples (B, n, *event): per
        measurement the mean over its n samples less the exact draws', averaged over measurements. Paired,
        so the spread between measurements cancels."""
        out = paired("nll_gap", nll_per_pixel(self.posterior, samples).mean(1) - self.draw_nll)
        if truth is None or self.draw_psnr is None:
            return out
        return paired("psnr_gap", sample_psnr(samples, truth).mean(1) - self.draw_psnr) | out

    def scores(self, samples: torch.Tensor, truth: torch.Tensor | None = None) -> dict[str, float]:
        """:meth:`gaps`, and what the exact posterior scores itself: ``exact_psnr_sample`` and
        ``exact_psnr_mean`` (with the truth); with n >= 2 samples, their :func:`variance_ratio`."""
        out = self.gaps(samples, truth)
        if truth is not None and self.draw_psnr is not None:
            mean = self.posterior.mean.reshape(truth.shape)
            out["exact_psnr_sample"] = float(self.draw_psnr.mean())
            out["exact_psnr_mean"] = float(psnr(mean, truth).mean())
        if samples.shape[1] > 1:
            out["variance_ratio"] = float(variance_ratio(self.posterior, samples).mean())
        return out


def exact_reference(
    prior: GaussianMixturePrior, operator: Operator, y: torch.Tensor, truth: torch.Tensor | None, seed: int
) -> ExactReference | None:
    """The exact posterior of measurements ``y`` under ``prior``, drawn and scored; None where it has no
    density to score with: a nonlinear operator, non-Gaussian noise or ``sigma_y = 0``. The draws come
    from ``derived_seed(seed, "exact posterior")``, apart from the run's other random numbers."""
    gaussian = isinstance(operator.noise, GaussianNoise) and operator.sigma_y > 0
    if not (isinstance(operator, LinearOperator) and operator.linear and gaussian):
        return None
    return ExactReference.draw(prior.posterior(operator, y), truth, derived_seed(seed, "exact posterior"))
