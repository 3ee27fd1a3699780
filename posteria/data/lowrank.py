"""Synthetic low-rank data: random low-rank matrices and the seed chapter's union of subspaces."""

from __future__ import annotations

import math

import torch

from posteria.data.mixture import GaussianMixture, check_count
from posteria.errors import PosteriaError


def random_low_rank_matrices(
    n: int,
    rows: int,
    cols: int,
    rank: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``n`` random matrices of rank exactly ``rank`` (with probability one), shape (n, rows, cols).

    ``M = U V / sqrt(rank)`` with ``U`` (rows, rank) and ``V`` (rank, cols) standard normal, so each
    entry has variance one. Built in float64, returned in ``dtype``.
    """
    for name, value in (("n", n), ("rows", rows), ("cols", cols), ("rank", rank)):
        check_count(name, value)
    if rank > min(rows, cols):
        raise PosteriaError(f"rank must be <= min(rows, cols) = {min(rows, cols)}, got {rank}")
    U = torch.randn(n, rows, rank, generator=generator, dtype=torch.float64)
    V = torch.randn(n, rank, cols, generator=generator, dtype=torch.float64)
    return (U @ V / math.sqrt(rank)).to(dtype)


def random_subspace_mixture(
    dim: int, rank: int, components: int, generator: torch.Generator | None = None
) -> GaussianMixture:
    """A union of ``components`` random ``rank``-dim subspaces of R^dim, as a low-rank Gaussian mixture.

    Component k is ``N(0, U_k U_k^T)`` with ``U_k`` (dim, rank) a uniformly random orthonormal basis
    (QR of a Gaussian matrix); weights are equal. ``mixture.factors`` holds the bases U_k.
    """
    for name, value in (("dim", dim), ("rank", rank), ("components", components)):
        check_count(name, value)
    if rank > dim:
        raise PosteriaError(f"rank must be <= dim = {dim}, got {rank}")
    G = torch.randn(components, dim, rank, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar-uniform bases
    return GaussianMixture.low_rank(torch.zeros(components, dim, dtype=torch.float64), Q)


def low_rank_subspace_mixture(
    n: int, dim: int, rank: int, components: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, GaussianMixture]:
    """``n`` samples (n, dim) from a fresh random union of subspaces, and the mixture they came from.

    ``x = U_k z`` with k uniform over ``components`` and ``z ~ N(0, I_rank)``, so every sample lies
    exactly in one ``rank``-dimensional subspace (seed chapter, Examples 7.5 and 7.6). The mixture is
    drawn first from ``generator``, then the samples.
    """
    mixture = random_subspace_mixture(dim, rank, components, generator)
    return mixture.sample(n, generator), mixture
