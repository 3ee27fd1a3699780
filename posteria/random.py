"""Per-sample randomness: sample i of a batch is the same whatever the batch size or chunking."""

from __future__ import annotations

import hashlib

import torch

from posteria.errors import check_generator

# Odd 63-bit multiplier: seeds of neighbouring samples differ in many bits.
_MIX = 0x5DEECE66D2F1B3A7 & (2**63 - 1)


def draw_base_seed(generator: torch.Generator | None) -> int:
    """The one draw from ``generator`` (torch's global one when None) that seeds a run's per-sample
    streams: a run split into batches draws it once and gives each batch its streams' offset."""
    return int(torch.randint(0, 2**62, (1,), generator=check_generator(generator)))


def derived_seed(seed: int, purpose: str) -> int:
    """A seed of its own for ``purpose`` under a run's ``seed`` (a 62-bit hash of both): streams seeded
    from it share no numbers with ``Generator(seed)``, with the per-sample streams of ``seed`` (the
    measurement noise) or with those drawn from ``Generator(seed)`` (a sampler's)."""
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


class PerSampleNoise:
    """One torch.Generator per sample, so draws for sample i never depend on the other samples.

    Build it from a seed or from a generator (one base seed is drawn from it), with ``offset`` the
    index of the first sample, so that sampling 1,000 images in chunks of 64 gives the same images
    as one batch of 1,000.
    """

    def __init__(self, base_seed: int, n: int, offset: int = 0) -> None:
        self.seeds = [(base_seed * _MIX + i) % (2**63) for i in range(offset, offset + n)]
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]

    @classmethod
    def from_generator(cls, generator: torch.Generator | None, n: int, offset: int = 0) -> PerSampleNoise:
        """Draw one base seed from ``generator`` (or from torch's global one when None)."""
        return cls(draw_base_seed(generator), n, offset)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, event_shape: tuple[int, ...], like: torch.Tensor | None = None) -> torch.Tensor:
        """Standard normal draws of shape ``(n, *event_shape)``, in the dtype and on the device of
        ``like`` (default dtype on the CPU without it). Drawn on the CPU, where the generators live."""
        return self._draw(torch.Tensor.normal_, event_shape, like)

    def rand(self, event_shape: tuple[int, ...], like: torch.Tensor | None = None) -> torch.Tensor:
        """Uniform [0, 1) draws of shape ``(n, *event_shape)``."""
        return self._draw(torch.Tensor.uniform_, event_shape, like)

    def _draw(self, fill, event_shape: tuple[int, ...], like: torch.Tensor | None) -> torch.Tensor:
        """Row ``i`` filled in place by ``fill(row, generator=generators[i])``: the numbers ``randn`` /
        ``rand`` would draw, without stacking ``n`` separate tensors."""
        dtype = like.dtype if like is not None else torch.get_default_dtype()
        out = torch.empty((len(self.generators), *event_shape), dtype=dtype)
        for row, generator in zip(out, self.generators, strict=True):
            fill(row, generator=generator)
        return out.to(like.device) if like is not None else out
