"""Training of the digit classifier whose features define the offline Frechet distance."""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F
from tqdm import tqdm

from posteria.nn import ClassifierConfig, DigitClassifier, channels_last


def random_shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image (B, C, H, W) by up to ``max_shift`` pixels, filling with background (-1)."""
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, x.shape[0]), generator=g)
    H, W = x.shape[-2:]
    return torch.stack([p[:, j : j + H, i : i + W] for p, i, j in zip(pad, dx, dy, strict=True)])


@torch.no_grad()
def accuracy(model: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` classified as ``y``."""
    model.eval()
    pred = torch.cat([model(c).argmax(1) for c in x.split(500)])
    return float((pred == y).double().mean())


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 800,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[DigitClassifier, float]:
    """Train a :class:`DigitClassifier` with AdamW, cosine decay and random shifts; returns it and the
    wall time in seconds."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = channels_last(DigitClassifier(ClassifierConfig(in_channels=x.shape[1])))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    start = time.perf_counter()
    for _ in tqdm(range(steps), disable=not progress, desc="classifier"):
        model.train()
        index = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        loss = F.cross_entropy(model(random_shift(x[index], 2, g)), y[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval(), time.perf_counter() - start
