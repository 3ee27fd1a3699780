"""``posteria bench speed``: training and sampling throughput of a prior, and the sampler overhead.

The overhead ratio is the wall time of a 50-step DDIM run divided by what its 50 network forwards cost
at the machine's speed during that run (the network timed inside the run, as ``bench restore`` does):
1.0 means the sampler costs nothing beyond the network. The layout speed-ups are the network's forward
(and forward + backward) time with contiguous weights over its time with the channels-last weights
posteria loads (``posteria.nn.channels_last``), measured alternately.
"""

from __future__ import annotations

import copy
import time
from functools import partial
from statistics import median

import torch

import posteria as pa
from posteria.bench.timing import NetworkClock, NetworkCost, best_of
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


def layout_speedups(prior: pa.Denoiser, x: torch.Tensor, t: torch.Tensor, repeats: int) -> dict[str, float]:
    """Contiguous-weights time / channels-last time of the forward and of forward + backward (a VJP)."""
    contiguous = copy.deepcopy(prior).to(memory_format=torch.contiguous_format)

    def forward(model: pa.Denoiser) -> None:
        with torch.no_grad():
            model(x, t)

    def forward_backward(model: pa.Denoiser) -> None:
        x_ = x.clone().requires_grad_(True)
        torch.autograd.grad(model(x_, t), x_, x)

    speedups = {}
    for name, fn in (("forward", forward), ("forward_backward", forward_backward)):
        slow, fast = partial(fn, contiguous), partial(fn, prior)
        pairs = [(best_of(slow, 1), best_of(fast, 1)) for _ in range(repeats)]  # alternate: drift cancels
        speedups[f"channels_last_speedup_{name}"] = min(a for a, _ in pairs) / min(b for _, b in pairs)
    return speedups


def sampler_overhead(prior: pa.Denoiser, steps: int, batch: int, repeats: int) -> tuple[float, float]:
    """The fastest of ``repeats`` DDIM runs in seconds, and the median over the runs of wall time / what
    its ``steps`` network forwards cost at the machine's speed during that run (:class:`NetworkClock`)."""
    sampler = pa.get_sampler("ddim", prior, steps)
    times, overheads = [], []
    for _ in range(repeats):
        bare = NetworkCost.measure(prior, batch)
        with NetworkClock(prior.backbone) as clock:
            start = time.perf_counter()
            sampler((batch, *prior.event_shape), generator=torch.Generator())
            times.append(time.perf_counter() - start)
        overheads.append(times[-1] / (steps * bare.during(clock).forward))
    return min(times), median(overheads)


def run_speed(prior_name: str = "mnist", batch: int = 64, steps: int = 50, repeats: int = 3) -> dict:
    """Measure throughput and overhead; returns a dict of results."""
    prior = pa.load_prior(prior_name)
    x = torch.randn(batch, *prior.event_shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((batch,), 0.5)
    with torch.no_grad():
        forward = best_of(lambda: prior(x, t), repeats=repeats * 3)
    run, overhead = sampler_overhead(prior, steps, batch, repeats)
    return {
        "prior": prior_name,
        "batch": batch,
        "train_images_per_s": training_throughput(prior, batch, repeats),
        "denoiser_evals_per_s": batch / forward,
        "forward_s": forward,
        f"ddim{steps}_s": run,
        "sampler_overhead": overhead,
        **layout_speedups(prior, x, t, repeats * 3),
    }
