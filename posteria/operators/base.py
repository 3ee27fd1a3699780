"""The Operator contract: a measurement model ``y = A(x) + w`` on model-space signals ``(B, *event)``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from posteria.errors import (
    PosteriaError,
    check_count,
    check_finite,
    check_generator,
    check_positive,
    check_shape,
)
from posteria.operators.linalg import conjugate_gradient
from posteria.operators.noise_models import GaussianNoise, NoiseModel, check_noise_model
from posteria.operators.svd import ImplicitSVD


def _shape_text(shape: tuple[int, ...], batch: int | None = None) -> str:
    return f"({'B' if batch is None else batch}, " + ", ".join(map(str, shape)) + ")"


def make_noise(sigma_y: float, noise: NoiseModel | None) -> NoiseModel:
    """``noise`` when given, else Gaussian noise of standard deviation ``sigma_y``; one line for a bad
    ``sigma_y`` or ``noise`` here, where the operator is built, not at its first ``measure``."""
    check_positive("sigma_y", sigma_y, allow_zero=True)
    if noise is None:
        return GaussianNoise(sigma_y)
    if sigma_y != 0:
        raise PosteriaError("give either sigma_y or noise, not both")
    return check_noise_model(noise)


class Operator(nn.Module):
    """A measurement model ``y = A(x) + w``: ``A`` maps ``(B, *event_shape)`` to ``(B, *measurement_shape)``.

    Signals live in model space ``[-1, 1]``. Calling the module (or :meth:`A`) applies the noiseless
    ``A``; :meth:`measure` adds noise from ``noise``. Subclasses implement :meth:`_forward` on inputs of
    checked shape, and may set ``complex_measurement`` (k-space).

    Attributes:
        event_shape: the shape of one signal, e.g. ``(1, 28, 28)``.
        measurement_shape: the shape of one measurement.
        noise: the :class:`NoiseModel` of ``w`` (Gaussian ``sigma_y`` by default).
        linear: whether ``A`` is linear (then the operator is a :class:`LinearOperator`).
        picture: how a picture becomes a measurement (see the attribute's comment).
        name: a short name (the registry name when built by :func:`get_operator`).
    """

    linear: bool = False
    complex_measurement: bool = False
    #: How a picture becomes a measurement (``posteria solve --measurement y.png``): ``"image"`` when
    #: ``y`` is itself an image of ``measurement_shape`` in the signal's range (denoising, blur,
    #: downsampling); ``"pixels"`` when ``y`` is some pixels of an image of ``event_shape``, so that
    #: ``y = A(picture)`` (masks); None when ``y`` is no picture (projections, k-space, magnitudes).
    picture: str | None = None
    #: What :meth:`nearest_equivalent` forgives when a sample is registered, in words; None when it keeps
    #: ``x``.
    ambiguities: str | None = None

    def __init__(
        self,
        event_shape: tuple[int, ...],
        measurement_shape: tuple[int, ...],
        sigma_y: float = 0.0,
        noise: NoiseModel | None = None,
    ) -> None:
        super().__init__()
        # "shape" is what every concrete constructor calls the event shape
        self.event_shape = check_shape("shape", event_shape)
        self.measurement_shape = check_shape("measurement_shape", measurement_shape)
        self.noise = make_noise(sigma_y, noise)
        self.name = type(self).__name__.lower()

    @property
    def signal_dim(self) -> int:
        """``D = prod(event_shape)``."""
        return math.prod(self.event_shape)

    @property
    def sigma_y(self) -> float:
        """The Gaussian noise level; raises for other noise models."""
        if not isinstance(self.noise, GaussianNoise):
            raise PosteriaError(f"this needs Gaussian noise, but the operator has {self.noise!r}")
        return self.noise.sigma_y

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x)``: (B, *event_shape) -> (B, *measurement_shape), noiseless."""
        self._expect_signal(x)
        return self._forward(x)

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 - the operator's conventional name
        """Alias of calling the module: ``A(x)``."""
        return self(x)

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``y = A(x) + w`` with ``w`` drawn from ``noise`` using ``generator``: shape (B, *measurement)."""
        self.check_signal(x)
        check_generator(generator)
        with torch.no_grad():
            return self.noise.sample(self(x), generator)

    def nearest_equivalent(
        self, x: torch.Tensor, reference: torch.Tensor, tolerance: torch.Tensor
    ) -> torch.Tensor:
        """Each sample of ``x`` (B, *event) moved, within the trivial ambiguities of a nonlinear operator
        that no prior can resolve (phase retrieval's rotation and translations), to the signal nearest to
        ``reference`` (B, *event) whose measurement differs from ``A(x)`` by at most ``tolerance`` (B,):
        for registering samples (:func:`~posteria.metrics.image.aligned`). ``x`` itself by default: a
        linear operator's null space is the prior's to fill, not an ambiguity to forgive."""
        return x

    def jacobian_norm2(self, x: torch.Tensor) -> torch.Tensor | None:
        """``||J(x)||^2``, the top eigenvalue of ``J^T J`` at each sample of ``x`` (B, *event) -> (B,), when
        known in closed form; None otherwise (methods then estimate it by power iteration,
        :func:`~posteria.posterior.daps.jacobian_norm2`)."""
        return None

    def vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """``(A(x), v -> J(x)^T v)``: the measurement (B, *measurement) and the pullback of a cotangent ``v``
        of that shape to (B, *event), ``Re(J^H v)`` for complex measurements, so that
        ``J^T (y - A(x)) / s^2`` is the likelihood's gradient. By autograd through ``A`` (a graph kept
        until the pullback is called, once: it frees the graph); operators that know ``J^T`` in closed
        form override it, with a pullback that can be called any number of times."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            value = self(x)

        def pullback(v: torch.Tensor) -> torch.Tensor:
            (grad,) = torch.autograd.grad(value, x, v)
            return grad

        return value.detach(), pullback

    def log_likelihood(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(y | x) = log p_noise(y | A(x))`` per sample: y (B, *measurement), x (B, *event) -> (B,)."""
        mean = self(x)
        self.check_measurement(y, batch=x.shape[0])
        return self.noise.log_likelihood(y, mean)

    def _expect_shape(
        self, name: str, t: torch.Tensor, shape: tuple[int, ...], batch: int | None = None
    ) -> None:
        """Raise one line unless ``t`` is a tensor of shape ``(B, *shape)``, ``B >= 1`` (an empty batch
        fails deep inside reshapes and FFTs), and ``B = batch`` when given (y must go with its x, one
        measurement per signal, not broadcast against them)."""
        if not isinstance(t, torch.Tensor):
            raise PosteriaError(
                f"{name} must be a torch.Tensor of shape {_shape_text(shape, batch)}, got {type(t).__name__}"
            )
        if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != shape:
            raise PosteriaError(f"{name} must have shape {_shape_text(shape, batch)}, got {tuple(t.shape)}")
        if t.shape[0] == 0:
            noun = "signal" if name == "x" else "measurement"
            raise PosteriaError(f"{name} must hold at least one {noun}, got a batch of 0")
        if batch is not None and t.shape[0] != batch:
            raise PosteriaError(f"{name} must have shape {_shape_text(shape, batch)}, got {tuple(t.shape)}")

    def _expect_signal(self, x: torch.Tensor) -> None:
        """The checks of every call of ``A``: shape ``(B, *event_shape)`` and real (a complex ``x`` would
        pass through most operators and lose its imaginary part or give a complex ``y``)."""
        self._expect_shape("x", x, self.event_shape)
        if x.is_complex():
            raise PosteriaError(f"x must be real, got {x.dtype}")

    def check_signal(self, x: torch.Tensor) -> torch.Tensor:
        """Raise one line unless ``x`` is a finite real batch of shape ``(B, *event_shape)``."""
        self._expect_signal(x)
        return check_finite("x", x)

    def check_measurement(self, y: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """Raise one line unless ``y`` is a finite floating-point batch (complex for k-space) of shape
        ``(B, *measurement_shape)`` (``B = batch`` when given). An integer ``y`` would give integer images
        (zero filling) or fail inside ``torch.finfo``."""
        self._expect_shape("y", y, self.measurement_shape, batch)
        if y.is_complex() != self.complex_measurement:
            kind = "complex" if self.complex_measurement else "real"
            raise PosteriaError(f"y must be {kind}, got {y.dtype}")
        if not (y.is_complex() or y.is_floating_point()):
            raise PosteriaError(
                f"y must be a floating-point tensor, got {y.dtype} (convert it with y.float())"
            )
        return check_finite("y", y)

    def check_prior(self, event_shape: tuple[int, ...] | None) -> None:
        """Raise one line unless a prior whose samples have ``event_shape`` (None: any) fits this operator."""
        if event_shape is not None and tuple(event_shape) != self.event_shape:
            raise PosteriaError(
                f"the prior's samples have shape {tuple(event_shape)} but the operator expects "
                f"{self.event_shape}"
            )

    def extra_repr(self) -> str:
        return (
            f"event_shape={self.event_shape}, measurement_shape={self.measurement_shape}, noise={self.noise}"
        )


class LinearOperator(Operator):
    """A linear ``A`` with ``adjoint``, ``pinv`` and, where one is known, an implicit ``svd``.

    Defaults, which subclasses override with closed forms: ``adjoint`` by autograd (a vector-Jacobian
    product of ``A`` at 0, :meth:`adjoint_autograd`); ``pinv`` from the SVD when there is one, else by
    conjugate gradients on the normal equations (:meth:`pinv_cg`). For complex measurements, the adjoint
    is taken for the real inner product ``Re <y, y'>`` (``x`` is real): ``A^* y = Re(A^H y)``.
    """

    linear = True

    @property
    def svd(self) -> ImplicitSVD | None:
        """The implicit SVD ``A = U diag(s) V^T``, or None when the operator has none."""
        return None

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint_autograd(y)

    def _pinv(self, y: torch.Tensor) -> torch.Tensor:
        svd = self.svd
        return svd.pinv(y) if svd is not None else self.pinv_cg(y)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y``: (B, *measurement_shape) -> (B, *event_shape), ``<A x, y> = <x, A^T y>``."""
        self._expect_shape("y", y, self.measurement_shape)
        return self._adjoint(y)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y``, the minimum-norm least-squares solution: (B, *measurement) -> (B, *event)."""
        self._expect_shape("y", y, self.measurement_shape)
        return self._pinv(y)

    def vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """``(A x, adjoint)``: ``J = A`` everywhere, so the pullback is the adjoint, with no graph."""
        return self(x).detach(), self.adjoint

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """``A^T A x``: (B, *event_shape) -> (B, *event_shape)."""
        return self._adjoint(self(x))

    def projection(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Data consistency ``x + A^+ (y - A x) = A^+ y + (I - A^+ A) x``: keep the null-space part of ``x``.

        The range-null space decomposition of DDNM (Wang et al., 2023, eq. 6); for a mask it replaces
        the measured pixels, for subsampled Fourier the measured k-space coefficients. Shapes: ``x``
        (B, *event), ``y`` (B, *measurement) -> (B, *event).
        """
        ax = self(x)
        self._expect_shape("y", y, self.measurement_shape, batch=x.shape[0])
        return x + self._pinv(y - ax)

    def proximal(
        self, x: torch.Tensor, y: torch.Tensor, rho: float, max_iter: int | None = None
    ) -> torch.Tensor:
        """``argmin_u ||y - A u||^2 + rho ||u - x||^2 = x + (A^T A + rho I)^-1 A^T (y - A x)``.

        The data step of half-quadratic splitting (DiffPIR's proximal step; Tikhonov at ``x = 0``):
        ``rho`` weighs ``x`` against the measurement, and ``rho = 0`` is :meth:`projection`. With an SVD
        it is the filter ``x + V diag(s / (s^2 + rho)) U^T (y - A x)``; otherwise conjugate gradients on
        ``A^T A + rho I``, ``max_iter`` iterations (default: to convergence). Shapes: ``x`` (B, *event),
        ``y`` (B, *measurement) -> (B, *event).
        """
        ax = self(x)
        self._expect_shape("y", y, self.measurement_shape, batch=x.shape[0])
        max_iter = None if max_iter is None else check_count("max_iter", max_iter)
        residual, svd = y - ax, self.svd
        if check_positive("rho", rho, allow_zero=True) == 0:
            step = self._pinv(residual) if svd is not None else self.pinv_cg(residual, max_iter=max_iter)
        elif svd is not None:
            z = svd.Ut(residual)
            s = svd.s.to(device=z.device, dtype=z.real.dtype)
            step = svd.V(z * (s / (s**2 + rho)))
        else:
            gram = lambda v: self.gram(v) + rho * v  # noqa: E731 - the matrix of one solve
            step = conjugate_gradient(gram, self._adjoint(residual), max_iter=max_iter)
        return x + (step.real if step.is_complex() else step)

    def adjoint_autograd(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y`` as the vector-Jacobian product of ``A`` at ``x = 0`` with cotangent ``y``.

        Exact for linear ``A`` (``J = A`` everywhere); for complex ``y`` torch returns ``Re(A^H y)``.
        Differentiable in ``y`` when ``y`` requires grad.
        """
        real = y.real.dtype if y.is_complex() else y.dtype
        with torch.enable_grad():
            x = torch.zeros((y.shape[0], *self.event_shape), dtype=real, device=y.device, requires_grad=True)
            (g,) = torch.autograd.grad(self._forward(x), x, y, create_graph=y.requires_grad)
        return g

    def pinv_cg(
        self, y: torch.Tensor, rtol: float | None = None, max_iter: int | None = None
    ) -> torch.Tensor:
        """``A^+ y`` by conjugate gradients on ``A^T A x = A^T y`` from 0 (minimum-norm solution)."""
        self._expect_shape("y", y, self.measurement_shape)
        return conjugate_gradient(self.gram, self._adjoint(y), rtol=rtol, max_iter=max_iter)
