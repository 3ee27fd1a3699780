"""Fourier phase retrieval: the magnitude of the oversampled 2-D Fourier transform (nonlinear)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from posteria.errors import PosteriaError, check_positive, check_shape
from posteria.operators.base import Operator
from posteria.operators.fourier import fft2c
from posteria.operators.noise_models import NoiseModel


class PhaseRetrieval(Operator):
    """``y = |F pad(u(x))|``: (B, ..., H, W) -> (B, ..., ceil(a H), ceil(a W)), with ``a`` = oversampling.

    ``u(x) = (x + 1) / 2`` maps model space to a nonnegative intensity in [0, 1] when ``unit_range``
    (physical objects are nonnegative, which also removes the global sign ambiguity), else ``u(x) = x``.
    The image is zero-padded at the bottom and right, then transformed by the unitary DFT. Nonlinear:
    no adjoint, pinv or SVD; guidance uses autograd through ``A``. Reference: DPS (Chung et al., 2023),
    oversampling 2 as in Fienup (1982).
    """

    ambiguities = "180-degree rotation and translation"

    def __init__(
        self,
        shape: tuple[int, ...],
        oversampling: float = 2.0,
        unit_range: bool = True,
        sigma_y: float = 0.0,
        noise: NoiseModel | None = None,
    ) -> None:
        shape = check_shape("shape", shape)
        if len(shape) < 2 or check_positive("oversampling", oversampling) < 1:  # finite: ceil(inf) overflows
            raise PosteriaError(
                f"oversampling must be >= 1 on an image shape, got {oversampling!r} for {shape}"
            )
        self.padded_size = (math.ceil(oversampling * shape[-2]), math.ceil(oversampling * shape[-1]))
        self.oversampling, self.unit_range = float(oversampling), bool(unit_range)
        super().__init__(shape, (*shape[:-2], *self.padded_size), sigma_y, noise)

    def equivalents(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """``x`` and its 180-degree rotation, each translated by up to a quarter of the image's side, what
        leaves the frame replaced by background (intensity 0): ``|F u|`` is the same for ``u(n)``,
        ``u(-n)`` and ``u(n - s)`` on the padded grid, so these measure as ``x`` does whenever what left
        the frame was background."""
        background = -1.0 if self.unit_range else 0.0
        reach = min(x.shape[-2:]) // 4
        for v in (x, x.flip((-2, -1))):
            for dy in range(-reach, reach + 1):
                for dx in range(-reach, reach + 1):
                    yield translate(v, dy, dx, background)

    def jacobian_norm2(self, x: torch.Tensor) -> torch.Tensor:
        """``c^2`` with ``c = du / dx`` (1/2 with ``unit_range``, else 1): ``J v = c Re(conj(p) F P v)`` with
        ``p`` the phases of ``F P u``, so ``||J v|| <= c ||F P v|| = c ||v||`` (F unitary, P an isometry),
        with equality at ``v = u``. Exact wherever ``F P u`` has no zero."""
        scale = 0.5 if self.unit_range else 1.0
        return torch.full((x.shape[0],), scale**2, dtype=x.real.dtype, device=x.device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x + 1) / 2 if self.unit_range else x
        (H, W), (PH, PW) = x.shape[-2:], self.padded_size
        return fft2c(torch.nn.functional.pad(u, (0, PW - W, 0, PH - H))).abs()


def translate(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """``x`` (..., H, W) moved down by ``dy`` and right by ``dx`` pixels (negative: up, left), ``fill``
    where nothing moved in; what leaves the frame is dropped."""
    out = torch.full_like(x, fill)
    H, W = x.shape[-2:]
    if abs(dy) >= H or abs(dx) >= W:
        return out
    out[..., max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] = x[
        ..., max(-dy, 0) : H + min(-dy, 0), max(-dx, 0) : W + min(-dx, 0)
    ]
    return out
