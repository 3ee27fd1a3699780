"""A masked-autoencoder-style regression network: predict ``x`` from a masked ``x`` in one forward pass.

Trained with the squared error on random masks (random pixels, boxes, halves), the network learns the
conditional mean ``E[x | x_mask]`` (He et al., 2022, "Masked autoencoders are scalable vision learners",
for the masking task; the mean-squared-error minimiser is the conditional mean). It is the point of
contrast of the diffusion posterior samplers: one blurry average where they draw sharp alternatives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from posteria.nn import UNet, UNetConfig, channels_last


class MaskedRegressor(nn.Module):
    """``f(x * m, m) ~ E[x | x_m]`` for images (B, C, H, W) and masks (B, C, H, W) of 0/1.

    A time-free U-Net on the 2C channels (masked image, mask), predicting C channels: the noise
    embedding of the U-Net sees a constant, so it is an ordinary image-to-image network.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = UNet(config)

    def forward(self, x_masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([x_masked * mask, mask.to(x_masked.dtype)], dim=1)
        return self.unet(inputs, torch.zeros((), dtype=inputs.dtype, device=inputs.device))


def regressor_config(channels: int = 1) -> UNetConfig:
    """The shipped architecture: a small U-Net (0.26M parameters) for 28 x 28 digits."""
    return UNetConfig(
        in_channels=2 * channels,
        out_channels=channels,
        channels=16,
        multipliers=(1, 2, 2),
        blocks_per_level=1,
        attention_levels=(),
    )


def random_masks(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) masks of 0/1, a third each of random pixels (kept fraction uniform in [0.1, 0.9]),
    boxes (side uniform in [H/4, 3H/4] at a random place) and halves (a random side hidden)."""
    B, C, H, W = shape
    kind = torch.randint(0, 3, (B,), generator=generator)
    keep = torch.empty(B, 1, 1, 1).uniform_(0.1, 0.9, generator=generator)
    masks = (torch.rand(B, 1, H, W, generator=generator) < keep).float()
    rows, cols = torch.arange(H).view(H, 1), torch.arange(W).view(1, W)
    for i in torch.nonzero(kind == 1).flatten().tolist():
        size = int(torch.randint(H // 4, 3 * H // 4 + 1, (), generator=generator))
        top, left = torch.randint(0, H - size + 1, (2,), generator=generator).tolist()
        hidden = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
        masks[i, 0] = (~hidden).float()
    for i in torch.nonzero(kind == 2).flatten().tolist():
        side = int(torch.randint(0, 4, (), generator=generator))
        hidden = [cols >= W // 2, cols < W // 2, rows >= H // 2, rows < H // 2][side]
        masks[i, 0] = (~hidden.expand(H, W)).float()
    return masks.expand(B, C, H, W)


@dataclass
class RegressorTraining:
    """Optimisation settings of :func:`train_regressor`."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0


def train_regressor(
    x: torch.Tensor, settings: RegressorTraining | None = None, progress: bool = True
) -> tuple[MaskedRegressor, float]:
    """Fit a :class:`MaskedRegressor` to images ``x`` (N, C, H, W) by AdamW on the squared error over
    the whole image under :func:`random_masks`; returns the model (eval mode) and the wall time in s."""
    settings = RegressorTraining() if settings is None else settings
    g = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = channels_last(MaskedRegressor(regressor_config(x.shape[1])))
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.steps)
    start = time.perf_counter()
    bar = tqdm(range(settings.steps), disable=not progress, desc="regressor")
    for _ in bar:
        batch = x[torch.randint(0, x.shape[0], (settings.batch_size,), generator=g)]
        mask = random_masks(tuple(batch.shape), g)
        loss = F.mse_loss(model(batch, mask), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return model.eval().requires_grad_(False), time.perf_counter() - start


@torch.no_grad()
def regression_error(model: MaskedRegressor, x: torch.Tensor, seed: int = 1) -> float:
    """Mean squared error of ``model`` on images ``x`` under :func:`random_masks` drawn from ``seed``."""
    mask = random_masks(tuple(x.shape), torch.Generator().manual_seed(seed))
    pairs = zip(x.split(500), mask.split(500), strict=True)
    return sum(float(F.mse_loss(model(a, m), a, reduction="sum")) for a, m in pairs) / x.numel()
