"""Helpers shared by the statistical tests (imported as ``from helpers import ...``)."""

from __future__ import annotations

import torch


class BatchNoise:
    """One generator for the whole batch, drawn in float32 whatever the working dtype (so float32 and
    float64 runs see the same noise, 8x faster than float64 on CPU): for large-n statistical checks
    only. The samplers' default PerSampleNoise draws sample by sample, which is what makes results
    batch-independent; each test file checks that separately."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def randn(self, event_shape: tuple[int, ...], like: torch.Tensor | None = None) -> torch.Tensor:
        return torch.randn((self.n, *event_shape), generator=self.generator, dtype=torch.float32).to(like)
