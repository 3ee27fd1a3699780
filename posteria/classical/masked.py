"""The ``regression`` baseline: one forward pass of a masked regression network, ``E[x | x_mask]``."""

from __future__ import annotations

import torch

from posteria.classical.estimate import register_estimate
from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError
from posteria.operators.mask import Mask


def masked_regression(
    denoiser: Denoiser | None, operator: Mask, y: torch.Tensor, steps: int, network: str = "mnist"
) -> torch.Tensor:
    """``f(A^+ y, mask)``: the conditional-mean regressor ``network`` (a shipped name or a folder, see
    :func:`posteria.priors.load_regressor`) on the zero-filled image; ``steps`` is unused."""
    from posteria.priors import load_regressor  # priors imports the network module of this package

    model = load_regressor(network)
    expected = tuple(model.card["event_shape"])
    if expected != operator.event_shape:
        raise PosteriaError(
            f"regression network {network!r} was trained on images of shape {expected}, "
            f"but the operator's are {operator.event_shape}"
        )
    x_filled = operator.pinv(y)
    mask = operator.mask.to(x_filled.dtype).expand_as(x_filled)
    return model.to(x_filled.dtype)(x_filled, mask)


register_estimate(
    masked_regression,
    "regression",
    "masked-autoencoder-style network trained for E[x | masked x] (no prior; the blurry mean)",
    "He et al. (2022), masked autoencoders",
    ("mask",),
    default_steps=1,
)
