"""Deblurring: circular convolution with a fixed kernel over the last two axes, by FFT."""

from __future__ import annotations

import math

import torch

from posteria.errors import PosteriaError, check_count, check_positive, check_shape
from posteria.operators.base import LinearOperator
from posteria.operators.fourier import (
    fft2c,
    hermitian_coords,
    hermitian_spectrum,
    ifft2c,
    symmetrize_spectrum,
)
from posteria.operators.noise_models import NoiseModel
from posteria.operators.svd import ImplicitSVD
from posteria.tensors import flat


def gaussian_kernel(size: int, std: float) -> torch.Tensor:
    """``exp(-(i^2 + j^2) / (2 std^2))`` on a ``size x size`` grid centred at ``size // 2``, sum 1."""
    size = check_count("size", size)
    check_positive("std", std)
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * std**2))
    return k / k.sum()


def motion_kernel(size: int, angle: float) -> torch.Tensor:
    """A straight motion path of length ``size`` through the centre at ``angle`` degrees, sum 1.

    The segment is sampled at ``8 size`` points and splatted bilinearly (anti-aliased). Reference: the
    linear motion blur of Levin et al. (2009); DPS draws curved paths instead.
    """
    size = check_count("size", size)
    theta = math.radians(angle)
    t = torch.linspace(-(size - 1) / 2, (size - 1) / 2, 8 * size, dtype=torch.float64)
    i, j = size // 2 - t * math.sin(theta), size // 2 + t * math.cos(theta)
    k = torch.zeros(size + 1, size + 1, dtype=torch.float64)
    i0, j0 = i.floor().long().clamp(0, size - 1), j.floor().long().clamp(0, size - 1)
    di, dj = (i - i0).clamp(0, 1), (j - j0).clamp(0, 1)
    for ai, aj, w in (
        (0, 0, (1 - di) * (1 - dj)),
        (1, 0, di * (1 - dj)),
        (0, 1, (1 - di) * dj),
        (1, 1, di * dj),
    ):
        k.index_put_((i0 + ai, j0 + aj), w, accumulate=True)
    k = k[:size, :size]
    return k / k.sum()


def _real_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """``kernel`` in the default float dtype: integer and boolean kernels (a box of ones) are read as numbers,
    a complex one is refused (the real operator would drop its imaginary part)."""
    kernel = torch.as_tensor(kernel)
    if kernel.is_complex():
        raise PosteriaError(f"kernel must be real, got {kernel.dtype}")
    return kernel.to(torch.get_default_dtype())


def _follow_loaded_kernel(blur: Blur, incompatible_keys: object) -> None:
    """After ``load_state_dict``: ``spectrum`` is not saved, so derive it from the kernel just loaded."""
    blur.follow_kernel()


