"""Implicit singular value decompositions ``A = U diag(s) V^T`` as functions, never as D x D matrices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from posteria.tensors import flat

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImplicitSVD:
    """``A x = U(s * Vt(x))`` with orthogonal ``V`` (D x D) and ``U`` orthonormal on the range of ``A``.

    Attributes (``D = prod(event_shape)``):
        Vt: ``(B, *event) -> (B, D)``, coordinates of ``x`` in the right singular basis.
        V: ``(B, D) -> (B, *event)``, the inverse of ``Vt`` (``V(Vt(x)) == x``).
        Ut: ``(B, *measurement) -> (B, D)``, coordinates of ``y`` on the left singular vectors
            (entry ``i`` is 0 where ``s_i = 0``, or the component along ``U e_i`` when ``U`` is full).
        U: ``(B, D) -> (B, *measurement)``, ``Ut(U(z)) == z`` for ``z`` supported where ``s > 0``.
        s: ``(D,)`` singular values, 0 where ``A`` has none; ordered as the operator finds natural
            (kept pixels first for a mask, per frequency for a blur), not sorted.

    Then ``pinv(A) y = V(Ut(y) / s)`` on ``s > 0`` (see :meth:`pinv`). Reference: the ``H_functions`` of
    DDRM (Kawar et al., 2022), ``functions/svd_replacement.py``.
    """

    Vt: Fn
    V: Fn
    Ut: Fn
    U: Fn
    s: torch.Tensor

    def inverse_singular_values(self, like: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
        """``1 / s`` where ``s > rtol max(s)``, else 0, in the dtype of ``like``; default ``rtol = D eps``."""
        s = self.s.to(device=like.device, dtype=like.real.dtype if like.is_complex() else like.dtype)
        rtol = s.numel() * torch.finfo(s.dtype).eps if rtol is None else rtol
        keep = s > rtol * s.max()
        return torch.where(keep, 1 / torch.where(keep, s, 1), 0)

    def pinv(self, y: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
        """``pinv(A) y = V(s^+ * Ut(y))``: (B, *measurement) -> (B, *event)."""
        z = self.Ut(y)
        return self.V(z * self.inverse_singular_values(z, rtol))


def pad_to(z: torch.Tensor, size: int) -> torch.Tensor:
    """Pad ``(B, r)`` with zeros to ``(B, size)``."""
    return torch.nn.functional.pad(z, (0, size - z.shape[1]))


class DenseSVD(nn.Module):
    """The SVD of a dense ``(m, D)`` matrix, with the full ``V`` kept as Householder reflectors.

    ``A = U_r diag(s_r) Vh_r`` (thin SVD, ``r = min(m, D)``, computed once in float64). The full orthogonal
    ``Q`` (D x D) whose first ``r`` columns are ``Vh_r^T diag(d)`` (``d = +-1``, folded into ``U``) is stored
    as the ``D x r`` output of ``geqrf`` and applied with ``ormqr``: memory ``O(D r)``, not ``O(D^2)``.
    """

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        U, s, Vh = torch.linalg.svd(A.to(torch.float64), full_matrices=False)
        reflectors, tau = torch.geqrf(Vh.T.contiguous())
        signs = torch.sign(torch.diagonal(reflectors))
        dtype = A.dtype
        self.register_buffer("U_r", (U * signs).to(dtype))
        self.register_buffer("s_r", s.to(dtype))
        self.register_buffer("reflectors", reflectors.to(dtype))
        self.register_buffer("tau", tau.to(dtype))

    def implicit(self, event_shape: tuple[int, ...]) -> ImplicitSVD:
        """The :class:`ImplicitSVD` for signals of shape ``(B, *event_shape)`` and measurements ``(B, m)``."""
        D, r = self.reflectors.shape

        def vt(x: torch.Tensor) -> torch.Tensor:
            return torch.ormqr(self.reflectors.to(x), self.tau.to(x), flat(x).T, transpose=True).T

        def v(z: torch.Tensor) -> torch.Tensor:
            out = torch.ormqr(self.reflectors.to(z), self.tau.to(z), z.T, transpose=False).T
            return out.reshape(z.shape[0], *event_shape)

        def ut(y: torch.Tensor) -> torch.Tensor:
            return pad_to(y @ self.U_r.to(y), D)

        def u(z: torch.Tensor) -> torch.Tensor:
            return z[:, :r] @ self.U_r.to(z).T

        return ImplicitSVD(Vt=vt, V=v, Ut=ut, U=u, s=pad_to(self.s_r[None], D)[0])
