"""Noise-level and class embeddings shared by the backbones."""

from __future__ import annotations

import math

import torch
from torch import nn


class NoiseEmbedding(nn.Module):
    """Fourier features of the scalar noise input followed by a two-layer MLP.

    ``c_noise`` (B,) is ``log(r_t) / 4`` from the parameterisation wrapper, a number of order one; the
    frequencies span 1 to 1000 geometrically so both coarse and fine changes of level are resolved.
    Returns (B, dim).
    """

    def __init__(self, dim: int, features: int = 64) -> None:
        super().__init__()
        freqs = torch.exp(torch.linspace(0, math.log(1000.0), features // 2))
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        angles = c_noise.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


class ClassEmbedding(nn.Module):
    """A learned vector per class plus one for "no class" (index ``num_classes``), for classifier-free
    guidance: labels of -1 or None map to the null class. Returns (B, dim)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        if labels is None:
            labels = torch.full((batch,), -1, dtype=torch.long, device=self.table.weight.device)
        labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
        return self.table(labels)
