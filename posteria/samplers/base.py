"""The Sampler: a reverse-time integrator over a fixed time grid; subclasses override only ``step``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from tqdm.auto import tqdm

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_count
from posteria.noise import time_grid
from posteria.random import PerSampleNoise


class Noise(Protocol):
    """What a sampler needs from a noise source: ``randn(event_shape, like) -> (n, *event_shape)``.

    :class:`~posteria.random.PerSampleNoise` is the default (sample ``i`` is the same whatever the
    batch); any object with these two methods works, e.g. one generator for a whole batch.
    """

    def __len__(self) -> int: ...

    def randn(self, event_shape: tuple[int, ...], like: torch.Tensor | None = None) -> torch.Tensor: ...


def batch_shape(x_or_shape: torch.Tensor | Sequence[int]) -> tuple[int, ...]:
    """The shape ``(n, *event)`` of ``x_1`` or of a given shape; one clear line if it is neither."""
    if isinstance(x_or_shape, torch.Tensor):
        shape = tuple(x_or_shape.shape)
    elif isinstance(x_or_shape, Sequence) and all(isinstance(d, int) for d in x_or_shape):
        shape = tuple(x_or_shape)
    else:
        shape = ()
    if len(shape) < 2:
        raise PosteriaError(f"x_or_shape must be x_1 or a shape (n, *event), got {x_or_shape!r}")
    return shape


class Sampler:
    """Integrate from ``t = 1`` to ``t = 0`` over ``times = time_grid(schedule, steps, spacing, t_min)``.

    ``times`` has shape (steps + 1,): ``1 = t_0 > ... > t_{steps-1} = t_min > t_steps = 0``. A run makes
    the ``steps`` transitions ``x_{t_i} -> x_{t_{i+1}}`` by :meth:`step`, the only method subclasses
    override. ``(alpha_t, sigma_t)`` on the grid are computed once, in float64, and handed out as
    Python floats by :meth:`alpha_sigma`, so a step costs the network call plus a few tensor ops.

    The loop runs under ``torch.no_grad()``: no graph is kept across steps. A step that needs a
    vector-Jacobian product through the denoiser takes it inside ``torch.enable_grad()`` and detaches.
    (Design after azula and k-diffusion: a sampler is a short pure loop over ``(denoiser, x, times)``.)
    """

    #: Options of a base class that this sampler sets itself (DDPM's ``eta = 1``): not the user's to give.
    fixed_options: tuple[str, ...] = ()

    def __init__(
        self,
        denoiser: Denoiser,
        steps: int,
        spacing: str | None = None,
        t_min: float | None = None,
        **options: object,
    ) -> None:
        if options:
            raise PosteriaError(f"unknown option(s) for {type(self).__name__}: {', '.join(sorted(options))}")
        self.denoiser = denoiser
        self.steps = check_count("steps", steps)
        self.times = time_grid(denoiser.schedule, self.steps, spacing, t_min)
        grid = [float(t) for t in self.times]
        self.pairs: list[tuple[float, float]] = list(zip(grid[:-1], grid[1:], strict=True))
        alpha, sigma = denoiser.schedule(torch.tensor(grid, dtype=torch.float64))
        self._alpha_sigma = {t: (float(a), float(s)) for t, a, s in zip(grid, alpha, sigma, strict=True)}

    @property
    def nfe(self) -> int:
        """Network (denoiser) evaluations per run; one per step unless a subclass says otherwise."""
        return self.steps

    def alpha_sigma(self, t: float) -> tuple[float, float]:
        """``(alpha_t, sigma_t)`` as Python floats: looked up on the grid, computed (float64) off it."""
        found = self._alpha_sigma.get(t)
        if found is None:
            alpha, sigma = self.denoiser.schedule(torch.tensor(t, dtype=torch.float64))
            found = (float(alpha), float(sigma))
        return found

    def step(self, x_t: torch.Tensor, t: float, s: float, noise: Noise, **cond: object) -> torch.Tensor:
        """One transition ``x_t -> x_s`` (``s < t``); ``x_t`` has shape (B, *event)."""
        raise NotImplementedError

    def __call__(
        self,
        x_or_shape: torch.Tensor | Sequence[int],
        *,
        generator: torch.Generator | None = None,
        noise: Noise | None = None,
        progress: bool = False,
        **cond: object,
    ) -> torch.Tensor:
        """Run the reverse process and return ``x_0`` of shape (n, *event).

        Args:
            x_or_shape: either ``x_1`` itself, shape (n, *event), or the shape ``(n, *event)``, in
                which case ``x_1 = sigma_1 eps`` is drawn from ``noise``.
            generator: seeds ``PerSampleNoise.from_generator(generator, n)`` when ``noise`` is None.
            noise: the per-sample noise source for ``x_1`` and every stochastic step; callers that
                chunk a large ``n`` pass ``PerSampleNoise(seed, size, offset)``.
            progress: show a tqdm bar over the steps.
            cond: passed unchanged to the denoiser (class labels, text embeddings, ...).
        """
        x, noise = self.initial(x_or_shape, generator, noise)
        with torch.no_grad():
            for t, s in tqdm(self.pairs, disable=not progress, desc=type(self).__name__, leave=False):
                x = self.step(x, t, s, noise, **cond)
        return x

    def initial(
        self, x_or_shape: torch.Tensor | Sequence[int], generator: torch.Generator | None, noise: Noise | None
    ) -> tuple[torch.Tensor, Noise]:
        """Return ``(x_1, noise)``: ``x_1`` given, or drawn as ``sigma_1 eps`` on the denoiser's device."""
        given = isinstance(x_or_shape, torch.Tensor)
        shape = batch_shape(x_or_shape)
        n = check_count("n (the batch size)", shape[0])
        noise = PerSampleNoise.from_generator(generator, n) if noise is None else noise
        if len(noise) != n:
            raise PosteriaError(f"noise holds {len(noise)} samples but the batch has {n}")
        if given:
            return x_or_shape, noise
        sigma_1 = self.alpha_sigma(self.pairs[0][0])[1]
        return sigma_1 * noise.randn(shape[1:], like=self.denoiser.reference), noise

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps}, nfe={self.nfe})"
