"""Shared fixtures: one torch thread for small models, and a tiny exported prior on the 8x8 digits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

#: A tiny U-Net for the 8x8 digits (about 42k parameters): two levels, attention at the coarse one.
TINY_UNET = {
    "channels": 8,
    "multipliers": [1, 2],
    "blocks_per_level": 1,
    "attention_levels": [1],
    "emb_dim": 16,
}


@pytest.fixture(autouse=True)
def seeded_global_generator() -> None:
    """Every test starts from the same state of torch's global generator, so one that draws without a
    generator is repeatable whatever ran before it (an unseeded draw once failed a 1e-12 comparison)."""
    torch.manual_seed(0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test on one torch thread: tiny models are faster so, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny U-Net trained 3 steps on the 8x8 digits and exported as a prior folder.

    Returns ``folder`` (card.json + weights.safetensors), ``checkpoint`` (the training checkpoint) and
    ``trainer`` (whose EMA denoiser the prior must reproduce; do not train it further). The prior is
    8x8, so ``posteria sample`` skips the 28x28 Frechet distance.
    """
    from posteria.data import load_dataset
    from posteria.priors import export_prior
    from posteria.train.config import TrainConfig
    from posteria.train.loop import Trainer

    root = tmp_path_factory.mktemp("tiny_prior")
    config = TrainConfig(
        data="digits",
        arch="unet",
        backbone=dict(TINY_UNET),
        steps=3,
        batch_size=8,
        warmup=1,
        checkpoint_every=1000,
        out=str(root / "run"),
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)  # the backbone's initial weights come from the global generator
        data, labels = load_dataset("digits", "train")
        trainer = Trainer(config, data, labels).run(progress=False)
        checkpoint = Path(config.out) / "checkpoint"
        folder = export_prior(
            checkpoint, root / "prior", {"name": "tiny-digits", "command": "pytest fixture"}
        )
    finally:
        torch.set_num_threads(before)
    return SimpleNamespace(folder=folder, checkpoint=checkpoint, trainer=trainer, config=config)
