"""Classical baselines run where ``solve`` runs a sampler: a deterministic estimate per measurement.

An :data:`Estimate` is a function ``estimate(denoiser, operator, y, steps, **options) -> x`` with ``y``
of shape (N, *measurement) and ``x`` of shape (N, *event); ``steps`` is its iteration count. Wrapped
in :class:`PointEstimate` it has the interface of a :class:`~posteria.samplers.Sampler` (``nfe``,
``__call__(shape, noise=...)``), so ``solve``, ``restore``, the CLI and the benchmarks treat a
baseline exactly as a posterior method: its ``n`` "samples" of a measurement are all the same point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError
from posteria.operators.base import Operator
from posteria.posterior.base import Method, register
from posteria.samplers.base import batch_shape

Estimate = Callable[..., torch.Tensor]


def check_precision(y: torch.Tensor) -> torch.Tensor:
    """``y`` unless it is half precision, which torch's SVDs and matrix norms that the baselines use do
    not take: one line naming ``y`` (integers are refused by ``Operator.check_measurement``)."""
    if y.dtype in (torch.float16, torch.bfloat16, torch.complex32):
        raise PosteriaError(
            f"y must be float32 or float64 for a classical baseline, got {y.dtype} (y.float())"
        )
    return y


class PointEstimate:
    """A deterministic estimator with a sampler's interface; ``nfe`` counts prior (denoiser) calls."""

    vjps = 0

    def __init__(self, estimate: Callable[[], torch.Tensor], nfe: int = 0) -> None:
        self.estimate = estimate
        self.nfe = nfe

    def __call__(self, x_or_shape: torch.Tensor | Sequence[int], **ignored: object) -> torch.Tensor:
        """The estimate (n, *event), whatever the noise: the shape of ``x_or_shape`` is only checked."""
        shape = batch_shape(x_or_shape)
        with torch.no_grad():
            x = self.estimate()
        if tuple(x.shape) != shape:
            raise PosteriaError(f"the estimate has shape {tuple(x.shape)} but {shape} was asked for")
        return x

    def __repr__(self) -> str:
        return f"PointEstimate(nfe={self.nfe})"


def register_estimate(
    estimate: Estimate,
    name: str,
    summary: str,
    reference: str,
    needs: tuple[str, ...],
    default_steps: int,
    prior: bool = False,
    prior_calls: Callable[[int, dict[str, object]], int] | None = None,
) -> Method:
    """Register ``estimate`` as method ``name``; with ``prior`` it calls the denoiser once per step, or
    ``prior_calls(steps, options)`` times when given (an option may stand in for the prior)."""

    def build(
        denoiser: Denoiser | None, operator: Operator, y: torch.Tensor, steps: int, **options: object
    ) -> PointEstimate:
        check_precision(y)
        run = lambda: estimate(denoiser, operator, y, steps, **options)  # noqa: E731
        calls = prior_calls(steps, options) if prior_calls is not None else steps if prior else 0
        return PointEstimate(run, nfe=calls)

    without_prior = None if prior_calls is None else lambda options: prior_calls(1, options) == 0
    method = Method(name, summary, reference, needs, build, default_steps, prior=prior, point=True,
                    options_of=(estimate,), without_prior=without_prior)  # fmt: skip
    return register(method)
