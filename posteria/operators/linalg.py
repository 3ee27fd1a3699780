"""Batched conjugate gradients: solve ``M x = b`` per sample for a symmetric positive semi-definite ``M``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from posteria.tensors import expand_like, flat


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample real inner product ``<a_i, b_i>``: (B, *event) x (B, *event) -> (B,)."""
    return (flat(a) * flat(b)).sum(1)


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    rtol: float | None = None,
    max_iter: int | None = None,
) -> torch.Tensor:
    """Solve ``M x = b`` for each sample of a batch by conjugate gradients started at ``x = 0``.

    ``matvec`` applies ``M`` to a batch ``(B, *event)``; ``M`` must be symmetric positive semi-definite.
    Each sample has its own step sizes (no coupling through a batch norm) and stops when
    ``||b_i - M x_i|| <= rtol ||b_i||``. Started at 0 on ``b`` in the range of ``M``, the iterates stay in
    that range, so for the normal equations ``A^T A x = A^T y`` the result is the minimum-norm least-squares
    solution ``pinv(A) y``. Defaults: ``rtol = eps^0.75`` of the dtype (about 2e-12 in float64),
    ``max_iter = 2 D``. A smaller ``rtol`` is raised to ``10 eps``: below it the recursive residual is
    rounding, and iterating on would amplify that rounding along M's null space (float32 compressed
    sensing at ``rtol = 1e-9`` reached |x| = 4e10).
    Reference: Hestenes and Stiefel (1952); Golub and Van Loan, algorithm 11.3.2.
    """
    eps = torch.finfo(b.dtype).eps
    rtol = max(eps**0.75 if rtol is None else rtol, 10 * eps)
    max_iter = 2 * flat(b).shape[1] if max_iter is None else max_iter
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), _dot(r, r)
    stop = rtol**2 * rr
    for _ in range(max_iter):
        if bool((rr <= stop).all()):
            break
        Mp = matvec(p)
        pMp = _dot(p, Mp)
        active = (rr > stop) & (pMp > 0)
        alpha = torch.where(active, rr / torch.where(active, pMp, 1), 0)
        x = x + expand_like(alpha, x) * p
        r = r - expand_like(alpha, r) * Mp
        rr_new = _dot(r, r)
        beta = torch.where(active, rr_new / torch.where(active, rr, 1), 0)
        p = r + expand_like(beta, p) * p
        rr = torch.where(active, rr_new, rr)
    return x
