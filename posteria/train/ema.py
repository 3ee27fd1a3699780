"""Exponential moving average of model weights (Polyak averaging), with a warm-up of the decay."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``theta_ema <- d theta_ema + (1 - d) theta`` with ``d = min(decay, (1 + step) / (10 + step))``.

    The warm-up keeps early averages from being dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        ema_params = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)
