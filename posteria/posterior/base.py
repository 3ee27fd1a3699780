"""One entry point for every posterior method: ``solve(denoiser, operator, y, method=...)``.

A method is registered as a :class:`Method`: a name, the operator capabilities it needs, and a
``build`` function that returns a :class:`~posteria.samplers.Sampler` configured for a batch of
measurements. Guidance methods (DPS, PiGDM, MMPS) build an ordinary sampler around a conditional
denoiser ``E[x | x_t, y]``; transition methods (DDRM, DDNM, RePaint, DAPS, TDS) are sampler
subclasses. Classical baselines (``posteria.classical``) register point estimates with the same call
shape, several of them without a prior. ``solve`` validates the inputs once, repeats each measurement
``n`` times and runs it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from tqdm.auto import tqdm

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_choice, check_count
from posteria.operators.base import Operator
from posteria.operators.identity import Identity
from posteria.operators.mask import Mask
from posteria.operators.noise_models import GaussianNoise
from posteria.options import describe, option_defaults
from posteria.random import PerSampleNoise, draw_base_seed
from posteria.samplers.base import Noise, Sampler


class Runner(Protocol):
    """What a method builds: a :class:`~posteria.samplers.Sampler`, or a classical baseline's
    :class:`~posteria.classical.estimate.PointEstimate`; ``nfe`` is its cost in denoiser calls."""

    nfe: int

    def __call__(self, x_or_shape: Sequence[int], *, noise: Noise, progress: bool) -> torch.Tensor: ...


#: ``build(denoiser, operator, y, steps, **options) -> Runner`` for ``y`` of shape (N, *measurement);
#: the runner is then run on N samples, sample i conditioned on ``y[i]``.
Builder = Callable[..., Runner]


@dataclass(frozen=True)
class Method:
    """A posterior sampling method.

    Attributes:
        name: the registry name (``"dps"``, ``"mmps"``, ...).
        summary: one line saying what it does.
        reference: the paper.
        needs: operator capabilities it requires, from :data:`CAPABILITIES`.
        build: makes the sampler (see :data:`Builder`).
        default_steps: the step count of the method's paper (iterations for a classical baseline).
        prior: whether it uses the denoiser (classical baselines may not: ``solve(None, ...)``).
        without_prior: for a method with ``prior``, whether given options stand in for the denoiser
            (map-distance's ``project``), so that ``solve(None, ...)`` may run it.
        point: whether it returns one point estimate per measurement rather than samples.
        options_of: what receives the keyword options of ``solve`` (the builder, the sampler class,
            the estimate), most specific first; their keyword parameters are the method's options
            (:func:`posteria.options.option_defaults`). Empty: not checked or listed.
    """

    name: str
    summary: str
    reference: str
    needs: tuple[str, ...]
    build: Builder
    default_steps: int = 100
    prior: bool = True
    point: bool = False
    options_of: tuple[Callable[..., object], ...] = ()
    without_prior: Callable[[dict[str, object]], bool] | None = None

    def options(self) -> dict[str, object]:
        """``{name: default}`` of the keyword options the method takes."""
        return option_defaults(self.options_of)

    def calls_prior(self, options: dict[str, object]) -> bool:
        """Whether a run with ``options`` calls the denoiser (so that ``solve`` needs one)."""
        return self.prior and not (self.without_prior is not None and self.without_prior(options))


#: What an operator can offer a method.
CAPABILITIES = {
    "linear": "a linear A with an adjoint",
    "svd": "an implicit SVD",
    "mask": "a pixel mask (inpainting)",
    "entries": "observations of entries of x (identity or mask)",
    "image": "an image-shaped signal (..., H, W)",
    "gaussian": "Gaussian measurement noise",
    "noisy": "measurement noise (sigma_y > 0)",
    "gaussian-or-poisson": "Gaussian noise, or Poisson noise taken as Gaussian with its variance at y",
}

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a module defining a method calls this at import)."""
    unknown = set(method.needs) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"method {method.name} needs unknown capabilities {sorted(unknown)}")
    METHODS[method.name] = method
    return method


def transition_method(sampler_class: type[Sampler], **fields: object) -> Method:
    """The :class:`Method` of a sampler subclass constructed as ``sampler_class(denoiser, steps, operator,
    y, **options)`` (DDRM, DDNM, RePaint, DAPS, TDS, ...): its options are the constructor's."""

    def build(
        denoiser: Denoiser, operator: Operator, y: torch.Tensor, steps: int, **options: object
    ) -> Sampler:
        return sampler_class(denoiser, steps, operator, y, **options)

    return Method(build=build, options_of=(sampler_class,), **fields)


