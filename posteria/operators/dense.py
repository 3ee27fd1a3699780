"""Dense matrix operators ``y = A x`` on flattened signals: a given matrix, Gaussian compressed sensing."""

from __future__ import annotations

import math

import torch

from posteria.errors import PosteriaError, check_count, check_shape
from posteria.operators.base import LinearOperator
from posteria.operators.noise_models import NoiseModel
from posteria.operators.svd import DenseSVD, ImplicitSVD
from posteria.tensors import flat


class MatrixOperator(LinearOperator):
    """``y = A flat(x)`` for a dense ``(m, D)`` matrix: (B, *shape) -> (B, m), ``shape`` default ``(D,)``.

    Adjoint ``A^T``; SVD exact (computed once in float64 at construction: build the operator in the
    dtype you will use it in, e.g. pass a float64 ``A`` for float64 work); ``pinv`` through it. An integer
    or boolean ``A`` is taken in the default float dtype; a complex one is refused.
    ``V`` is stored as Householder reflectors (:class:`~posteria.operators.svd.DenseSVD`), never D x D.
    """

    def __init__(
        self,
        A: torch.Tensor,
        sigma_y: float = 0.0,
        noise: NoiseModel | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> None:
        A = torch.as_tensor(A)
        if A.is_complex():
            raise PosteriaError(f"A must be a real matrix (complex ones are not supported), got {A.dtype}")
        if not A.is_floating_point():  # else the SVD, cast back to A's dtype, would be truncated to integers
            A = A.to(torch.get_default_dtype())
        if A.dim() != 2 or A.numel() == 0 or not bool(torch.isfinite(A).all()):
            raise PosteriaError(f"A must be a finite real 2-D matrix (m, D), got shape {tuple(A.shape)}")
        shape = (A.shape[1],) if shape is None else check_shape("shape", shape)
        if math.prod(shape) != A.shape[1]:
            raise PosteriaError(
                f"A has {A.shape[1]} columns; expected one per entry of the signal's shape {shape}, "
                f"{math.prod(shape)}"
            )
        super().__init__(shape, (A.shape[0],), sigma_y, noise)
        self.register_buffer("matrix", A.clone())
        self.decomposition = DenseSVD(A)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return flat(x) @ self.matrix.to(x).T

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y @ self.matrix.to(y)).reshape(y.shape[0], *self.event_shape)

    @property
    def svd(self) -> ImplicitSVD:
        return self.decomposition.implicit(self.event_shape)


class RandomProjection(MatrixOperator):
    """Compressed sensing ``y = A flat(x)`` with ``A_ij ~ N(0, 1 / m)`` i.i.d.: (B, *shape) -> (B, m).

    The scaling makes ``E[A^T A] = I`` (columns of unit expected norm). Drawn in float64 from ``generator``
    and stored in the default dtype. Reference: Candes and Tao (2006); DDRM's ``GeneralH``.
    """

    def __init__(
        self,
        m: int,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        sigma_y: float = 0.0,
        noise: NoiseModel | None = None,
    ) -> None:
        m, D = check_count("m", m), math.prod(check_shape("shape", shape))
        A = torch.randn(m, D, generator=generator, dtype=torch.float64) / math.sqrt(m)
        super().__init__(A.to(torch.get_default_dtype()), sigma_y, noise, shape)
