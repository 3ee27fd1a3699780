"""Measurements on disk: the user's own ``y`` in, every restoration's tensors out.

A person who brings a measurement rather than a clean image (a blurred photograph, k-space from a
scanner) gives ``posteria solve --measurement FILE``. :func:`read_measurement` reads it as a batch
``(B, *measurement_shape)`` for a given operator from

- ``.safetensors``: the tensor named ``y``, or the file's only tensor; refused if its header names
  another operator;
- ``.npy``: a NumPy array (no pickles);
- a picture (PNG, ...), when the operator's measurement is one (:attr:`Operator.picture`): the image
  itself at the measurement's size for denoising, blur and downsampling; for masks, an image of the
  signal's size of which the operator keeps the observed pixels.

Arrays hold floats in model space (complex for k-space), never integers.

:func:`save_tensors` writes a restoration's tensors (``y``, samples, mean, std, truth) to one
safetensors file, the operator, method and noise in its header, so that ``--measurement
OUT/result.safetensors`` reruns on the same ``y`` (given the same ``--sigma-y`` or ``--poisson``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from posteria.errors import PosteriaError
from posteria.io import atomic_write_bytes, read_array, read_image
from posteria.operators.base import Operator

#: Suffixes read as arrays; any other is read as a picture.
ARRAY_SUFFIXES = (".safetensors", ".npy")


def _read_safetensors(path: Path, operator: Operator) -> torch.Tensor:
    """The tensor ``y`` of a safetensors file, or its only tensor; one line if the file's header says
    another operator measured it (as :func:`save_tensors` records)."""
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            measured_by = (f.metadata() or {}).get("operator")
    except (SafetensorError, OSError) as err:
        raise PosteriaError(
            f"--measurement {str(path)!r} is not a readable safetensors file ({err})"
        ) from err
    if measured_by not in (None, operator.name):
        raise PosteriaError(
            f"--measurement {str(path)!r} was measured by operator {measured_by!r}, not {operator.name!r}"
        )
    if "y" in tensors:
        return tensors["y"]
    if len(tensors) != 1:
        names = ", ".join(sorted(tensors)) or "none"
        raise PosteriaError(f"--measurement {str(path)!r} has no tensor named 'y' (it holds: {names})")
    return next(iter(tensors.values()))


#: What a measurement holds: floats in model space, never integers (counts or 8-bit values read as such
#: would be restored as nonsense).
FLOATS = "floats in model space (pixels in [-1, 1])"


def _read_npy(path: Path) -> torch.Tensor:
    """A ``.npy`` array of floats or complex numbers as float32 or complex64, in native byte order."""
    array = read_array(path, "--measurement", "fc", FLOATS)
    return torch.from_numpy(array.astype(np.complex64 if array.dtype.kind == "c" else np.float32))


def _check_values(path: Path, dtype: str, floating: bool) -> None:
    """Refuse a tensor of integers or booleans (see :data:`FLOATS`)."""
    if not floating:
        raise PosteriaError(f"--measurement {str(path)!r} holds {dtype} values; expected {FLOATS}")


def _read_picture(path: Path, operator: Operator) -> torch.Tensor:
    """A picture as one measurement ``(1, *measurement_shape)``, read at its own size, never resized
    (resizing would change the measurement and its noise)."""
    shape = operator.measurement_shape if operator.picture == "image" else operator.event_shape
    if operator.picture is None or len(shape) != 3:
        raise PosteriaError(
            f"--measurement: operator {operator.name!r} does not measure a picture; give its y as "
            f"{' or '.join(ARRAY_SUFFIXES)} of shape {shape_text(operator.measurement_shape)}"
        )
    channels, height, width = shape
    try:
        image = read_image(path, channels=channels)
    except PosteriaError as err:
        raise PosteriaError(f"--measurement: {err}") from err
    if tuple(image.shape[1:]) != (height, width):
        raise PosteriaError(
            f"--measurement {str(path)!r} is {image.shape[2]}x{image.shape[1]}; operator "
            f"{operator.name!r} expects a {width}x{height} picture"
        )
    return image[None] if operator.picture == "image" else operator(image[None])


def shape_text(shape: tuple[int, ...]) -> str:
    """``(3, 4)`` -> ``"(B, 3, 4) or (3, 4)"``: the shapes a measurement file may have."""
    inner = ", ".join(map(str, shape))
    return f"(B, {inner}) or ({inner}{',' if len(shape) == 1 else ''})"


def _as_batch(y: torch.Tensor, operator: Operator, path: Path) -> torch.Tensor:
    """``y`` as a float32 (complex64 for complex measurements) batch; one line if its shape, kind or
    values do not fit ``operator``."""
    _check_values(path, str(y.dtype).removeprefix("torch."), y.is_floating_point() or y.is_complex())
    found = tuple(y.shape)  # as the file has it, for the message
    if y.dim() == len(operator.measurement_shape):
        y = y[None]
    if y.is_complex() != operator.complex_measurement:
        kind = "complex" if operator.complex_measurement else "real"
        raise PosteriaError(
            f"--measurement {str(path)!r}: operator {operator.name!r} measures {kind} values, got {y.dtype}"
        )
    if tuple(y.shape[1:]) != operator.measurement_shape or y.shape[0] == 0:
        raise PosteriaError(
            f"--measurement {str(path)!r} has shape {found}; operator {operator.name!r} expects "
            f"{shape_text(operator.measurement_shape)}"
        )
    y = y.to(torch.complex64 if y.is_complex() else torch.float32)
    try:
        return operator.check_measurement(y)
    except PosteriaError as err:  # NaN or infinity: name the file
        raise PosteriaError(f"--measurement {str(path)!r}: {err}") from err


def read_measurement(path: str | Path, operator: Operator) -> torch.Tensor:
    """The measurement(s) in ``path`` as ``(B, *operator.measurement_shape)``, float32 or complex64.

    An array file holds one measurement or a batch; a picture holds one. Raises one line naming
    ``--measurement`` and the expected shape if the file does not fit the operator.
    """
    path = Path(path)
    if not path.is_file():
        raise PosteriaError(f"--measurement {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        y = _read_safetensors(path, operator)
    elif suffix == ".npy":
        y = _read_npy(path)
    else:
        y = _read_picture(path, operator)
    return _as_batch(y, operator, path)


def save_tensors(tensors: dict[str, torch.Tensor | None], path: str | Path, **metadata: str) -> Path:
    """Write the non-None ``tensors`` (contiguous, on the CPU) to a safetensors file, atomically, with
    string ``metadata`` (operator, method, noise) in its header."""
    kept = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items() if v is not None}
    return atomic_write_bytes(path, save(kept, metadata=metadata))
