"""Reverse-time samplers (DDPM, DDIM, Euler, Heun, predictor-corrector) and the ``sample`` entry point."""

from __future__ import annotations

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_choice, check_count
from posteria.random import PerSampleNoise, draw_base_seed
from posteria.samplers.base import Noise, Sampler
from posteria.samplers.ddim import DDIM, DDPM
from posteria.samplers.langevin import PredictorCorrector
from posteria.samplers.ode import Euler, Heun

SAMPLERS: dict[str, type[Sampler]] = {
    "ddpm": DDPM,
    "ddim": DDIM,
    "euler": Euler,
    "heun": Heun,
    "pc": PredictorCorrector,
    "langevin": PredictorCorrector,
}


def get_sampler(name: str, denoiser: Denoiser, steps: int, **options: object) -> Sampler:
    """Build a sampler by name (a key of :data:`SAMPLERS`) with its options (``eta``, ``spacing``, ...)."""
    return SAMPLERS[check_choice("sampler", name, list(SAMPLERS))](denoiser, steps, **options)


def sample(
    denoiser: Denoiser,
    sampler: str = "ddim",
    steps: int = 50,
    n: int = 16,
    generator: torch.Generator | None = None,
    event_shape: tuple[int, ...] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    cond: dict[str, torch.Tensor] | None = None,
    **options: object,
) -> torch.Tensor:
    """Draw ``n`` samples of the denoiser's prior, shape ``(n, *event_shape)``.

    ``n`` is run in chunks of ``batch_size`` (default: all at once). One base seed is drawn from
    ``generator`` and sample ``i`` gets its own noise stream ``PerSampleNoise(base, ., offset=i)``, so
    the result does not depend on ``batch_size``, and the first ``m`` of ``n`` samples are the ``m``
    samples of a run with ``n = m``. ``options`` go to the sampler (``eta``, ``spacing``, ``snr``, ...);
    ``cond`` holds per-sample conditioning tensors of batch size ``n`` (e.g. ``labels``), sliced per chunk.
    """
    n = check_count("n", n)
    batch_size = n if batch_size is None else check_count("batch_size", batch_size)
    event_shape = denoiser.event_shape if event_shape is None else tuple(event_shape)
    if event_shape is None:
        raise PosteriaError("event_shape is required: the denoiser does not fix the shape of a sample")
    runner = get_sampler(sampler, denoiser, steps, **options)
    # The same single draw as PerSampleNoise.from_generator, so sample(n=m) equals runner((m, ...)).
    return run_in_chunks(runner, draw_base_seed(generator), (n, *event_shape), batch_size, progress)


def run_in_chunks(
    runner: Sampler, base_seed: int, shape: tuple[int, ...], batch_size: int, progress: bool = False
) -> torch.Tensor:
    """Run ``runner`` on ``shape = (n, *event)`` in chunks, chunk ``[i, i + b)`` drawing its noise from
    ``PerSampleNoise(base_seed, b, offset=i)``; returns (n, *event)."""
    n, event = shape[0], shape[1:]
    chunks = []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        noise = PerSampleNoise(base_seed, size, offset=start)
        chunks.append(runner((size, *event), noise=noise, progress=progress))
    return torch.cat(chunks)


__all__ = [
    "DDIM",
    "DDPM",
    "SAMPLERS",
    "Euler",
    "Heun",
    "Noise",
    "PredictorCorrector",
    "Sampler",
    "get_sampler",
    "sample",
]
