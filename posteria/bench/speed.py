"""``posteria bench speed``: training and sampling throughput of a prior, and the sampler overhead.

The overhead ratio is the wall time of a 50-step DDIM run divided by 50 network forwards at the same
batch, both measured in this run: 1.0 means the sampler costs nothing beyond the network.
"""

from __future__ import annotations

import torch

import posteria as pa
from posteria.bench.timing import best_of
from posteria.data import load_dataset
from posteria.train.config import TrainConfig
from posteria.train.loop import Trainer


def training_throughput(prior: pa.Denoiser, batch: int, repeats: int) -> float:
    """Training images per second of the prior's architecture (one optimiser step per call)."""
    card = prior.card
    keys = ("arch", "backbone", "schedule", "parameterisation", "sigma_data", "data")
    config = TrainConfig(**{k: card[k] for k in keys}, batch_size=batch, out="/nonexistent")
    data, labels = load_dataset(card["data"], "train")
    trainer = Trainer(config, data, labels)
    return batch / best_of(trainer.train_step, repeats)


def run_speed(prior_name: str = "mnist", batch: int = 64, steps: int = 50, repeats: int = 3) -> dict:
    """Measure throughput and overhead; returns a dict of results."""
    prior = pa.load_prior(prior_name)
    x = torch.randn(batch, *prior.event_shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((batch,), 0.5)
    with torch.no_grad():
        forward = best_of(lambda: prior(x, t), repeats=repeats * 3)
    sampler = pa.get_sampler("ddim", prior, steps)
    run = best_of(lambda: sampler((batch, *prior.event_shape), generator=torch.Generator()), repeats, 0)
    return {
        "prior": prior_name,
        "batch": batch,
        "train_images_per_s": training_throughput(prior, batch, repeats),
        "denoiser_evals_per_s": batch / forward,
        "forward_s": forward,
        f"ddim{steps}_s": run,
        "sampler_overhead": run / (steps * forward),
    }
