"""Composition ``outer o inner`` of two operators, e.g. blur then downsample."""

from __future__ import annotations

from collections.abc import Callable

import torch

from posteria.errors import PosteriaError
from posteria.operators.base import LinearOperator, Operator


class Composition(Operator):
    """``A(x) = outer(inner(x))``: (B, *inner.event_shape) -> (B, *outer.measurement_shape).

    The noise is the outer operator's (the inner one's is ignored). When both parts are linear the
    constructor returns a :class:`LinearComposition`, whose adjoint is ``inner^T(outer^T(y))`` and whose
    ``pinv`` uses conjugate gradients (the SVD of a product is not the product of the SVDs).
    """

    def __new__(cls, outer: Operator | None = None, inner: Operator | None = None) -> Composition:
        # No arguments when copy/pickle rebuild an instance: keep the class being rebuilt. Non-operators
        # are left for __init__ to refuse.
        if cls is Composition and all(isinstance(op, Operator) and op.linear for op in (outer, inner)):
            cls = LinearComposition
        return super().__new__(cls)

    def __init__(self, outer: Operator, inner: Operator) -> None:
        for name, op in (("outer", outer), ("inner", inner)):
            if not isinstance(op, Operator):
                raise PosteriaError(f"{name} must be an Operator, got {type(op).__name__}")
        if outer.event_shape != inner.measurement_shape or inner.complex_measurement:
            got = f"{inner.measurement_shape}{' complex' if inner.complex_measurement else ''}"
            raise PosteriaError(
                f"outer operator takes real signals of shape {outer.event_shape}, inner gives {got}"
            )
        super().__init__(inner.event_shape, outer.measurement_shape, noise=outer.noise)
        self.outer, self.inner = outer, inner
        self.complex_measurement = outer.complex_measurement
        self.name = f"{outer.name}*{inner.name}"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.inner(x))

    def vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The chain rule on the parts' own pullbacks: ``J^T v = J_inner^T (J_outer^T v)``, each in closed
        form where that part has one."""
        middle, inner_pullback = self.inner.vjp(x)
        value, outer_pullback = self.outer.vjp(middle)
        return value, lambda v: inner_pullback(outer_pullback(v))


class LinearComposition(Composition, LinearOperator):
    """A :class:`Composition` of two linear operators: ``adjoint(y) = inner.adjoint(outer.adjoint(y))``."""

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))