def capabilities(operator: Operator) -> set[str]:
    """The capabilities (keys of :data:`CAPABILITIES`) that ``operator`` offers."""
    caps = {"image"} if len(operator.event_shape) >= 2 else set()
    if operator.linear:
        caps.add("linear")
        if getattr(operator, "svd", None) is not None:
            caps.add("svd")
    if isinstance(operator, Mask):
        caps.update(("mask", "entries"))
    if isinstance(operator, Identity):
        caps.add("entries")
    if isinstance(operator.noise, GaussianNoise):
        caps.add("gaussian")
    if not isinstance(operator.noise, GaussianNoise) or operator.noise.sigma_y > 0:
        caps.add("noisy")
    if operator.noise.gaussian_approximation:
        caps.add("gaussian-or-poisson")
    return caps


def supported(operator: Operator) -> list[str]:
    """Names of the registered methods that can serve ``operator``."""
    caps = capabilities(operator)
    return sorted(name for name, m in METHODS.items() if set(m.needs) <= caps)


def check_method(name: str, operator: Operator) -> Method:
    """The method called ``name``; one-line PosteriaError if unknown or unable to serve ``operator``."""
    method = METHODS[check_choice("method", name, sorted(METHODS))]
    missing = set(method.needs) - capabilities(operator)
    if missing:
        what = ", ".join(CAPABILITIES[c] for c in sorted(missing))
        raise PosteriaError(
            f"method {name!r} needs {what}, which operator {operator.name!r} lacks; "
            f"methods that serve it: {', '.join(supported(operator)) or 'none'}"
        )
    return method


@functools.cache
def registry_capabilities() -> dict[str, frozenset[str]]:
    """The capabilities of each operator of the registry, the user operators included (built from
    stand-in arrays), on a (1, 28, 28) image with Gaussian noise of sigma_y = 0.05 (they depend on the
    operator's kind and noise model, not on the image's size, the arrays or the noise level)."""
    from posteria.operators.registry import OPERATORS, USER_OPERATORS, get_operator

    shape = (1, 28, 28)
    arrays = {"mask": torch.ones(28, 28, dtype=torch.bool), "kernel": torch.full((3, 3), 1 / 9),
              "matrix": torch.eye(4, 784)}  # fmt: skip
    built = {name: get_operator(name, shape, sigma_y=0.05) for name in OPERATORS}
    built |= {
        name: get_operator(name, shape, sigma_y=0.05, **{key: arrays[key]})
        for name, (key, _, _) in USER_OPERATORS.items()
    }
    return {name: frozenset(capabilities(op)) for name, op in built.items()}


def methods() -> list[dict[str, object]]:
    """Each registered method with its summary, reference, needs, default steps, options and the
    registry's operators it serves with Gaussian noise (``operators``)."""
    return [
        {
            "name": m.name,
            "summary": m.summary,
            "reference": m.reference,
            "needs": list(m.needs),
            "operators": [name for name, caps in registry_capabilities().items() if set(m.needs) <= caps],
            "default_steps": m.default_steps,
            "prior": m.prior,
            "point": m.point,
            "options": m.options(),
        }  # fmt: skip
        for m in sorted(METHODS.values(), key=lambda m: m.name)
    ]


def check_options(method: Method, options: dict[str, object]) -> None:
    """One line naming the options ``method`` does not take, and those it does, or a switch (an option
    whose default is true or false) given something else."""
    accepted = method.options()
    # another sampler than the default (sampler="pc") checks its own options
    checked = method.options_of and "sampler" not in options
    unknown = sorted(set(options) - set(accepted)) if checked else []
    if unknown:
        raise PosteriaError(
            f"method {method.name!r} takes no option {', '.join(unknown)}; its options: {describe(accepted)}"
        )
    for key, value in options.items():  # a switch given a word or a number would silently mean true
        if isinstance(accepted.get(key), bool) and not isinstance(value, bool):
            raise PosteriaError(f"method {method.name!r}: {key} must be true or false, got {value!r}")