class Blur(LinearOperator):
    """Circular convolution ``A x = k * x`` over the last two axes, each channel alike: (B, *shape) -> same.

    ``A = F^H diag(k_hat) F`` with ``F`` the unitary 2-D DFT and ``k_hat = DFT(k)`` (kernel zero-padded to
    ``(H, W)`` and centred at pixel (0, 0)). Adjoint: ``F^H diag(conj k_hat) F``; pinv: ``1 / k_hat`` where
    ``|k_hat| > rtol max |k_hat|`` (``rtol = D eps``), else 0. Real SVD: ``s = |k_hat|``, ``V^T x`` = the real
    orthonormal Fourier coordinates of ``F x`` (:func:`~posteria.operators.fourier.hermitian_coords`),
    ``U^T y`` = the same coordinates of ``conj(phase) F y`` with ``phase = k_hat / |k_hat|``: the phase of the
    kernel moves into ``U`` so that all four maps are real. Reference: DDRM's ``Deblurring`` (separable
    kernels, zero boundary); here any kernel, periodic boundary.

    Args:
        kernel: a real ``(kh, kw)`` kernel, ``kh <= H`` and ``kw <= W``, centred at ``(kh // 2, kw // 2)``;
            used as given (the constructors normalise theirs to sum 1).
        shape: the event shape ``(..., H, W)``.
    """

    picture = "image"

    def __init__(
        self,
        kernel: torch.Tensor,
        shape: tuple[int, ...],
        sigma_y: float = 0.0,
        noise: NoiseModel | None = None,
    ) -> None:
        shape, kernel = check_shape("shape", shape), _real_kernel(kernel)
        if len(shape) < 2 or kernel.dim() != 2 or kernel.shape[0] > shape[-2] or kernel.shape[1] > shape[-1]:
            raise PosteriaError(f"kernel must be 2-D and fit in the image {shape}, got {tuple(kernel.shape)}")
        if not bool(torch.isfinite(kernel).all()) or not bool(kernel.abs().sum() > 0):
            raise PosteriaError("kernel must be finite and not all zero")
        super().__init__(shape, shape, sigma_y, noise)
        self.register_buffer("kernel", kernel)
        self.register_buffer("padded", torch.zeros(shape[-2:], dtype=kernel.dtype))
        # Computed once per kernel (here and after load_state_dict), in float64: a DFT of the kernel per call
        # cost 40% of A (28 x 28, batch 8). Kept as (H, W, 2) reals, which Module.to(dtype) casts; it would
        # drop the imaginary part of a complex buffer.
        self.register_buffer("spectrum", torch.zeros(*shape[-2:], 2, dtype=torch.float64), persistent=False)
        self.follow_kernel()
        self.register_load_state_dict_post_hook(_follow_loaded_kernel)

    def follow_kernel(self) -> None:
        """Derive ``padded`` (the kernel zero-padded to ``(H, W)``, centred at pixel (0, 0)) and ``spectrum``
        (``DFT(padded)``, in float64) from ``kernel``, in place; call it after changing ``kernel``."""
        kh, kw = self.kernel.shape
        padded = torch.zeros_like(self.padded)
        padded[:kh, :kw] = self.kernel
        with torch.no_grad():
            self.padded.copy_(torch.roll(padded, (-(kh // 2), -(kw // 2)), (0, 1)))
            self.spectrum.copy_(torch.view_as_real(symmetrize_spectrum(torch.fft.fft2(self.padded.double()))))

    @classmethod
    def gaussian(cls, shape: tuple[int, ...], size: int = 9, std: float = 2.0, **kw) -> Blur:
        """Isotropic Gaussian blur (DPS, DDRM): a ``size x size`` kernel of std ``std`` pixels."""
        return cls(gaussian_kernel(size, std), shape, **kw)

    @classmethod
    def motion(
        cls,
        shape: tuple[int, ...],
        size: int = 9,
        angle: float | None = None,
        generator: torch.Generator | None = None,
        **kw,
    ) -> Blur:
        """Linear motion blur of length ``size`` at ``angle`` degrees (None: uniform from ``generator``)."""
        if angle is None:
            angle = 180.0 * float(torch.rand((), generator=generator, dtype=torch.float64))
        return cls(motion_kernel(size, angle), shape, **kw)

    def kernel_hat(self, like: torch.Tensor) -> torch.Tensor:
        """``k_hat = DFT(k)`` (unnormalised, exactly Hermitian), ``(H, W)``, in the precision of ``like``."""
        real = like.real.dtype if like.is_complex() else like.dtype
        return torch.view_as_complex(self.spectrum.to(device=like.device, dtype=real))

    def _filter(self, x: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        """``F^H diag(response) F x``, real part."""
        return ifft2c(fft2c(x) * response).real

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._filter(x, self.kernel_hat(x))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._filter(y, self.kernel_hat(y).conj())

    def _pinv(self, y: torch.Tensor) -> torch.Tensor:
        k = self.kernel_hat(y)
        a = k.abs()
        keep = a > self.signal_dim * torch.finfo(a.dtype).eps * a.max()
        return self._filter(y, torch.where(keep, k.conj() / torch.where(keep, a, 1) ** 2, 0))

    def _phase(self, like: torch.Tensor) -> torch.Tensor:
        k = self.kernel_hat(like)
        a = k.abs()
        return torch.where(a > 0, k / torch.where(a > 0, a, 1), 1)

    @property
    def svd(self) -> ImplicitSVD:
        def unflatten(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(z.shape[0], *self.event_shape)

        def vt(x: torch.Tensor) -> torch.Tensor:
            return flat(hermitian_coords(fft2c(x)))

        def v(z: torch.Tensor) -> torch.Tensor:
            return ifft2c(hermitian_spectrum(unflatten(z))).real

        def ut(y: torch.Tensor) -> torch.Tensor:
            return flat(hermitian_coords(fft2c(y) * self._phase(y).conj()))

        def u(z: torch.Tensor) -> torch.Tensor:
            return ifft2c(hermitian_spectrum(unflatten(z)) * self._phase(z)).real

        s = self.kernel_hat(self.padded).abs().expand(self.event_shape).flatten()
        return ImplicitSVD(Vt=vt, V=v, Ut=ut, U=u, s=s)
