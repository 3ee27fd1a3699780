"""Jumps back in time to harmonise measured and generated content: RePaint (Lugmayr et al. 2022) and
DDNM's time travel (Wang et al. 2023), one mixin on top of replacement and DDNM."""

from __future__ import annotations

import math

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import check_count
from posteria.operators.base import LinearOperator
from posteria.operators.mask import Mask
from posteria.posterior.base import register, transition_method
from posteria.posterior.ddnm import DDNM, Replacement
from posteria.samplers.base import Noise, Sampler


def jump_levels(steps: int, jump: int, resample: int) -> list[int]:
    """RePaint's time schedule as grid levels ``l``, the steps still to go (``steps`` at ``t = 1``, 0 at 0).

    Walk down one level at a time; on reaching ``l in {1, 1 + jump, 1 + 2 jump, ...}`` (below
    ``steps - jump + 1``) for one of its first ``resample - 1`` times, walk back up ``jump`` levels. This is
    ``get_schedule_jump`` of the official code with its ``t = l - 1``: each resampling point is visited
    ``resample`` times, so the run makes about ``steps + (steps / jump) (resample - 1) jump`` denoising steps.
    """
    left = {level: resample - 1 for level in range(1, steps - jump + 1, jump)}
    levels, level = [steps], steps
    while level > 0:
        level -= 1
        levels.append(level)
        if left.get(level, 0) > 0:
            left[level] -= 1
            levels.extend(range(level + 1, level + jump + 1))
            level += jump
    return levels


class TimeTravel(Sampler):
    """Mixin: walk the grid by :func:`jump_levels`, re-noising on the way up, so each step down can
    harmonise the measured and the generated parts again ("resampling" in RePaint, "time travel" in
    DDNM). A step down (``s < t``) is the next class's ``step``; a step up (``s > t``) draws
    ``x_s ~ q(x_s | x_t)``, the Gaussian of mean ``(alpha_s / alpha_t) x_t`` and variance
    ``sigma_s^2 - (alpha_s / alpha_t)^2 sigma_t^2`` (RePaint's Algorithm 1, line 10). ``resample = 1``
    walks straight down: the plain sampler. List it first: ``class M(TimeTravel, Base)``.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        steps: int,
        *args: object,
        jump: int = 10,
        resample: int = 10,
        **options: object,
    ) -> None:
        super().__init__(denoiser, steps, *args, **options)
        self.jump, self.resample = check_count("jump", jump), check_count("resample", resample)
        grid = [float(t) for t in self.times]
        levels = jump_levels(self.steps, self.jump, self.resample)
        self.pairs = [
            (grid[self.steps - a], grid[self.steps - b]) for a, b in zip(levels[:-1], levels[1:], strict=True)
        ]

    @property
    def nfe(self) -> int:
        """One denoiser call per step down (and per corrector step, if any, but after the last); the
        jumps up cost none."""
        downs = sum(1 for t, s in self.pairs if s < t)
        return downs + getattr(self, "corrector_steps", 0) * (downs - 1)

    def step(self, x_t: torch.Tensor, t: float, s: float, noise: Noise, **cond: object) -> torch.Tensor:
        if s < t:
            return super().step(x_t, t, s, noise, **cond)
        (alpha_t, sigma_t), (alpha_s, sigma_s) = self.alpha_sigma(t), self.alpha_sigma(s)
        decay = alpha_s / alpha_t
        std = math.sqrt(max(sigma_s**2 - decay**2 * sigma_t**2, 0.0))
        self.travelled(t, s)
        return decay * x_t + std * noise.randn(tuple(x_t.shape[1:]), like=x_t)

    def travelled(self, t: float, s: float) -> None:
        """Called on each jump up ``t -> s``, for samplers that track what ``x_t`` holds; nothing here."""


class RePaint(TimeTravel, Replacement):
    """RePaint: DDPM with the known pixels replaced by the forward-noised measurement, and resampling jumps.

    The pairs ``(t, s)`` follow :func:`jump_levels` on the grid (:class:`TimeTravel`). A step down is
    :class:`~posteria.posterior.ddnm.Replacement` with ``eta = 1``: ``x_s^unknown`` from the DDPM step and
    ``x_s^known = alpha_s y + sigma_s z`` (the paper's Algorithm 1, lines 5-8); a step up re-noises.
    Defaults: ``jump = 10``, ``resample = 10`` and 250 steps (the paper's). Shapes: ``x_t`` (N, *event),
    ``y`` (N, m) the kept pixels of a :class:`~posteria.operators.Mask`. Reference: Lugmayr, Danelljan,
    Romero, Yu, Timofte & Van Gool (2022), RePaint: inpainting using denoising diffusion probabilistic
    models, CVPR.
    """

    fixed_options = ("eta",)

    def __init__(
        self, denoiser: Denoiser, steps: int, operator: Mask, y: torch.Tensor, **options: object
    ) -> None:
        super().__init__(denoiser, steps, operator, y, eta=1.0, **options)


class TimeTravelDDNM(TimeTravel, DDNM):
    """DDNM with the time-travel trick of its paper (Wang, Yu & Zhang 2023, section 3.4, Algorithm 2):
    after a step down to level ``l`` at a travel point, go back up ``jump`` levels and redo them,
    ``resample`` times in all. Off by default (``resample = 1``: :class:`~posteria.posterior.ddnm.DDNM`);
    the paper travels ``jump = 10`` levels for hard tasks (large inpainting holes, SR x8 and beyond)."""

    def __init__(
        self, denoiser: Denoiser, steps: int, operator: LinearOperator, y: torch.Tensor, resample: int = 1,
        **options: object,
    ) -> None:  # fmt: skip
        super().__init__(denoiser, steps, operator, y, resample=resample, **options)

    def travelled(self, t: float, s: float) -> None:
        DDNM.travelled(self, t, s)  # TimeTravel's no-op comes first in the MRO


register(
    transition_method(
        RePaint,
        name="repaint",
        summary="Inpainting by replacement with resampling jumps back in time (RePaint)",
        reference="Lugmayr et al. (2022), RePaint: inpainting using denoising diffusion probabilistic "
        "models, CVPR",
        needs=("mask",),
        default_steps=250,
    )
)
register(
    transition_method(
        TimeTravelDDNM,
        name="ddnm",
        summary="Null-space model: project each denoised estimate onto A x = y, then step (DDNM+ if noisy); "
        "time travel with resample > 1",
        reference="Wang, Yu & Zhang (2023), Zero-shot image restoration using denoising diffusion null-space "
        "model, ICLR",
        needs=("linear",),
        default_steps=100,
    )
)
