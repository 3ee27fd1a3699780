"""The low-rank baselines of :mod:`posteria.classical.lowrank` as ``solve`` methods, for operators that
observe entries of ``x`` (a mask or the identity): every image (or matrix) is completed on its own."""

from __future__ import annotations

import torch

from posteria.classical.estimate import register_estimate
from posteria.classical.lowrank import logdet_completion, nuclear_norm_completion, robust_pca
from posteria.denoisers.base import Denoiser
from posteria.operators.base import LinearOperator


def observed(operator: LinearOperator, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The zero-filled observation ``A^+ y`` (N, *event) and the 0/1 mask of observed entries."""
    filled = operator.pinv(y)
    mask = getattr(operator, "mask", None)
    return filled, torch.ones_like(filled) if mask is None else mask.to(filled.dtype).expand_as(filled)


def nuclear_norm(
    denoiser: Denoiser | None,
    operator: LinearOperator,
    y: torch.Tensor,
    steps: int,
    weight: float | None = None,
) -> torch.Tensor:
    """:func:`~posteria.classical.lowrank.nuclear_norm_completion` with ``steps`` iterations."""
    filled, mask = observed(operator, y)
    return nuclear_norm_completion(filled, mask, operator.sigma_y, weight, steps)


def logdet(
    denoiser: Denoiser | None,
    operator: LinearOperator,
    y: torch.Tensor,
    steps: int,
    epsilon: float | None = None,
    weight: float | None = None,
) -> torch.Tensor:
    """:func:`~posteria.classical.lowrank.logdet_completion` with ``steps`` iterations."""
    filled, mask = observed(operator, y)
    return logdet_completion(filled, mask, operator.sigma_y, epsilon, steps, weight)


def rpca(
    denoiser: Denoiser | None,
    operator: LinearOperator,
    y: torch.Tensor,
    steps: int,
    weight: float | None = None,
) -> torch.Tensor:
    """The low-rank part of :func:`~posteria.classical.lowrank.robust_pca` (sparse corruptions removed)."""
    filled, mask = observed(operator, y)
    return robust_pca(filled, mask, weight, steps)[0]


register_estimate(
    nuclear_norm,
    "nuclear-norm",
    "low-rank completion: 1/2||mask (X - y)||^2 + w ||X||_* by accelerated proximal gradient",
    "Cai, Candes and Shen (2010); Toh and Yun (2010)",
    ("entries", "image", "gaussian"),
    default_steps=300,
)
register_estimate(
    logdet,
    "logdet",
    "low-rank completion with the log-det (coding-rate) surrogate of rank, proximal gradient",
    "Fazel, Hindi and Boyd (2003); Ma et al., coding rate",
    ("entries", "image", "gaussian"),
    default_steps=300,
)
register_estimate(
    rpca,
    "rpca",
    "robust PCA: low-rank part of y = L + S (sparse S) by the inexact augmented Lagrangian",
    "Candes, Li, Ma and Wright (2011); Lin, Chen and Ma (2010)",
    ("entries", "image"),
    default_steps=500,
)
