"""A small CNN classifier for 28x28 digits; its penultimate features define the offline Frechet distance."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from posteria.nn.config import ArchitectureConfig


@dataclass(frozen=True)
class ClassifierConfig(ArchitectureConfig):
    """Architecture of :class:`DigitClassifier`."""

    in_channels: int = 1
    channels: int = 32
    features: int = 128
    num_classes: int = 10


class DigitClassifier(nn.Module):
    """conv-conv-pool, conv-conv-pool, global average, ``features``-wide layer, linear head.

    Input (B, C, H, W) in model space [-1, 1]; :meth:`features` returns (B, features), the
    representation used by the Frechet distance; ``forward`` returns logits (B, num_classes).
    """

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        self.config = cfg = config
        c = cfg.channels

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
            )  # fmt: skip

        self.block1, self.block2 = block(cfg.in_channels, c), block(c, 2 * c)
        self.fc = nn.Linear(2 * c, cfg.features)
        self.head = nn.Linear(cfg.features, cfg.num_classes)
        self.dropout = nn.Dropout(0.2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(self.block1(x), 2)
        h = F.max_pool2d(self.block2(h), 2)
        return F.silu(self.fc(h.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))
