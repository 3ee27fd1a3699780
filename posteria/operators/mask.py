"""Inpainting: keep the pixels where a 0/1 mask is 1; the measurement is the vector of kept pixels."""

from __future__ import annotations

import math
import operator

import torch

from posteria.errors import PosteriaError, check_choice, check_count, check_positive, check_shape
from posteria.operators.base import LinearOperator
from posteria.operators.noise_models import NoiseModel
from posteria.operators.svd import ImplicitSVD, pad_to
from posteria.tensors import flat


def _spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The last two axes of an event shape (the last one for vectors): where masks vary."""
    return tuple(shape[-2:])


def _image_axes(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(H, W)`` of an image event shape ``(..., H, W)``; raise for vectors."""
    if len(check_shape("shape", shape)) < 2:
        raise PosteriaError(f"shape must be an image shape (..., H, W), got {tuple(shape)}")
    return int(shape[-2]), int(shape[-1])


def _box_center(center: tuple[int, int] | None, H: int, W: int) -> tuple[int, int]:
    """``center`` as a pixel ``(i, j)`` of the ``H x W`` image (default the middle), else one line."""
    if center is None:
        return H // 2, W // 2
    try:
        ci, cj = map(operator.index, center)  # integers only: a fractional centre cannot slice
        inside = 0 <= ci < H and 0 <= cj < W
    except (TypeError, ValueError):  # not a pair of integers
        inside = False
    if not inside:
        raise PosteriaError(f"center must lie in the {H}x{W} image as integers (i, j), got {center!r}")
    return ci, cj


def _full_mask(mask: torch.Tensor, shape: tuple[int, ...] | None) -> torch.Tensor:
    """Check a 0/1 mask and broadcast it to the event shape (from its spatial shape if needed)."""
    mask = torch.as_tensor(mask)
    shape = tuple(mask.shape) if shape is None else tuple(shape)
    if tuple(mask.shape) not in (shape, _spatial(shape)):
        raise PosteriaError(f"mask must have shape {shape} or {_spatial(shape)}, got {tuple(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise PosteriaError("mask must hold only 0 and 1")
    if not bool(mask.any()):
        raise PosteriaError("mask must keep at least one pixel")
    return mask.bool().expand(shape)


class Mask(LinearOperator):
    """``A x = x[mask]``: (B, *shape) -> (B, m), the ``m`` kept entries in flat (C, H, W) order.

    Measuring only the kept pixels keeps the noise off the holes and gives DDRM its vector form;
    :meth:`to_image` scatters a measurement back into an image for display. ``A A^T = I``, so
    ``pinv = adjoint`` (zero filling). SVD: ``V`` is the permutation putting kept entries first,
    ``s = (1, ..., 1, 0, ..., 0)`` with ``m`` ones, ``U = I`` (padded). Reference: DDRM's ``Inpainting``.

    Args:
        mask: 0/1 tensor of shape ``shape`` or of its last two axes (then shared by all channels);
            1 marks a kept (observed) pixel.
        shape: the event shape; defaults to ``mask.shape``.
    """

    picture = "pixels"

    def __init__(
        self,
        mask: torch.Tensor,
        shape: tuple[int, ...] | None = None,
        sigma_y: float = 0.0,
        noise: NoiseModel | None = None,
    ) -> None:
        full = _full_mask(mask, shape)
        kept = torch.nonzero(full.flatten()).flatten()
        super().__init__(tuple(full.shape), (kept.numel(),), sigma_y, noise)
        self.register_buffer("mask", full.clone())
        self.register_buffer("kept", kept)
        self.register_buffer("order", torch.cat([kept, torch.nonzero(~full.flatten()).flatten()]))

    @classmethod
    def random(
        cls, shape: tuple[int, ...], fraction_kept: float, generator: torch.Generator | None = None, **kw
    ) -> Mask:
        """Keep ``max(1, round(fraction_kept H W))`` pixels drawn uniformly (shared by channels)."""
        check_positive("fraction_kept", fraction_kept)
        if fraction_kept > 1:
            raise PosteriaError(f"fraction_kept must lie in (0, 1], got {fraction_kept!r}")
        n = math.prod(_spatial(check_shape("shape", shape)))
        chosen = torch.randperm(n, generator=generator)[: max(1, round(fraction_kept * n))]
        mask = torch.zeros(n, dtype=torch.bool)
        mask[chosen] = True
        return cls(mask.reshape(_spatial(shape)), shape, **kw)

    @classmethod
    def box(cls, shape: tuple[int, ...], size: int, center: tuple[int, int] | None = None, **kw) -> Mask:
        """Hide a ``size x size`` box (clipped to the image) centred at ``center`` (default the middle)."""
        H, W = _image_axes(shape)
        size, (ci, cj) = check_count("size", size), _box_center(center, H, W)
        mask = torch.ones(H, W, dtype=torch.bool)
        i0, j0 = ci - size // 2, cj - size // 2
        mask[max(i0, 0) : max(i0 + size, 0), max(j0, 0) : max(j0 + size, 0)] = False
        return cls(mask, shape, **kw)

    @classmethod
    def half(cls, shape: tuple[int, ...], side: str = "right", **kw) -> Mask:
        """Hide ``W // 2`` columns (or ``H // 2`` rows) on ``side``: right, left, top or bottom."""
        check_choice("side", side, ("right", "left", "top", "bottom"))
        H, W = _image_axes(shape)
        mask = torch.ones(H, W, dtype=torch.bool)
        hidden = {"right": (..., slice(W - W // 2, None)), "left": (..., slice(None, W // 2))}
        hidden |= {"bottom": (slice(H - H // 2, None),), "top": (slice(None, H // 2),)}
        mask[hidden[side]] = False
        return cls(mask, shape, **kw)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return flat(x)[:, self.kept]

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.to_image(y)

    def _pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.to_image(y)

    def to_image(self, y: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Scatter kept values ``(B, m)`` into an image ``(B, *shape)``, holes set to ``fill``."""
        self._expect_shape("y", y, self.measurement_shape)
        out = torch.full((y.shape[0], self.signal_dim), fill, dtype=y.dtype, device=y.device)
        out[:, self.kept] = y
        return out.reshape(y.shape[0], *self.event_shape)

    @property
    def svd(self) -> ImplicitSVD:
        m, D = self.measurement_shape[0], self.signal_dim

        def v(z: torch.Tensor) -> torch.Tensor:
            out = torch.empty_like(z)
            out[:, self.order] = z
            return out.reshape(z.shape[0], *self.event_shape)

        s = (torch.arange(D, device=self.kept.device) < m).to(torch.get_default_dtype())
        return ImplicitSVD(
            Vt=lambda x: flat(x)[:, self.order], V=v, Ut=lambda y: pad_to(y, D), U=lambda z: z[:, :m], s=s
        )
