"""Two-dimensional toy distributions, each ``f(n, generator=None) -> Tensor (n, 2)`` of float32.

All are centred and scaled to lie roughly in [-2, 2]^2 with per-coordinate spread of order one, the
range diffusion schedules are tuned for.
"""

from __future__ import annotations

import math

import torch

from posteria.data.mixture import GaussianMixture, check_count, isotropic_mixture


def ring_of_gaussians(modes: int = 8, radius: float = 1.5, std: float = 0.15) -> GaussianMixture:
    """The mixture behind ``gaussian_mixture_2d``: ``modes`` equal-weight ``N(m_k, std^2 I)`` on a circle.

    Mode k sits at angle ``2 pi k / modes``: ``m_k = radius (cos, sin)``. Use it as the exact prior in
    tests (mode recovery, exact denoisers and posteriors).
    """
    check_count("modes", modes)
    angles = 2 * math.pi * torch.arange(modes, dtype=torch.float64) / modes
    return isotropic_mixture(radius * torch.stack([angles.cos(), angles.sin()], dim=1), std)


def gaussian_mixture_2d(
    n: int, generator: torch.Generator | None = None, modes: int = 8, radius: float = 1.5, std: float = 0.15
) -> torch.Tensor:
    """``n`` samples (n, 2) of ``ring_of_gaussians(modes, radius, std)``: 8 Gaussians on a circle."""
    return ring_of_gaussians(modes, radius, std).sample(n, generator)


def two_moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """Two interleaved half circles (as scikit-learn's ``make_moons``), centred, plus ``noise`` jitter.

    Each sample picks a moon with probability 1/2 and an angle uniform in [0, pi].
    """
    check_count("n", n)
    upper = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
    t = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    x = torch.where(upper, t.cos(), 1.0 - t.cos()) - 0.5
    y = torch.where(upper, t.sin(), 0.5 - t.sin()) - 0.25
    jitter = noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return (torch.stack([x, y], dim=1) + jitter).to(torch.float32)


def checkerboard(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform on the 8 dark cells of a 4x4 board of unit squares covering [-2, 2]^2.

    Cell (i, j) (column i, row j, 0..3) is dark when ``i + j`` is even.
    """
    check_count("n", n)
    cell = torch.randint(0, 8, (n,), generator=generator)
    row = cell // 2
    col = 2 * (cell % 2) + row % 2  # the two dark columns of row j are j % 2 and j % 2 + 2
    offset = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    return (torch.stack([col, row], dim=1).to(torch.float64) + offset - 2.0).to(torch.float32)


def swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """A 2-D Swiss roll: ``t (cos t, sin t) / 7``, t uniform in [1.5 pi, 4.5 pi], plus noise."""
    check_count("n", n)
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=generator, dtype=torch.float64))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1) / 7.0
    return (x + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)).to(torch.float32)
