"""One exception type for bad input, so the CLI can print one line and exit non-zero."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable

import torch


class PosteriaError(ValueError):
    """Bad input from the user: the message names the argument and what was expected."""


def check_choice(name: str, value: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the argument and the options."""
    if value not in choices:
        raise PosteriaError(f"unknown {name} {value!r}; expected one of: {', '.join(choices)}")
    return value


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise if ``x`` holds NaN or infinity.

    The sum is finite whenever every entry is (NaN and infinity propagate through it) unless it overflows,
    so one reduction clears the usual case; the entrywise test runs only when the sum is not finite.
    """
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise PosteriaError(f"{name} contains NaN or infinite values")
    return x


def check_time(t: torch.Tensor) -> torch.Tensor:
    """Raise unless every diffusion time lies in [0, 1]."""
    if not bool(((t >= 0) & (t <= 1)).all()):
        lo, hi = float(t.min()), float(t.max())
        raise PosteriaError(f"t must lie in [0, 1], got values in [{lo:g}, {hi:g}]")
    return t


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``, else raise one line naming ``name``."""
    try:
        count = operator.index(value)  # ints and integer numpy scalars, not floats or bools
    except TypeError:
        count = None
    if count is None or isinstance(value, bool) or count < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise PosteriaError(f"{name} must be {expected}, got {value!r}")
    return count


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """``shape`` (a tuple, list or torch.Size) as a tuple of positive ints, else one line naming ``name``."""
    if isinstance(shape, str) or not isinstance(shape, Iterable):
        raise PosteriaError(f"{name} must be a tuple of positive integers, got {shape!r}")
    return tuple(check_count(f"{name} entry", n) for n in shape)


def check_generator(generator: object) -> torch.Generator | None:
    """``generator`` if it is a torch.Generator or None (torch's global one), else one line."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise PosteriaError(f"generator must be a torch.Generator or None, got {generator!r}")
    return generator


def check_seed(seed: object) -> int:
    """``seed`` if torch's generators take it: an integer in [0, 2**63)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise PosteriaError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return seed


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """Raise unless ``value`` is a finite number > 0 (or >= 0 when ``allow_zero``)."""
    try:  # true / false are not numbers here, though Python's bools are ints
        ok = (
            not isinstance(value, bool) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        )
    except TypeError:  # not a number (a string from the command line, None)
        ok = False
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise PosteriaError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def check_unit(name: str, value: float) -> float:
    """``value`` as a float in [0, 1], else one line naming ``name``."""
    try:
        ok = not isinstance(value, bool) and 0 <= value <= 1
    except TypeError:  # not a number
        ok = False
    if not ok:
        raise PosteriaError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)
