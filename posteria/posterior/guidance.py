"""Guidance by a conditional denoiser: the shared base of DPS, PiGDM and MMPS.

The seed chapter's organising identity: since ``x_t`` depends on ``y`` only through ``x``,
``E[x | x_t, y] = E[x | x_t] + (sigma_t^2 / alpha_t) grad_{x_t} log p(y | x_t)``
(Tweedie's formula applied to ``p(x_t | y)``), and ``E[x | x_t, y]`` is the denoiser of the posterior
``p(x | y)``. A guidance method approximates the last term and is a :class:`GuidedDenoiser`: any sampler run
on it samples (an approximation of) the posterior. The likelihood score is a vector-Jacobian product
through the prior denoiser, taken inside ``torch.enable_grad()`` within the call and detached, so no graph
outlives a sampler step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError
from posteria.operators.base import Operator
from posteria.operators.linalg import conjugate_gradient
from posteria.samplers import get_sampler
from posteria.samplers.base import Sampler
from posteria.samplers.ddim import DDIM
from posteria.tensors import expand_like, flat

Matvec = Callable[[torch.Tensor], torch.Tensor]


class GuidedDenoiser(Denoiser):
    """A denoiser ``E[x | x_t, y]`` built from a prior ``E[x | x_t]``, an operator and measurements.

    Sample ``i`` of a batch ``x_t`` (N, *event) is conditioned on ``y[i]`` (N, *measurement); the
    sampler's batch must therefore be the batch of ``y`` (``solve`` repeats each measurement ``n`` times).
    Subclasses implement :meth:`denoise`. Every per-sample quantity (residual norms, step sizes, linear
    solves) is computed sample by sample: nothing couples the batch.

    Attributes:
        vjps_per_call: vector-Jacobian products through the prior per call, on top of its one forward
            pass (a vjp costs about two forward passes): the method's cost is ``steps`` times that.
    """

    vjps_per_call: int = 1

    def __init__(self, prior: Denoiser, operator: Operator, y: torch.Tensor) -> None:
        super().__init__(prior.schedule, operator.event_shape)
        operator.check_prior(prior.event_shape)  # once: calls check x_t against the operator's shape only
        operator.check_measurement(y)
        self.prior, self.operator = prior, operator
        self.register_buffer("y", y.detach().clone())

    @property
    def reference(self) -> torch.Tensor:
        """Samples take the prior's dtype and device, not those of ``y`` or the operator's tables."""
        return self.prior.reference

    @functools.cached_property
    def noise_variance(self) -> torch.Tensor | float:
        """The noise variance of the Gaussian likelihood the method assumes: ``sigma_y^2``, or per entry
        of ``y`` (N, *measurement) for noise approximated as Gaussian (Poisson; see
        :meth:`~posteria.operators.noise_models.NoiseModel.likelihood_variance`)."""
        return self.operator.noise.likelihood_variance(self.y)

    def noise_covariance(self, u: torch.Tensor) -> torch.Tensor:
        """``S u`` for measurements ``u`` (N, *measurement): ``sigma_y^2 u``, or ``diag(v) u``."""
        if isinstance(self.noise_variance, float):
            return self.noise_variance * u
        return self.noise_variance.to(device=u.device, dtype=u.real.dtype) * u

    def mean_noise_variance(self, like: torch.Tensor) -> torch.Tensor:
        """The mean of ``S``'s diagonal per sample, (N,) in the dtype and device of ``like`` (N,)."""
        if isinstance(self.noise_variance, float):
            return torch.full_like(like, self.noise_variance)
        return flat(self.noise_variance).mean(1).to(like)

    def inverse_sqrt_preconditioner(self, r2: torch.Tensor) -> Matvec:
        """``v -> P^-1/2 v`` for ``P = r^2 A A^T + s^2 I``, ``r2`` (B,) float64: with ``A = U S V^T``,
        ``P^-1/2 v = U (p^-1/2 U^T v) + (v - U U^T v) / s``, ``p_i = r^2 s_i^2 + s^2``, ``s^2`` the mean
        noise variance (any symmetric positive ``P`` leaves the solution as it is; this one is close).

        The second term, the part of ``v`` off the range of ``U``, is dropped when that range is the whole
        measurement space (masks, full-rank matrices): computed anyway it would be round-off times ``1 / s``.
        Noiseless measurements drop it too, with the directions whose ``s_i`` is round-off (DDRM's cut-off,
        :meth:`~posteria.operators.svd.ImplicitSVD.inverse_singular_values`): there ``A C A^T`` is singular
        off the range, ``y - A x0`` has only round-off there, and ``A^T`` kills what ``u`` holds there, so
        the solve is the minimum-norm one (kept, that part scaled float32 round-off by ``1e8`` and MMPS on
        noiseless k-space reached 1e13). At ``s = 0`` the floor ``s^2 >= 1e-16 r^2 max s_i^2`` keeps ``P``
        invertible on the range.
        """
        svd = self.operator.svd
        s = svd.s.to(device=r2.device, dtype=torch.float64)
        noiseless = isinstance(self.noise_variance, float) and self.noise_variance == 0
        measured = self.measured_directions().to(r2.device)
        floor = torch.clamp_min(self.mean_noise_variance(r2), 1e-16 * r2 * s.max() ** 2)[:, None]
        scale = (r2[:, None] * s**2 + floor).rsqrt()
        in_range_only = noiseless or int(measured.sum()) == self.measurement_dim
        # Off a full range, U (p^-1/2 U^T v) + (v - U U^T v) / s with one U: U ((p^-1/2 - 1/s) U^T v) + v / s.
        off_range = torch.zeros_like(floor) if in_range_only else floor.rsqrt()
        in_range = torch.where(measured, scale - off_range, 0)

        def apply(v: torch.Tensor) -> torch.Tensor:
            out = svd.U(in_range.to(v.real.dtype) * svd.Ut(v))
            return out if in_range_only else out + expand_like(off_range[:, 0], v) * v

        return apply

    def measured_directions(self) -> torch.Tensor:
        """Which singular directions of ``A`` a Gaussian correction keeps, boolean (k,): ``s_i > 0``, and for
        noiseless measurements only those above DDRM's round-off cut-off
        (:meth:`~posteria.operators.svd.ImplicitSVD.inverse_singular_values`), in the operator's own
        precision: a float32 matrix's round-off singular values are ~1e-7 of the largest, far above
        float64's cut, and ``1 / s`` there would scale round-off into the sample."""
        svd = self.operator.svd
        noiseless = isinstance(self.noise_variance, float) and self.noise_variance == 0
        return (svd.inverse_singular_values(svd.s) if noiseless else svd.s) > 0

    @property
    def measurement_dim(self) -> int:
        """The real dimension of the measurement space (twice the entries for complex measurements)."""
        return real_view(self.y[:1]).numel()

    def measurements(self, x_t: torch.Tensor) -> torch.Tensor:
        """``y`` in the dtype (real or complex) and on the device of ``x_t``, checked against its batch."""
        if x_t.shape[0] != self.y.shape[0]:
            raise PosteriaError(
                f"x_t holds {x_t.shape[0]} samples but there are {self.y.shape[0]} measurements"
            )
        dtype = torch.complex128 if x_t.dtype == torch.float64 else torch.complex64
        return self.y.to(device=x_t.device, dtype=dtype if self.y.is_complex() else x_t.dtype)

    def prior_with_graph(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict) -> tuple[torch.Tensor, ...]:
        """``(x, x0)``: ``x_t`` as a fresh leaf that requires grad and ``x0 = D(x, t)`` with its graph.

        Call it inside ``torch.enable_grad()`` (samplers run under ``no_grad``). ``x_t`` and ``t`` (B,)
        were checked by this wrapper's own call, so the prior's ``denoise`` is called without checking
        them again.
        """
        x = x_t.detach().requires_grad_(True)
        return x, self.prior.denoise(x, t, **cond)

    def gamma(self, t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """``sigma_t^2 / alpha_t``, the weight of the likelihood score in ``E[x | x_t, y]``, like ``x_t``."""
        alpha, sigma = self.coefficients(t, x_t)
        return sigma**2 / alpha

    def extra_repr(self) -> str:
        return f"operator={self.operator.name}, measurements={tuple(self.y.shape)}"


def vjp(output: torch.Tensor, inputs: torch.Tensor, v: torch.Tensor, retain: bool = True) -> torch.Tensor:
    """``J^T v`` for ``J = d output / d inputs``, per sample when the map acts sample by sample.

    Zeros where ``output`` does not depend on ``inputs`` (e.g. a constant prior); the graph is kept
    for further products unless ``retain`` is False.
    """
    (g,) = torch.autograd.grad(output, inputs, v, retain_graph=retain, materialize_grads=True)
    return g


def real_view(v: torch.Tensor) -> torch.Tensor:
    """A complex measurement (B, ..., m) as real pairs (B, ..., m, 2); real tensors unchanged.

    The measurement space of a complex operator is ``R^2m`` with the inner product ``Re <y, y'>``, the one
    its adjoint uses, so linear solves on it run on this real view.
    """
    return torch.view_as_real(v) if v.is_complex() else v


def complex_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`real_view` for a measurement shaped like ``like``."""
    return torch.view_as_complex(v.contiguous()) if like.is_complex() else v


def solve_measurements(
    matvec: Matvec,
    b: torch.Tensor,
    maxiter: int | None = None,
    rtol: float | None = None,
    inverse_sqrt: Matvec | None = None,
) -> torch.Tensor:
    """Solve ``M u = b`` per sample by conjugate gradients, ``M`` symmetric PSD on measurements.

    ``b`` (B, *measurement) may be complex (the iteration then runs on :func:`real_view`). The iteration
    runs in float64 whatever the dtype of ``b``: ``matvec`` is applied in the dtype of ``b`` and its output
    promoted, so round-off in the CG recurrences does not build up at small ``sigma_y``. With a symmetric
    preconditioner ``inverse_sqrt = P^-1/2`` (applied in float64) it solves ``P^-1/2 M P^-1/2 w = P^-1/2 b``
    and returns ``u = P^-1/2 w``. ``maxiter`` and ``rtol`` as in :func:`conjugate_gradient`.
    """
    wide = b.to(torch.complex128 if b.is_complex() else torch.float64)
    W = inverse_sqrt if inverse_sqrt is not None else (lambda v: v)

    def real_matvec(v: torch.Tensor) -> torch.Tensor:
        return real_view(W(matvec(W(complex_view(v, wide)).to(b.dtype)).to(wide.dtype)))

    w = conjugate_gradient(real_matvec, real_view(W(wide)), rtol=rtol, max_iter=maxiter)
    return W(complex_view(w, wide)).to(b.dtype)


def guided_options(build: Callable[..., object]) -> tuple[Callable[..., object], ...]:
    """What receives a guided method's options: its builder, then its default samplers (DDPM, or DDIM
    with ``eta``). With another ``sampler=`` that sampler checks its own options."""
    return (build, DDIM)


def guided_sampler(
    wrapper: Denoiser, steps: int, sampler: str = "ddpm", eta: float | None = None, **options: object
) -> Sampler:
    """``get_sampler(sampler, wrapper, steps, ...)``, passing ``eta`` only when given (DDIM's option)."""
    if eta is not None:
        options["eta"] = eta
    return get_sampler(sampler, wrapper, steps, **options)
