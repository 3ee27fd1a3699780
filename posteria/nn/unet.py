"""A small U-Net backbone for images: ``net(x, c_noise, labels=None) -> Tensor`` of the shape of ``x``.

ResNet blocks (GroupNorm, SiLU, 3x3 convolutions, the noise embedding as a scale and shift), self-
attention at the coarsest resolutions, skip connections between the encoder and the decoder (Ho et al.
2020; Dhariwal & Nichol 2021). It knows nothing of schedules: a parameterisation wrapper
(:mod:`posteria.denoisers.parameterisation`) turns it into a Denoiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from posteria.nn.config import ArchitectureConfig
from posteria.nn.embedding import ClassEmbedding, NoiseEmbedding


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """``skip(x) + conv(act(norm(conv(act(norm(x)))) * (1 + scale) + shift))``, FiLM by the embedding."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(self.dropout(h))


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, residual."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


@dataclass(frozen=True)
class UNetConfig(ArchitectureConfig):
    """Architecture of :class:`UNet`; stored in checkpoints and prior cards."""

    in_channels: int = 1
    out_channels: int | None = None  # None: as many as in_channels (a denoiser)
    channels: int = 32
    multipliers: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = (2,)
    emb_dim: int = 128
    num_classes: int = 0
    dropout: float = 0.0


class Level(nn.Module):
    """The ResBlocks (and optional attention) at one resolution of the encoder or decoder."""

    def __init__(self, c_ins: list[int], c_out: int, emb_dim: int, attention: bool, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(c, c_out, emb_dim, dropout) for c in c_ins)
        self.attns = nn.ModuleList(Attention(c_out) if attention else nn.Identity() for _ in c_ins)


class UNet(nn.Module):
    """U-Net on (B, C, H, W) with H and W divisible by ``2 ** (len(multipliers) - 1)``."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = cfg = config
        widths = [cfg.channels * m for m in cfg.multipliers]
        self.noise_emb = NoiseEmbedding(cfg.emb_dim)
        self.class_emb = ClassEmbedding(cfg.num_classes, cfg.emb_dim) if cfg.num_classes else None
        self.stem = nn.Conv2d(cfg.in_channels, cfg.channels, 3, padding=1)
        self.down, skips, c = nn.ModuleList(), [cfg.channels], cfg.channels
        for i, w in enumerate(widths):
            if i > 0:  # the downsampled map is a skip too (ADM layout)
                skips.append(c)
            self.down.append(self._level([c] + [w] * (cfg.blocks_per_level - 1), w, i))
            skips += [w] * cfg.blocks_per_level
            c = w
        self.mid = nn.ModuleList([ResBlock(c, c, cfg.emb_dim), Attention(c), ResBlock(c, c, cfg.emb_dim)])
        self.up = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            n = cfg.blocks_per_level + 1
            c_ins = [(c if j == 0 else w) + skips.pop() for j in range(n)]
            self.up.append(self._level(c_ins, w, i))
            c = w
        self.head = nn.Sequential(
            _norm(c), nn.SiLU(), nn.Conv2d(c, cfg.out_channels or cfg.in_channels, 3, padding=1)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def _level(self, c_ins: list[int], c_out: int, index: int) -> Level:
        cfg = self.config
        return Level(c_ins, c_out, cfg.emb_dim, index in cfg.attention_levels, cfg.dropout)

    def embed(self, c_noise: torch.Tensor, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        emb = self.noise_emb(c_noise.expand(batch) if c_noise.numel() == 1 else c_noise)
        if self.class_emb is not None:
            emb = emb + self.class_emb(labels, batch)
        return F.silu(emb)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None):
        emb = self.embed(c_noise, labels, x.shape[0])
        h = self.stem(x)
        skips = [h]
        for i, level in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2)
                skips.append(h)
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, emb))
                skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for i, level in enumerate(self.up):
            if i > 0:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
        return self.head(h)
