"""Unitary 2-D Fourier transforms over the last two axes, and a real orthonormal Fourier basis.

A real image ``x`` has a Hermitian spectrum ``X = F x`` (``X[-k] = conj X[k]``), so ``H W`` real numbers
describe it. :func:`hermitian_coords` gives them: ``X[k]`` where ``k = -k`` (self-conjugate), and
``sqrt 2 Re X[k]``, ``sqrt 2 Im X[k]`` for each pair ``{k, -k}``, stored at the positions of ``k`` and
``-k`` (the one of lower flat index holds the real part). The map is orthogonal (Parseval), so it is the
real right-singular basis of every operator diagonalised by ``F`` (circular blur, subsampled Fourier).
"""

from __future__ import annotations

import math

import torch


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Unitary 2-D DFT over the last two axes (DC at index (0, 0), not shifted)."""
    return torch.fft.fft2(x, norm="ortho")


def ifft2c(X: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c`."""
    return torch.fft.ifft2(X, norm="ortho")


def reverse_frequencies(t: torch.Tensor) -> torch.Tensor:
    """``t[..., -k1 mod H, -k2 mod W]``: the value at the conjugate frequency."""
    return torch.roll(torch.flip(t, (-2, -1)), (1, 1), (-2, -1))


def conjugate_classes(
    H: int, W: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``(H, W)`` masks ``(self_conjugate, representative)``; the rest are the partners."""
    index = torch.arange(H * W, device=device).reshape(H, W)
    partner = reverse_frequencies(index)
    return index == partner, index < partner


def hermitian_coords(X: torch.Tensor) -> torch.Tensor:
    """Real orthonormal coordinates of a Hermitian spectrum: complex (..., H, W) -> real (..., H, W)."""
    self_conj, rep = conjugate_classes(X.shape[-2], X.shape[-1], X.device)
    r2 = math.sqrt(2.0)
    return torch.where(self_conj, X.real, torch.where(rep, r2 * X.real, -r2 * X.imag))


def hermitian_spectrum(z: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hermitian_coords`: real (..., H, W) -> Hermitian complex (..., H, W)."""
    self_conj, rep = conjugate_classes(z.shape[-2], z.shape[-1], z.device)
    zc, zr = z.to(torch.promote_types(z.dtype, torch.complex64)), reverse_frequencies(z)
    r2 = math.sqrt(2.0)
    return torch.where(self_conj, zc, torch.where(rep, (zc + 1j * zr) / r2, (zr - 1j * zc) / r2))


def symmetrize_spectrum(X: torch.Tensor) -> torch.Tensor:
    """Project onto Hermitian spectra, ``(X[k] + conj X[-k]) / 2``: exact symmetry despite round-off."""
    return (X + reverse_frequencies(X).conj()) / 2
