"""The Denoiser contract: ``denoiser(x_t, t, **cond) -> E[x | x_t]``, same shape as ``x_t``."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from posteria import tweedie
from posteria.errors import PosteriaError, check_finite, check_time
from posteria.noise import Schedule
from posteria.tensors import batch_times, expand_like


class Denoiser(nn.Module):
    """An estimate of the posterior mean ``E[x | x_t]`` under ``x_t = alpha_t x + sigma_t eps``.

    Subclasses implement :meth:`denoise` on validated inputs: ``x_t`` of shape ``(B, *event_shape)``
    and ``t`` of shape ``(B,)`` in [0, 1]. Calling the module checks the inputs once and returns a
    tensor of the same shape as ``x_t``. The score and epsilon are derived here, nowhere else.

    Attributes:
        schedule: the forward process the denoiser was built for.
        event_shape: the shape of one sample, e.g. ``(1, 28, 28)``, or None if any shape is accepted.
        exact_covariance: True when ``d D / d x_t`` is exactly ``(alpha_t / sigma_t^2) Cov[x | x_t]``,
            symmetric positive semi-definite (closed-form denoisers). A trained network's Jacobian is only
            approximately so (MNIST prior, 30% inpainting, ``A C A^T``: 40% asymmetric and indefinite at
            mid noise), which limits how far a method may trust it (MMPS's conjugate gradients).
    """

    exact_covariance: bool = False

    def __init__(self, schedule: Schedule, event_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.schedule = schedule
        self.event_shape = tuple(event_shape) if event_shape is not None else None

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        raise NotImplementedError

    @property
    def reference(self) -> torch.Tensor:
        """An empty tensor in the dtype and on the device samples should have: those of the first
        floating-point parameter or buffer (default dtype on the CPU if there is none). Wrappers whose
        extra buffers differ (measurements, operator tables) override it to defer to their prior."""
        tensors = itertools.chain(self.parameters(), self.buffers())
        first = next((p for p in tensors if p.is_floating_point()), None)
        if first is None:
            return torch.empty(0, dtype=torch.get_default_dtype())
        return torch.empty(0, dtype=first.dtype, device=first.device)

    def forward(self, x_t: torch.Tensor, t: float | torch.Tensor, **cond) -> torch.Tensor:
        self.check_shape(x_t)
        check_finite("x_t", x_t)
        t = check_time(batch_times(t, x_t))
        return self.denoise(x_t, t, **cond)

    def check_shape(self, x_t: torch.Tensor) -> None:
        """Raise one clear line if ``x_t`` is not a batch of this denoiser's events."""
        if self.event_shape is not None and tuple(x_t.shape[1:]) != self.event_shape:
            raise PosteriaError(
                f"x_t must have shape (B, {', '.join(map(str, self.event_shape))}), got {tuple(x_t.shape)}"
            )

    def coefficients(self, t: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` broadcast against ``x_t``, in its dtype."""
        alpha, sigma = self.schedule(batch_times(t, x_t))
        return expand_like(alpha.to(x_t), x_t), expand_like(sigma.to(x_t), x_t)

    def score(self, x_t: torch.Tensor, t: float | torch.Tensor, **cond) -> torch.Tensor:
        """``grad log p_t(x_t)`` by Tweedie's formula."""
        alpha, sigma = self.coefficients(t, x_t)
        return tweedie.score_from_x0(x_t, self(x_t, t, **cond), alpha, sigma)

    def epsilon(self, x_t: torch.Tensor, t: float | torch.Tensor, **cond) -> torch.Tensor:
        """``E[eps | x_t]``."""
        alpha, sigma = self.coefficients(t, x_t)
        return tweedie.eps_from_x0(x_t, self(x_t, t, **cond), alpha, sigma)
