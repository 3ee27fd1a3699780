"""Shape helpers: the one place where per-sample scalars are broadcast against (B, *event) tensors."""

from __future__ import annotations

import torch


def expand_like(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View per-sample values of shape (B,) or () as (B, 1, ..., 1) so they broadcast against ``x``."""
    return values.reshape(values.shape + (1,) * (x.dim() - values.dim()))


def batch_times(t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return diffusion times as a (B,) tensor on the device and dtype of ``x``."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
    return t


def flat(x: torch.Tensor) -> torch.Tensor:
    """Flatten the event dimensions: (B, *event) -> (B, D)."""
    return x.reshape(x.shape[0], -1)
