"""Unitary 2-D Fourier transforms over the last two axes, and a real orthonormal Fourier basis.

A real image ``x`` has a Hermitian spectrum ``X = F x`` (``X[-k] = conj X[k]``), so ``H W`` real numbers
describe it. :func:`hermitian_coords` gives them: ``X[k]`` where ``k = -k`` (self-conjugate), and
``sqrt 2 Re X[k]``, ``sqrt 2 Im X[k]`` for each pair ``{k, -k}``, stored at the positions of ``k`` and
``-k`` (the one of lower flat index holds the real part). The map is orthogonal (Parseval), so it is the
real right-singular basis of every operator diagonalised by ``F`` (circular blur, subsampled Fourier).
"""

from __future__ import annotations

import functools
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


def conjugate_classes(H: int, W: int, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
    """Boolean ``(H, W)`` masks ``(self_conjugate, representative, partner)``: each frequency is one."""
    index = torch.arange(H * W, device=device).reshape(H, W)
    mirror = reverse_frequencies(index)
    return index == mirror, index < mirror, index > mirror


@functools.lru_cache(maxsize=32)
def coordinate_weights(H: int, W: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``(6, H, W)`` real weights of the two maps, per frequency class (self-conjugate, representative,
    partner), ``z`` the coordinates and ``X`` the spectrum at ``k``, ``z_r`` and ``X_r`` at ``-k``:

    - ``Re X = a z + b z_r`` with ``a = (1, 1/sqrt 2, 0)``, ``b = (0, 0, 1/sqrt 2)``;
    - ``Im X = c z_r + d z`` with ``c = (0, 1/sqrt 2, 0)``, ``d = (0, 0, -1/sqrt 2)``;
    - ``z = e Re X + f Im X`` with ``e = (1, sqrt 2, 0)``, ``f = (0, 0, -sqrt 2)``.

    Cached per shape, dtype and device (SVD coordinates are taken at every sampler step), built outside
    inference mode so that a first call there hands later autograd calls ordinary tensors; read-only.
    """
    r = math.sqrt(0.5)
    per_class = torch.tensor(
        [[1, r, 0], [0, 0, r], [0, r, 0], [0, 0, -r], [1, 2 * r, 0], [0, 0, -2 * r]], dtype=torch.float64
    )
    with torch.inference_mode(False):
        classes = torch.stack(conjugate_classes(H, W)).to(torch.float64)  # (3, H, W) one-hot
        return torch.einsum("kc,chw->khw", per_class, classes).to(dtype=dtype, device=device)


def hermitian_coords(X: torch.Tensor) -> torch.Tensor:
    """Real orthonormal coordinates of a Hermitian spectrum: complex (..., H, W) -> real (..., H, W)."""
    *_, e, f = coordinate_weights(*X.shape[-2:], X.real.dtype, X.device)
    return e * X.real + f * X.imag


def hermitian_spectrum(z: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hermitian_coords`: real (..., H, W) -> Hermitian complex (..., H, W)."""
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    a, b, c, d, *_ = coordinate_weights(*z.shape[-2:], z.dtype, z.device)
    mirrored = reverse_frequencies(z)
    return torch.complex(a * z + b * mirrored, c * mirrored + d * z)


def symmetrize_spectrum(X: torch.Tensor) -> torch.Tensor:
    """Project onto Hermitian spectra, ``(X[k] + conj X[-k]) / 2``: exact symmetry despite round-off."""
    return (X + reverse_frequencies(X).conj()) / 2
