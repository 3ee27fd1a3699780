"""Restoration metrics against ground truth, on model-space images in [-1, 1].

PSNR and SSIM are computed on the [0, 1] rescaling ``(x + 1) / 2`` (data range 1), per image, so a
batch gives one value per image. SSIM follows Wang et al. 2004: an 11x11 Gaussian window of
standard deviation 1.5, ``C1 = (0.01)^2``, ``C2 = (0.03)^2``, averaged over the valid region.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from posteria.errors import PosteriaError
from posteria.operators.base import Operator
from posteria.tensors import flat


def psnr(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``10 log10(1 / MSE)`` on [0, 1]-scaled images: (B, *event) x 2 -> (B,)."""
    mse = flat((x.clamp(-1, 1) - reference) / 2).square().mean(dim=1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


def _gaussian_window(size: int, std: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    """A (C, 1, size, size) separable Gaussian window summing to one per channel."""
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * std**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size)


def ssim(x: torch.Tensor, reference: torch.Tensor, window: int = 11, std: float = 1.5) -> torch.Tensor:
    """Structural similarity of (B, C, H, W) images in [-1, 1], per image: (B,)."""
    a, b = (x.clamp(-1, 1) + 1) / 2, (reference + 1) / 2
    size = min(window, a.shape[-1], a.shape[-2])
    w = _gaussian_window(size, std, a.shape[1], a)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, w, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return flat(s).mean(dim=1)


def consistency(operator: Operator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Data consistency per sample, (B,): the root mean square of ``y - A x`` in units of the noise's
    standard deviation at ``A x``, ``||y - A x|| / (sigma_y sqrt(m))`` for Gaussian noise (``m`` real
    components); about 1 for a sample that explains ``y`` as well as the noise allows, much more for one
    that ignores it. Undefined without noise (``sigma_y = 0``): one line."""
    clean = operator(x)
    std = operator.noise.std(clean)
    if not bool((std > 0).all()):
        raise PosteriaError("consistency needs measurement noise; the operator has none (sigma_y = 0)")
    residual, std = (y - clean).to(torch.complex128 if y.is_complex() else torch.float64), std.double()
    scaled = flat(torch.view_as_real(residual) / std[..., None] if residual.is_complex() else residual / std)
    return scaled.norm(dim=1) / math.sqrt(scaled.shape[1])


#: Samples that :func:`aligned` registers at a time: its FFTs take about 66 times their memory.
ALIGNED_AT_ONCE = 16


def aligned(operator: Operator, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``x`` (B, *event) with each sample moved within the operator's ambiguities to the signal nearest to
    ``reference`` (B, *event) that measures as it does, ``||A(x') - A(x)||`` at most a tenth of the noise's
    size ``||std(A x)||`` (``1e-6 ||A x||`` without noise) (:meth:`Operator.nearest_equivalent`): PSNR up
    to what the measurement cannot resolve (phase retrieval's rotation and translations), the way that
    field scores. ``x`` itself for an operator without ambiguities."""
    if operator.ambiguities is None:
        return x
    with torch.no_grad():
        measured = operator(x)
        noise = flat(operator.noise.std(measured)).norm(dim=1)
        tolerance = torch.where(noise > 0, noise / 10, 1e-6 * flat(measured.abs()).norm(dim=1))
        parts = zip(*(t.split(ALIGNED_AT_ONCE) for t in (x, reference, tolerance)), strict=True)
        return torch.cat([operator.nearest_equivalent(*part) for part in parts])


def aligned_samples(operator: Operator, samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """:func:`aligned` on ``n`` samples per reference: samples (B, n, *event), reference (B, *event)."""
    n = samples.shape[1]
    flat_samples = aligned(operator, samples.flatten(0, 1), reference.repeat_interleave(n, dim=0))
    return flat_samples.unflatten(0, samples.shape[:2])
