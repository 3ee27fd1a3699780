"""RePaint (Lugmayr et al. 2022): inpainting by replacement, with jumps back in time to harmonise them."""

from __future__ import annotations

import math

import torch

from posteria.denoisers.base import Denoiser
from posteria.operators.mask import Mask
from posteria.posterior.base import Method, register, transition_builder
from posteria.posterior.ddnm import Replacement
from posteria.samplers.base import Noise, check_count


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


class RePaint(Replacement):
    """RePaint: DDPM with the known pixels replaced by the forward-noised measurement, and resampling jumps.

    The pairs ``(t, s)`` follow :func:`jump_levels` on the grid. A step down (``s < t``) is
    :class:`~posteria.posterior.ddnm.Replacement` with ``eta = 1``: ``x_s^unknown`` from the DDPM step and
    ``x_s^known = alpha_s y + sigma_s z`` (the paper's Algorithm 1, lines 5-8). A step up (``s > t``)
    re-noises by the forward kernel ``x_s ~ q(x_s | x_t)``, the Gaussian of mean ``(alpha_s / alpha_t) x_t``
    and variance ``sigma_s^2 - (alpha_s / alpha_t)^2 sigma_t^2`` (line 10), so that the next descent can
    make the unknown region agree with the known one.
    Defaults: ``jump = 10``, ``resample = 10`` and 250 steps (the paper's). Shapes: ``x_t`` (N, *event),
    ``y`` (N, m) the kept pixels of a :class:`~posteria.operators.Mask`. Reference: Lugmayr, Danelljan,
    Romero, Yu, Timofte & Van Gool (2022), RePaint: inpainting using denoising diffusion probabilistic
    models, CVPR.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        steps: int,
        operator: Mask,
        y: torch.Tensor,
        jump: int = 10,
        resample: int = 10,
        **options: object,
    ) -> None:
        super().__init__(denoiser, steps, operator, y, eta=1.0, **options)
        self.jump, self.resample = check_count("jump", jump), check_count("resample", resample)
        grid = [float(t) for t in self.times]
        levels = jump_levels(self.steps, self.jump, self.resample)
        self.pairs = [
            (grid[self.steps - a], grid[self.steps - b]) for a, b in zip(levels[:-1], levels[1:], strict=True)
        ]

    @property
    def nfe(self) -> int:
        """One denoiser call per step down; the jumps up cost none."""
        return sum(1 for t, s in self.pairs if s < t)

    def step(self, x_t: torch.Tensor, t: float, s: float, noise: Noise, **cond: object) -> torch.Tensor:
        if s < t:
            return super().step(x_t, t, s, noise, **cond)
        (alpha_t, sigma_t), (alpha_s, sigma_s) = self.alpha_sigma(t), self.alpha_sigma(s)
        decay = alpha_s / alpha_t
        std = math.sqrt(max(sigma_s**2 - decay**2 * sigma_t**2, 0.0))
        return decay * x_t + std * noise.randn(tuple(x_t.shape[1:]), like=x_t)


register(
    Method(
        name="repaint",
        summary="Inpainting by replacement with resampling jumps back in time (RePaint)",
        reference="Lugmayr et al. (2022), RePaint: inpainting using denoising diffusion probabilistic "
        "models, CVPR",
        needs=("mask",),
        build=transition_builder(RePaint),
        default_steps=250,
    )
)
