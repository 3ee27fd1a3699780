"""Accelerated MRI: the unitary 2-D Fourier transform of a real image, observed on a k-space mask."""

from __future__ import annotations

import torch

from posteria.errors import PosteriaError, check_shape
from posteria.operators import kspace
from posteria.operators.base import LinearOperator
from posteria.operators.fourier import (
    fft2c,
    hermitian_coords,
    hermitian_spectrum,
    ifft2c,
    reverse_frequencies,
    symmetrize_spectrum,
)
from posteria.operators.noise_models import NoiseModel
from posteria.operators.svd import ImplicitSVD
from posteria.tensors import flat


class SubsampledFourier(LinearOperator):
    """``y = M F x``: (B, ..., H, W) real -> (B, ..., m) complex, the ``m`` measured k-space coefficients.

    ``F`` is the unitary 2-D DFT of each channel, ``M`` keeps the frequencies where ``mask`` is True (in
    flat order of the unshifted spectrum). As ``x`` is real, ``A`` is a real-linear map into ``C^m = R^2m``
    and adjoints use ``Re <y, y'>``: ``A^T y = Re(F^H M^T y)`` (zero-filled inverse). Then
    ``A^T A = F^H diag(q) F`` with ``q[k] = (P[k] + P[-k]) / 2`` (``P`` the mask): 1 where ``k`` and ``-k``
    are both measured, 1/2 where one is. Hence ``pinv(y) = F^H diag(q^+) F A^T y``, which is the zero-filled
    inverse exactly when the mask is symmetric, and the real SVD ``s = sqrt(q)`` with ``V`` the real
    Fourier basis (:func:`~posteria.operators.fourier.hermitian_coords`) and ``U = A V diag(s^+)``.

    Args:
        mask: boolean ``(H, W)`` in the centred layout (DC at ``(H // 2, W // 2)``, as ``fftshift`` shows).
        shape: the event shape ``(..., H, W)``.

    Reference: Zbontar et al. (2018), fastMRI; :meth:`projection` is the replacement step of Song et al.
    (2022).
    """

    complex_measurement = True

    def __init__(
        self,
        mask: torch.Tensor,
        shape: tuple[int, ...],
        sigma_y: float = 0.0,
        noise: NoiseModel | None = None,
    ) -> None:
        mask, shape = torch.as_tensor(mask), check_shape("shape", shape)
        if len(shape) < 2:
            raise PosteriaError(f"shape must be an image shape (..., H, W), got {shape}")
        if tuple(mask.shape) != shape[-2:]:
            raise PosteriaError(
                f"mask must have the image's (H, W) = {shape[-2:]} for signals of shape {shape}, "
                f"got {tuple(mask.shape)}"
            )
        if not bool(((mask == 0) | (mask == 1)).all()) or not bool(mask.any()):
            raise PosteriaError("mask must hold 0 / 1 (or booleans) and keep at least one frequency")
        unshifted = torch.fft.ifftshift(mask.bool(), dim=(-2, -1))
        kept = torch.nonzero(unshifted.flatten()).flatten()
        super().__init__(shape, (*shape[:-2], kept.numel()), sigma_y, noise)
        self.register_buffer("mask", mask.bool().clone())
        self.register_buffer("kept", kept)
        q = (unshifted.double() + reverse_frequencies(unshifted.double())) / 2
        self.register_buffer("gram_eigenvalues", q.to(torch.get_default_dtype()))

    @classmethod
    def cartesian(
        cls,
        shape: tuple[int, ...],
        acceleration: float = 4.0,
        center_fraction: float = 0.08,
        generator: torch.Generator | None = None,
        **kw,
    ) -> SubsampledFourier:
        """Whole k-space lines: see :func:`~posteria.operators.kspace.cartesian_mask`."""
        return cls(kspace.cartesian_mask(*shape[-2:], acceleration, center_fraction, generator), shape, **kw)

    @classmethod
    def radial(cls, shape: tuple[int, ...], n_spokes: int = 16, **kw) -> SubsampledFourier:
        """Spokes through the centre: see :func:`~posteria.operators.kspace.radial_mask`."""
        return cls(kspace.radial_mask(*shape[-2:], n_spokes), shape, **kw)

    @classmethod
    def spiral(cls, shape: tuple[int, ...], turns: float = 6.0, **kw) -> SubsampledFourier:
        """An Archimedean spiral: see :func:`~posteria.operators.kspace.spiral_mask`."""
        return cls(kspace.spiral_mask(*shape[-2:], turns), shape, **kw)

    @classmethod
    def random(
        cls, shape: tuple[int, ...], fraction: float, generator: torch.Generator | None = None, **kw
    ) -> SubsampledFourier:
        """Uniformly random frequencies: see :func:`~posteria.operators.kspace.random_mask`."""
        return cls(kspace.random_mask(*shape[-2:], fraction, generator), shape, **kw)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x).flatten(-2)[..., self.kept]

    def _zero_fill(self, y: torch.Tensor) -> torch.Tensor:
        """``M^T y`` in the unshifted layout: (B, ..., m) -> (B, ..., H, W) complex."""
        H, W = self.event_shape[-2:]
        out = torch.zeros((*y.shape[:-1], H * W), dtype=y.dtype, device=y.device)
        out[..., self.kept] = y
        return out.reshape(*y.shape[:-1], H, W)

    def to_kspace(self, y: torch.Tensor) -> torch.Tensor:
        """Zero-filled k-space ``M^T y``: (B, ..., m) -> (B, ..., H, W) complex, centred layout."""
        self._expect_shape("y", y, self.measurement_shape)
        return torch.fft.fftshift(self._zero_fill(y), dim=(-2, -1))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(self._zero_fill(y)).real

    def _pinv(self, y: torch.Tensor) -> torch.Tensor:
        q = self.gram_eigenvalues.to(device=y.device, dtype=y.real.dtype)
        q_plus = torch.where(q > 0, 1 / torch.where(q > 0, q, 1), 0)
        return ifft2c(fft2c(self._adjoint(y)) * q_plus).real

    @property
    def svd(self) -> ImplicitSVD:
        s = self.gram_eigenvalues.sqrt().expand(self.event_shape).flatten()
        s_plus = torch.where(s > 0, 1 / torch.where(s > 0, s, 1), 0)

        def vt(x: torch.Tensor) -> torch.Tensor:
            return flat(hermitian_coords(fft2c(x)))

        def spectrum(z: torch.Tensor) -> torch.Tensor:
            return hermitian_spectrum(z.reshape(z.shape[0], *self.event_shape))

        # U = A V S^+ and U^T = S^+ V^T A^T without a transform: F Re(F^H Z) is the Hermitian part of Z,
        # so V^T A^T y = coords(sym(M^T y)) and A V z = M spectrum(z) (a Hermitian spectrum is its own).
        return ImplicitSVD(
            Vt=vt,
            V=lambda z: ifft2c(spectrum(z)).real,
            Ut=lambda y: s_plus.to(y.real) * flat(hermitian_coords(symmetrize_spectrum(self._zero_fill(y)))),
            U=lambda z: spectrum(s_plus.to(z) * z).flatten(-2)[..., self.kept],
            s=s,
        )
