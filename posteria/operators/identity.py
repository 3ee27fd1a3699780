"""The identity operator ``y = x + w``: denoising."""

from __future__ import annotations

import torch

from posteria.operators.base import LinearOperator
from posteria.operators.noise_models import NoiseModel
from posteria.operators.svd import ImplicitSVD
from posteria.tensors import flat


class Identity(LinearOperator):
    """``A = I``: (B, *shape) -> (B, *shape); adjoint and pinv are the identity, ``s = 1``."""

    picture = "image"

    def __init__(self, shape: tuple[int, ...], sigma_y: float = 0.0, noise: NoiseModel | None = None) -> None:
        super().__init__(shape, shape, sigma_y, noise)
        self.register_buffer("singular_values", torch.ones(self.signal_dim))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y

    @property
    def svd(self) -> ImplicitSVD:
        def unflatten(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(z.shape[0], *self.event_shape)

        return ImplicitSVD(Vt=flat, V=unflatten, Ut=flat, U=unflatten, s=self.singular_values)
