"""Linear baselines: the minimum-norm least-squares solution and Tikhonov (ridge) regularisation."""

from __future__ import annotations

import torch

from posteria.classical.estimate import register_estimate
from posteria.denoisers.base import Denoiser
from posteria.errors import check_positive
from posteria.operators.base import LinearOperator


def least_squares(
    denoiser: Denoiser | None, operator: LinearOperator, y: torch.Tensor, steps: int
) -> torch.Tensor:
    """``x = A^+ y``, the minimum-norm minimiser of ``||y - A x||^2``: (N, *measurement) -> (N, *event).

    For a mask it is the zero-filled image, for MRI the zero-filled inverse FFT, for super-resolution
    the nearest-neighbour upsampling; ``steps`` is unused (the SVD or conjugate gradients decide).
    """
    x = operator.pinv(y)
    return x.real if x.is_complex() else x


def tikhonov(
    denoiser: Denoiser | None,
    operator: LinearOperator,
    y: torch.Tensor,
    steps: int,
    weight: float | None = None,
) -> torch.Tensor:
    """``x = argmin ||y - A x||^2 + lambda ||x||^2 = (A^T A + lambda I)^{-1} A^T y`` (Tikhonov, 1963).

    The MAP estimate under the prior ``x ~ N(0, I)`` and noise ``N(0, sigma_y^2 I)``, hence the default
    ``lambda = sigma_y^2`` (a floor of 1e-6 keeps it defined at ``sigma_y = 0``; ``weight = 0`` is
    :func:`least_squares`). :meth:`~posteria.operators.base.LinearOperator.proximal` at ``x = 0``: with an
    implicit SVD the filter ``V diag(s / (s^2 + lambda)) U^T y``, otherwise ``steps`` conjugate-gradient
    iterations on the normal equations.
    """
    lam = (
        max(operator.sigma_y**2, 1e-6)
        if weight is None
        else check_positive("weight", weight, allow_zero=True)
    )
    zero = torch.zeros((y.shape[0], *operator.event_shape), dtype=y.real.dtype, device=y.device)
    return operator.proximal(zero, y, lam, max_iter=steps)


register_estimate(
    least_squares,
    "least-squares",
    "minimum-norm least squares A^+ y (zero filling, no prior)",
    "Penrose (1955)",
    ("linear",),
    default_steps=1,
)
register_estimate(
    tikhonov,
    "tikhonov",
    "ridge-regularised least squares (A^T A + lambda I)^-1 A^T y, lambda = sigma_y^2",
    "Tikhonov (1963)",
    ("linear", "gaussian"),
    default_steps=100,
)
