"""Fourier phase retrieval: the magnitude of the oversampled 2-D Fourier transform (nonlinear)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from posteria.errors import PosteriaError, check_positive, check_shape
from posteria.operators.base import Operator
from posteria.operators.fourier import fft2c, ifft2c
from posteria.operators.noise_models import NoiseModel
from posteria.operators.registration import best_translation, translate_each


class PhaseRetrieval(Operator):
    """``y = |F pad(u(x))|``: (B, ..., H, W) -> (B, ..., ceil(a H), ceil(a W)), with ``a`` = oversampling.

    ``u(x) = (x + 1) / 2`` maps model space to a nonnegative intensity in [0, 1] when ``unit_range``
    (physical objects are nonnegative, which also removes the global sign ambiguity), else ``u(x) = x``.
    The image is zero-padded at the bottom and right, then transformed by the unitary DFT. Nonlinear:
    no adjoint, pinv or SVD; DPS-style guidance differentiates through ``A`` by autograd, and
    :meth:`vjp` gives ``J^T`` in closed form (DAPS's Langevin steps). Reference: DPS (Chung et al., 2023),
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
        self.ambiguities = PhaseRetrieval.ambiguities if unit_range else "sign, " + PhaseRetrieval.ambiguities
        super().__init__(shape, (*shape[:-2], *self.padded_size), sigma_y, noise)

    def nearest_equivalent(
        self, x: torch.Tensor, reference: torch.Tensor, tolerance: torch.Tensor
    ) -> torch.Tensor:
        """The rotation (and sign, without ``unit_range``) and translation of each sample of ``x`` nearest
        to ``reference`` (B, *event) among those that the bound below admits as measuring like ``x`` to
        within ``tolerance`` (B,).

        ``|F pad(u)|`` is the same for ``u(n)``, ``u(-n)`` (the 180-degree rotation in the frame: a
        reflection and a circular shift on the padded grid) and ``-u``; a translation with background
        (``u = 0``) moving in changes it by at most the norm of what leaves the frame (the circular shift
        keeps it; the reverse triangle inequality and a unitary ``F`` bound the rest), so translations
        cropping at most ``tolerance`` are taken. All shifts at once: :mod:`~posteria.operators.registration`.
        """
        background = -1.0 if self.unit_range else 0.0
        allowed = (tolerance / self.intensity_scale) ** 2  # cropped energy, in model space
        best, best_distance = x, torch.full(x.shape[:1], torch.inf, dtype=torch.float64, device=x.device)
        for v in self.orientations(x):
            distance, shifts = best_translation(v - background, reference - background, allowed)
            moved = translate_each(v, shifts, background)
            better = distance < best_distance * (1 - 1e-12) - 1e-12  # ties (to rounding): the earlier one
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), moved, best)
            best_distance = torch.minimum(distance, best_distance)
        return best

    def orientations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` and its 180-degree rotation, and their negatives without ``unit_range``."""
        turned = [x, x.flip((-2, -1))]
        return turned if self.unit_range else [*turned, *(-v for v in turned)]

    @property
    def intensity_scale(self) -> float:
        """``c = du / dx``: 1/2 with ``unit_range``, else 1."""
        return 0.5 if self.unit_range else 1.0

    def jacobian_norm2(self, x: torch.Tensor) -> torch.Tensor:
        """``c^2``, ``c`` = :attr:`intensity_scale`: ``J v = c Re(conj(p) F P v)`` with ``p`` the phases of
        ``F P u``, so ``||J v|| <= c ||F P v|| = c ||v||`` (F unitary, P an isometry), with equality at
        ``v = u``. Exact wherever ``F P u`` has no zero."""
        return torch.full((x.shape[0],), self.intensity_scale**2, dtype=x.real.dtype, device=x.device)

    def vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """``(|z|, v -> c P^T Re(F^H (p v)))`` with ``z = F P u(x)`` and ``p = z / |z|`` (0 where ``z = 0``,
        autograd's choice): ``J dx = c Re(conj(p) F P dx)`` (see :meth:`jacobian_norm2`), and its adjoint
        follows from ``<v, Re(conj(p) w)> = Re <p v, w>`` for real ``v``. One transform each way and no
        autograd graph (DAPS's Langevin steps call it 20 times per level)."""
        self._expect_signal(x)
        spectrum = self.spectrum(x.detach())
        magnitude = spectrum.abs()
        (H, W) = x.shape[-2:]

        def pullback(v: torch.Tensor) -> torch.Tensor:
            # p v = z (v / |z|): one real scaling of z, half the cost of forming p, a complex division
            weight = torch.where(magnitude > 0, v / magnitude, 0)
            return self.intensity_scale * ifft2c(spectrum * weight).real[..., :H, :W]

        return magnitude, pullback

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``z = F pad(u(x))``, complex (B, ..., ceil(a H), ceil(a W))."""
        u = (x + 1) / 2 if self.unit_range else x
        (H, W), (PH, PW) = x.shape[-2:], self.padded_size
        return fft2c(torch.nn.functional.pad(u, (0, PW - W, 0, PH - H)))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spectrum(x).abs()
