"""Named measurement models for the command line: ``get_operator("sr4", (1, 28, 28), sigma_y=0.05)``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from posteria.errors import PosteriaError, check_choice, check_positive, check_shape
from posteria.operators import kspace
from posteria.operators.base import Operator
from posteria.operators.blur import Blur
from posteria.operators.dense import MatrixOperator, RandomProjection
from posteria.operators.downsample import Downsample
from posteria.operators.identity import Identity
from posteria.operators.mask import Mask
from posteria.operators.mri import SubsampledFourier
from posteria.operators.noise_models import NoiseModel, PoissonNoise, check_noise_model
from posteria.operators.phase import PhaseRetrieval

Shape = tuple[int, ...]
Factory = Callable[[Shape, float, torch.Generator], Operator]


def _kernel_size(shape: Shape) -> int:
    """9, or the largest odd size that fits the image."""
    side = min(shape[-2:])
    return min(9, side if side % 2 else side - 1)


def _box(shape: Shape, sigma_y: float) -> Mask:
    """Hide the central box of half the shorter side: one line, in the user's terms, for an image too small
    to hold one (the box's size is not theirs to fix)."""
    size = min(shape[-2:]) // 2
    if size < 1:
        raise PosteriaError(
            f"the image {shape} is too small for the box of 'inpaint-box': H and W must be >= 2"
        )
    return Mask.box(shape, size=size, sigma_y=sigma_y)


def _first_mask(masks: Iterable[torch.Tensor], fraction: float) -> torch.Tensor:
    """The first of ``masks`` (denser and denser) that keeps at least ``fraction`` of k-space."""
    for mask in masks:
        if mask.float().mean() >= fraction:
            return mask
    return mask


def _mri(shape: Shape, sigma_y: float, pattern: str, generator: torch.Generator) -> SubsampledFourier:
    """4x accelerated MRI (a quarter of k-space) with radial spokes, a spiral or random frequencies: the
    fewest spokes or half-turns that reach the quarter (25-29% from 24x24 up; small images keep more,
    e.g. 42% of 8x8 with the fewest radial spokes)."""
    H, W = shape[-2:]
    if pattern == "radial":
        mask = _first_mask((kspace.radial_mask(H, W, n) for n in range(1, 2 * (H + W))), 0.25)
    elif pattern == "spiral":
        mask = _first_mask((kspace.spiral_mask(H, W, k / 2) for k in range(1, 2 * (H + W))), 0.25)
    else:
        mask = kspace.random_mask(H, W, 0.25, generator)
    return SubsampledFourier(mask, shape, sigma_y=sigma_y)


#: Operators built from an array of the user's, not from a name alone (so not in :data:`OPERATORS`):
#: ``get_operator(name, shape, **{keyword: array})``, and on the command line ``--keyword FILE``.
USER_MASK = "inpaint-mask"  # observed pixels (0/1, the image's (H, W) or the event shape)
USER_KERNEL = "blur-kernel"  # a blur kernel, e.g. a measured point-spread function, used as given
USER_KSPACE = "mri-mask"  # measured frequencies (0/1, (H, W), DC at the centre as fftshift shows it)
USER_MATRIX = "matrix"  # a dense (m, D) matrix of D = prod(event_shape) columns
USER_OPERATORS: dict[str, tuple[str, str, Callable[[torch.Tensor, Shape, float], Operator]]] = {
    USER_MASK: ("mask", "a mask of observed pixels", lambda a, shape, s: Mask(a, shape, sigma_y=s)),
    USER_KERNEL: ("kernel", "a blur kernel", lambda a, shape, s: Blur(a, shape, sigma_y=s)),
    USER_KSPACE: (
        "mask",
        "a mask of measured frequencies",
        lambda a, shape, s: SubsampledFourier(a, shape, s),
    ),
    USER_MATRIX: ("matrix", "a measurement matrix", lambda a, shape, s: MatrixOperator(a, s, shape=shape)),
}


def operators_taking(keyword: str) -> list[str]:
    """The user operators built from the array ``keyword`` (``"mask"``, ``"kernel"``, ``"matrix"``)."""
    return [name for name, (key, _, _) in USER_OPERATORS.items() if key == keyword]


def _check_arrays(name: str, arrays: dict[str, torch.Tensor | None]) -> None:
    """One line if an array was given that operator ``name`` does not take."""
    for key, array in arrays.items():
        if array is not None and name not in operators_taking(key):
            owners = " or ".join(map(repr, operators_taking(key)))
            raise PosteriaError(f"a {key} is for operator {owners} only, got operator {name!r}")


def _user_operator(
    name: str, arrays: dict[str, torch.Tensor | None], shape: Shape, sigma_y: float
) -> Operator:
    """The user operator ``name`` built from its array in ``arrays``; one line if that is missing."""
    keyword, what, build = USER_OPERATORS[name]
    if arrays[keyword] is None:
        raise PosteriaError(f"operator {name!r} needs {what} (--{keyword} FILE)")
    return build(arrays[keyword], shape, sigma_y)


#: Operators whose measurement is pixel values in [-1, 1], the signal Poisson counts are defined on.
PIXEL_OPERATORS = ("denoise", "inpaint-box", "inpaint-random", "inpaint-half", USER_MASK, "sr2", "sr4",
                   "blur-gauss", "blur-motion", USER_KERNEL)  # fmt: skip


def _check_noise(noise: NoiseModel, name: str) -> NoiseModel:
    """``noise`` if it is a noise model that operator ``name`` can carry, else one line."""
    check_noise_model(noise)
    if isinstance(noise, PoissonNoise) and name not in PIXEL_OPERATORS:
        raise PosteriaError(
            f"Poisson noise (--poisson) counts photons of pixel values in [-1, 1]; operator {name!r} does "
            f"not measure pixels (those that do: {', '.join(PIXEL_OPERATORS)})"
        )
    return noise


#: name -> factory(event_shape, sigma_y, generator). Random parts (masks, matrices, angles) come from
#: the generator. Boxes hide the central half of the side; random inpainting keeps 30% (DPS: 70% missing).
OPERATORS: dict[str, Factory] = {
    "denoise": lambda shape, s, g: Identity(shape, sigma_y=s),
    "inpaint-box": lambda shape, s, g: _box(shape, s),
    "inpaint-random": lambda shape, s, g: Mask.random(shape, 0.3, generator=g, sigma_y=s),
    "inpaint-half": lambda shape, s, g: Mask.half(shape, "right", sigma_y=s),
    "sr2": lambda shape, s, g: Downsample(shape, 2, sigma_y=s),
    "sr4": lambda shape, s, g: Downsample(shape, 4, sigma_y=s),
    "blur-gauss": lambda shape, s, g: Blur.gaussian(shape, size=_kernel_size(shape), std=2.0, sigma_y=s),
    "blur-motion": lambda shape, s, g: Blur.motion(shape, size=_kernel_size(shape), generator=g, sigma_y=s),
    "cs25": lambda shape, s, g: RandomProjection(max(1, round(0.25 * math.prod(shape))), shape, g, sigma_y=s),
    "cs10": lambda shape, s, g: RandomProjection(max(1, round(0.10 * math.prod(shape))), shape, g, sigma_y=s),
    "mri4": lambda shape, s, g: SubsampledFourier.cartesian(shape, 4.0, 0.08, generator=g, sigma_y=s),
    "mri8": lambda shape, s, g: SubsampledFourier.cartesian(shape, 8.0, 0.04, generator=g, sigma_y=s),
    "mri4-radial": lambda shape, s, g: _mri(shape, s, "radial", g),
    "mri4-spiral": lambda shape, s, g: _mri(shape, s, "spiral", g),
    "mri4-random": lambda shape, s, g: _mri(shape, s, "random", g),
    "phase": lambda shape, s, g: PhaseRetrieval(shape, oversampling=2.0, sigma_y=s),
}


def get_operator(
    name: str,
    event_shape: Shape,
    sigma_y: float = 0.05,
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
    noise: NoiseModel | None = None,
    kernel: torch.Tensor | None = None,
    matrix: torch.Tensor | None = None,
) -> Operator:
    """Build the named operator for signals of shape ``event_shape`` with Gaussian noise ``sigma_y``.

    Without a ``generator`` the random parts are drawn from seed 0, so a name means the same operator
    on every run. ``mask``, ``kernel`` and ``matrix`` are the user's arrays of :data:`USER_OPERATORS`, each
    for its operators only. ``noise`` (e.g. :class:`PoissonNoise`) replaces the Gaussian noise of
    ``sigma_y``. Unknown names raise a :class:`PosteriaError` listing the known ones.
    """
    check_choice("operator", name, [*OPERATORS, *USER_OPERATORS])
    check_positive("sigma_y", sigma_y, allow_zero=True)
    event_shape = check_shape("event_shape", event_shape)
    if name not in ("denoise", "cs25", "cs10", USER_MATRIX) and len(event_shape) < 2:
        raise PosteriaError(f"operator {name!r} needs an image shape (..., H, W), got {event_shape}")
    arrays = {"mask": mask, "kernel": kernel, "matrix": matrix}
    _check_arrays(name, arrays)
    if name in USER_OPERATORS:
        op = _user_operator(name, arrays, event_shape, float(sigma_y))
    else:
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        op = OPERATORS[name](event_shape, float(sigma_y), generator)
    if noise is not None:
        op.noise = _check_noise(noise, name)
    op.name = name
    return op
