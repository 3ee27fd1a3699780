"""Registration of an image to a reference over translations, all shifts at once by FFT.

For ``a`` and ``b`` of shape (B, ..., H, W) and every shift ``d = (dy, dx)`` with ``|dy| < H``,
``|dx| < W``, let ``S_d a`` be ``a`` moved by ``d`` with zeros moving in and what leaves the frame
dropped. Then ``||S_d a - b||^2 = K(d) - 2 C(d) + ||b||^2`` with ``K(d) = ||S_d a||^2``, the energy of
the part of ``a`` that stays in frame (a box sum of ``a^2``, from 2-D prefix sums), and
``C(d) = sum_m a(m) b(m + d)``, the linear cross-correlation (an FFT of size (2H, 2W), which does not wrap
for these shifts). What ``S_d`` crops has energy ``||a||^2 - K(d)``. Each map is (B, 2H - 1, 2W - 1),
entry ``[i, j]`` for ``d = (i - H + 1, j - W + 1)``; the leading event dimensions are summed over, as
one shift moves every channel. Cost: O(H W log(H W)) per image for all ``(2H - 1) (2W - 1)`` shifts.
"""

from __future__ import annotations

import torch


def translate_each(x: torch.Tensor, shifts: torch.Tensor, fill: float) -> torch.Tensor:
    """Each image of ``x`` (B, ..., H, W) moved down by its ``dy`` and right by its ``dx`` pixels (shifts
    (B, 2) integers; negative: up, left), ``fill`` where nothing moved in, what leaves the frame dropped:
    ``S_d`` of the module, as one gather from the source pixel of every target pixel."""
    B, (H, W) = x.shape[0], x.shape[-2:]
    rows = torch.arange(H, device=x.device) - shifts[:, :1]  # (B, H): the source row of each row
    cols = torch.arange(W, device=x.device) - shifts[:, 1:]  # (B, W)
    inside = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]  # (B, H, W)
    source = rows.clamp(0, H - 1)[:, :, None] * W + cols.clamp(0, W - 1)[:, None, :]  # (B, H, W)
    pixels = x.reshape(B, -1, H * W)
    moved = pixels.gather(2, source.reshape(B, 1, H * W).expand_as(pixels)).reshape(x.shape)
    return torch.where(inside.reshape(B, *[1] * (x.dim() - 3), H, W), moved, fill)


def kept_energy(a: torch.Tensor) -> torch.Tensor:
    """``K(d) = ||S_d a||^2`` for every shift: (B, ..., H, W) -> (B, 2H - 1, 2W - 1) (see the module)."""
    H, W = a.shape[-2:]
    power = a.square().reshape(a.shape[0], -1, H, W).sum(1)  # (B, H, W), channels (if any) summed
    prefix = torch.nn.functional.pad(power.cumsum(-2).cumsum(-1), (1, 0, 1, 0))  # (B, H + 1, W + 1)
    rows, cols = _kept_range(H, a.device), _kept_range(W, a.device)
    (r0, r1), (c0, c1) = (i[:, None] for i in rows), (j[None, :] for j in cols)
    return prefix[:, r1, c1] - prefix[:, r0, c1] - prefix[:, r1, c0] + prefix[:, r0, c0]


def _kept_range(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For shifts ``d = -(n - 1) .. n - 1`` along an axis of ``n`` pixels, the source pixels that stay in
    frame: ``[start, stop)``, as two (2n - 1,) index tensors."""
    d = torch.arange(-(n - 1), n, device=device)
    return (-d).clamp_min(0), n - d.clamp_min(0)


def cross_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``C(d) = sum_m a(m) b(m + d)`` for every shift: (B, ..., H, W) x 2 -> (B, 2H - 1, 2W - 1)."""
    H, W = a.shape[-2:]
    size = (2 * H, 2 * W)
    spectrum = torch.fft.rfft2(a, s=size).conj() * torch.fft.rfft2(b, s=size)
    circular = torch.fft.irfft2(spectrum, s=size).reshape(a.shape[0], -1, *size).sum(1)  # index d mod 2H
    rows = torch.arange(-(H - 1), H, device=a.device) % (2 * H)
    cols = torch.arange(-(W - 1), W, device=a.device) % (2 * W)
    return circular[:, rows[:, None], cols[None, :]]


def best_translation(
    a: torch.Tensor, b: torch.Tensor, allowed_crop: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the shift ``d`` minimising ``||S_d a - b||^2`` among those whose cropped energy is at
    most ``allowed_crop`` (B,) (``d = 0`` always is): the squared distances (B,) and the shifts (B, 2).
    Computed in float64, so that equal candidates tie to within rounding of the distances."""
    a, b = a.double(), b.double()
    kept = kept_energy(a)
    cropped = kept[:, a.shape[-2] - 1, a.shape[-1] - 1, None, None] - kept  # ||a||^2 at d = 0, less K(d)
    distance = kept - 2 * cross_correlation(a, b) + b.square().flatten(1).sum(1)[:, None, None]
    distance = distance.masked_fill(cropped > allowed_crop.double()[:, None, None], torch.inf)
    best, index = distance.flatten(1).min(1)
    centre = (a.shape[-2] - 1) * distance.shape[-1] + a.shape[-1] - 1
    stay = distance.flatten(1)[:, centre] <= best + 1e-12 * (1 + best)  # no move where as near, to rounding
    index = torch.where(stay, centre, index)
    width = distance.shape[-1]
    shifts = torch.stack([index // width - (a.shape[-2] - 1), index % width - (a.shape[-1] - 1)], dim=1)
    return distance.flatten(1).gather(1, index[:, None])[:, 0], shifts
