"""The exact denoiser of an empirical distribution: the optimum a network reaches when it memorises."""

from __future__ import annotations

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError
from posteria.noise import Schedule
from posteria.tensors import flat

# Distances and softmax are accumulated in float64: |y|^2 - 2 y.x + |x|^2 cancels badly in float32.
_WORK_DTYPE = torch.float64


def _squared_distances(y: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """``|y_b - x_i|^2`` for (B, D) and (N, D) inputs, shape (B, N), by one matrix product."""
    d2 = (y**2).sum(-1, keepdim=True) - 2 * y @ data.T + (data**2).sum(-1)
    return d2.clamp_min(0)


class EmpiricalDenoiser(Denoiser):
    """``E[x | x_t] = sum_i softmax_i(-|x_t - alpha x_i|^2 / (2 sigma^2)) x_i``, exact for the data's
    empirical distribution ``p = (1/N) sum_i delta_{x_i}``.

    This is the minimiser of the denoising loss on the training set itself, so deterministic sampling
    with it reproduces training points (Karras et al. 2022, sec. 2; Kadkhodaie et al. 2024). The
    exponents are ``-|y - x_i|^2 / (2 r^2)`` with ``y = x_t / alpha`` and ``r = sigma / alpha``; the
    squared distances come from ``|y|^2 - 2 y.x_i + |x_i|^2`` (one matrix product) computed in float64,
    where the cancellation is harmless (4x faster than direct differences on CPU), and the softmax is
    accumulated over chunks of the dataset with a running maximum, so memory is O(B * chunk_size).
    At ``t = 0`` the temperature is clamped, which returns the nearest training point to ``x_t``.

    Args:
        schedule: the forward process.
        data: the training points, shape (N, *event_shape).
        chunk_size: how many training points are compared with the batch at once.
    """

    exact_covariance = True

    def __init__(self, schedule: Schedule, data: torch.Tensor, chunk_size: int = 4096) -> None:
        if data.dim() < 2 or data.shape[0] == 0:
            raise PosteriaError(f"data must have shape (N, *event) with N >= 1, got {tuple(data.shape)}")
        if chunk_size < 1:
            raise PosteriaError(f"chunk_size must be a positive integer, got {chunk_size}")
        super().__init__(schedule, tuple(data.shape[1:]))
        self.register_buffer("data", flat(data))
        self.chunk_size = int(chunk_size)

    def inverse_temperature(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``1 / (2 r_t^2)`` of shape (B, 1), clamped so that ``|y - x_i|^2`` times it stays finite."""
        alpha, sigma = (c.to(like) for c in self.schedule(t))
        beta = alpha**2 / (2 * sigma**2)  # inf at sigma = 0, clamped below
        return beta.clamp_max(torch.finfo(like.dtype).max ** 0.25)[:, None]

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        work = dict(dtype=_WORK_DTYPE, device=x_t.device)
        alpha = self.schedule(t)[0].to(**work)[:, None]
        y = flat(x_t).to(**work) / alpha  # (B, D)
        beta = self.inverse_temperature(t, y)  # (B, 1)
        running_max = torch.full_like(beta, -torch.inf)
        norm = torch.zeros_like(beta)
        acc = torch.zeros_like(y)
        for chunk in self.data.to(**work).split(self.chunk_size):
            logits = -beta * _squared_distances(y, chunk)
            new_max = torch.maximum(running_max, logits.amax(-1, keepdim=True))
            scale, p = torch.exp(running_max - new_max), torch.exp(logits - new_max)
            norm = norm * scale + p.sum(-1, keepdim=True)
            acc = acc * scale + p @ chunk
            running_max = new_max
        return (acc / norm).reshape(x_t.shape).to(x_t.dtype)
