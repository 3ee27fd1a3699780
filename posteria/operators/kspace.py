"""Boolean k-space sampling masks for MRI, in the centred (display) layout: DC at ``(H // 2, W // 2)``."""

from __future__ import annotations

import math

import torch

from posteria.errors import PosteriaError, check_count, check_positive


def _grid(H: int, W: int) -> torch.Tensor:
    return torch.zeros(H, W, dtype=torch.bool)


def _rasterise(mask: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Set the nearest pixels of the points ``(i, j)`` (centred coordinates) that fall inside the grid."""
    H, W = mask.shape
    ii, jj = torch.round(i + H // 2).long(), torch.round(j + W // 2).long()
    inside = (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
    mask[ii[inside], jj[inside]] = True
    mask[H // 2, W // 2] = True  # always measure the mean
    return mask


def cartesian_mask(
    H: int,
    W: int,
    acceleration: float,
    center_fraction: float = 0.08,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep whole columns (phase-encoding lines): ``round(W center_fraction)`` central ones (at least 1)
    and random others, ``max(n_center, round(W / acceleration))`` in all. Reference: fastMRI's
    ``RandomMaskFunc`` (Zbontar et al., 2018), with an exact line count.
    """
    check_positive("acceleration", acceleration)
    if not 0 <= center_fraction <= 1:
        raise PosteriaError(f"center_fraction must lie in [0, 1], got {center_fraction!r}")
    n_center = max(1, round(W * center_fraction))
    n_total = min(W, max(n_center, round(W / acceleration)))
    start = W // 2 - n_center // 2
    lines = torch.zeros(W, dtype=torch.bool)
    lines[start : start + n_center] = True
    others = torch.nonzero(~lines).flatten()
    lines[others[torch.randperm(others.numel(), generator=generator)[: n_total - n_center]]] = True
    return lines.expand(H, W).clone()


def radial_mask(H: int, W: int, n_spokes: int) -> torch.Tensor:
    """``n_spokes`` lines through the centre at angles ``pi i / n_spokes``, rasterised to nearest pixels."""
    n_spokes = check_count("n_spokes", n_spokes)
    R = max(H, W)
    t = torch.arange(-2 * R, 2 * R + 1, dtype=torch.float64) / 2
    theta = math.pi * torch.arange(n_spokes, dtype=torch.float64) / n_spokes
    i, j = t[None] * torch.sin(theta)[:, None], t[None] * torch.cos(theta)[:, None]
    return _rasterise(_grid(H, W), i.flatten(), j.flatten())


def spiral_mask(H: int, W: int, turns: float = 6.0) -> torch.Tensor:
    """An Archimedean spiral ``r = R theta / (2 pi turns)`` to the corners, rasterised to pixels."""
    check_positive("turns", turns)
    R = math.hypot(H, W) / 2
    theta = torch.linspace(0, 2 * math.pi * turns, int(16 * R * turns) + 2, dtype=torch.float64)
    r = R * theta / theta[-1]
    return _rasterise(_grid(H, W), r * torch.sin(theta), r * torch.cos(theta))


def random_mask(H: int, W: int, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``round(fraction H W)`` frequencies drawn uniformly, plus the DC term."""
    check_positive("fraction", fraction)
    if fraction > 1:
        raise PosteriaError(f"fraction must lie in (0, 1], got {fraction!r}")
    mask = _grid(H, W).flatten()
    mask[torch.randperm(H * W, generator=generator)[: round(fraction * H * W)]] = True
    mask = mask.reshape(H, W)
    mask[H // 2, W // 2] = True
    return mask
