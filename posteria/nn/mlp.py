"""An MLP backbone for vectors and tiny images: ``net(x, c_noise, labels=None)`` shaped like ``x``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from posteria.nn.config import ArchitectureConfig
from posteria.nn.embedding import ClassEmbedding, NoiseEmbedding


@dataclass(frozen=True)
class MLPConfig(ArchitectureConfig):
    """Architecture of :class:`MLP`; ``features`` is the flattened event size D."""

    features: int = 2
    hidden: int = 128
    layers: int = 3
    emb_dim: int = 64
    num_classes: int = 0


class MLP(nn.Module):
    """Residual MLP: ``h <- h + W2 silu(W1 silu(h) + emb)`` for each layer; input and output (B, *event)."""

    def __init__(self, config: MLPConfig = MLPConfig()) -> None:
        super().__init__()
        self.config = cfg = config
        self.noise_emb = NoiseEmbedding(cfg.emb_dim)
        self.class_emb = ClassEmbedding(cfg.num_classes, cfg.emb_dim) if cfg.num_classes else None
        self.inp = nn.Linear(cfg.features, cfg.hidden)
        self.film = nn.ModuleList(nn.Linear(cfg.emb_dim, cfg.hidden) for _ in range(cfg.layers))
        self.inner = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden)) for _ in range(cfg.layers)
        )
        self.outer = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden)) for _ in range(cfg.layers)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, cfg.features))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None):
        batch = x.shape[0]
        emb = self.noise_emb(c_noise.expand(batch) if c_noise.numel() == 1 else c_noise)
        if self.class_emb is not None:
            emb = emb + self.class_emb(labels, batch)
        h = self.inp(x.reshape(batch, -1))
        for film, inner, outer in zip(self.film, self.inner, self.outer, strict=True):
            h = h + outer(inner(h) + film(emb))
        return self.out(h).reshape(x.shape)