def prepare(
    denoiser: Denoiser | None,
    operator: Operator,
    y: torch.Tensor,
    method: str = "mmps",
    steps: int | None = None,
    n: int = 1,
    **options: object,
) -> Runner:
    """Validate the inputs of :func:`solve` and build its sampler for ``y`` repeated ``n`` times
    (measurement ``i`` serves samples ``i * n`` to ``i * n + n - 1``); its ``nfe`` says the cost."""
    chosen = check_method(method, operator)
    operator.check_measurement(y)
    if denoiser is None and chosen.calls_prior(options):
        raise PosteriaError(f"method {method!r} needs a prior (a denoiser), got None")
    operator.check_prior(None if denoiser is None else denoiser.event_shape)
    check_options(chosen, options)
    n = check_count("n", n)
    steps = chosen.default_steps if steps is None else check_count("steps", steps)
    try:
        if "particles" in chosen.options():
            options = {**options, "particles": particles_of(options.get("particles"), n)}
        return chosen.build(denoiser, operator, y.repeat_interleave(n, dim=0), steps, **options)
    except PosteriaError as e:  # say which method refused, e.g. an unknown option of its sampler
        raise PosteriaError(f"method {method!r}: {e}") from e
    except (TypeError, ValueError) as e:  # an option of the wrong type, e.g. a word given for a number
        raise PosteriaError(f"method {method!r}, options {options}: {e}") from e


def particles_of(particles: object, n: int) -> int:
    """The group size of an SMC method: ``particles`` when given (it must divide ``n``), else the ``n``
    samples of each measurement, not the runs of equal rows of ``y`` (which would merge equal
    measurements of a batch into one group, and so depend on the batch)."""
    if particles is None:
        return n
    count = check_count("particles", particles)
    if count > n or n % count:
        raise PosteriaError(f"particles={count} must divide the n = {n} samples drawn per measurement")
    return count


def solve(
    denoiser: Denoiser | None,
    operator: Operator,
    y: torch.Tensor,
    method: str = "mmps",
    steps: int | None = None,
    n: int = 1,
    generator: torch.Generator | None = None,
    progress: bool = False,
    batch_size: int | None = None,
    **options: object,
) -> torch.Tensor:
    """Draw ``n`` posterior samples of ``x`` given each measurement in ``y``.

    Args:
        denoiser: the prior, ``E[x | x_t]``; its event shape must match the operator's. None for the
            methods that call no prior (:meth:`Method.calls_prior`: the classical baselines without one,
            map-distance given ``project``).
        operator: the measurement model ``y = A(x) + w``.
        y: measurements, (B, *operator.measurement_shape).
        method: a key of :data:`METHODS` (see :func:`methods`).
        steps: sampler steps (default: the method's).
        n: samples per measurement.
        generator: seeds the per-sample noise; sample j of measurement i uses stream ``i * n + j``.
        batch_size: measurements sampled at a time (default: all); memory grows with ``batch_size * n``,
            the samples do not depend on it.
        options: method options (step sizes, eta, particles, ...).

    Returns:
        (B, n, *event_shape) posterior samples.
    """
    return solve_in_batches(
        denoiser, operator, y, method, steps, n, generator, batch_size, progress, **options
    ).samples


class BatchedRun(NamedTuple):
    """What :func:`solve_in_batches` returns: the samples (B, n, *event_shape), the runner of each batch
    (for its costs) and the seconds spent sampling (preparing the runners excluded)."""

    samples: torch.Tensor
    runners: list[Runner]
    seconds: float


def solve_in_batches(
    denoiser: Denoiser | None,
    operator: Operator,
    y: torch.Tensor,
    method: str,
    steps: int | None,
    n: int,
    generator: torch.Generator | None,
    batch_size: int | None = None,
    progress: bool = False,
    **options: object,
) -> BatchedRun:
    """:func:`solve` on ``batch_size`` measurements at a time. Sample ``j`` of measurement ``i`` draws from
    stream ``i n + j`` of one base seed, and no method couples measurements, so the samples do not depend
    on ``batch_size``."""
    operator.check_measurement(y)  # all of y (at least one measurement), before a first batch runs
    n = check_count("n", n)  # an int: numpy integers would reach the samplers' shape checks
    size = y.shape[0] if batch_size is None else check_count("batch_size", batch_size)
    base, event = draw_base_seed(generator), operator.event_shape
    samples, runners, seconds = [], [], 0.0
    starts = range(0, y.shape[0], size)
    for start in tqdm(starts, disable=not progress or len(starts) == 1, desc="batches", unit="batch"):
        part = y[start : start + size]
        runners.append(prepare(denoiser, operator, part, method, steps, n, **options))
        noise = PerSampleNoise(base, part.shape[0] * n, offset=start * n)
        began = time.perf_counter()
        x = runners[-1]((part.shape[0] * n, *event), noise=noise, progress=progress)
        seconds += time.perf_counter() - began
        samples.append(x.reshape(part.shape[0], n, *event))
    return BatchedRun(torch.cat(samples), runners, seconds)
