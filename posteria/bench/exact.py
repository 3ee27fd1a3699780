"""What a correct sampler scores: the exact posterior of an exact prior as the reference of the restore
bench (``posteria bench restore --prior mnist-mixture``).

Every run's samples are compared per measurement with exact posterior draws, on two scales whose gaps
have opposite meanings at their extremes: PSNR against the truth rewards sitting near the posterior mean
(the exact mean beats every draw), while the negative log posterior density ``-log p(x | y)`` per pixel
penalises samples the posterior finds implausible. A correct sampler has both gaps at 0 within their
standard errors; one that collapses towards the mean shows a positive PSNR gap and a negative NLL gap,
one that leaves the posterior a positive NLL gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from posteria.lab.mixture import GaussianMixturePosterior
from posteria.metrics.image import psnr

#: Exact posterior draws per measurement behind the ``exact posterior`` row and every gap.
EXACT_DRAWS = 16


def sample_psnr(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR of each of samples (B, n, *event) against its truth (B, *event): (B, n)."""
    n = samples.shape[1]
    return psnr(samples.flatten(0, 1), truth.repeat_interleave(n, dim=0)).reshape(-1, n)


def paired(name: str, differences: torch.Tensor) -> dict[str, float]:
    """``name``: the mean of per-measurement differences (B,), and ``name_se`` its standard error."""
    se = float(differences.std() / differences.numel() ** 0.5) if differences.numel() > 1 else float("nan")
    return {name: float(differences.mean()), f"{name}_se": se}


@dataclass(frozen=True)
class ExactReference:
    """The exact posterior of a task's B measurements, its ``draws`` (B, EXACT_DRAWS, *event), and what
    they score per measurement: mean PSNR (B,) and mean ``-log p(x | y)`` per pixel (B,)."""

    posterior: GaussianMixturePosterior
    draws: torch.Tensor
    psnr: torch.Tensor
    nll: torch.Tensor

    @classmethod
    def draw(cls, posterior: GaussianMixturePosterior, truth: torch.Tensor, seed: int) -> ExactReference:
        """:data:`EXACT_DRAWS` exact draws per measurement (generator seeded with ``seed``), scored."""
        draws = posterior.sample(EXACT_DRAWS, torch.Generator().manual_seed(seed))
        nll = nll_per_pixel(posterior, draws).mean(1)
        return cls(posterior, draws, sample_psnr(draws, truth).mean(1), nll)

    def gaps(self, samples: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
        """``psnr_gap`` and ``nll_gap`` (each with ``_se``) of samples (B, n, *event): per measurement the
        mean over its n samples less the exact draws', then averaged over measurements. Paired, so the
        spread between digits cancels."""
        psnr_gap = sample_psnr(samples, truth).mean(1) - self.psnr
        nll_gap = nll_per_pixel(self.posterior, samples).mean(1) - self.nll
        return paired("psnr_gap", psnr_gap) | paired("nll_gap", nll_gap)


def nll_per_pixel(posterior: GaussianMixturePosterior, samples: torch.Tensor) -> torch.Tensor:
    """``-log p(x | y_i) / D`` of samples (B, n, *event) under their measurement's posterior: (B, n)."""
    return -posterior.log_prob(samples.to(torch.float64)) / samples[0, 0].numel()
