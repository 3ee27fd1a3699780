"""Images or vectors stored in a NumPy .npz file, brought into model space."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from posteria.errors import PosteriaError

# Values a little outside [-1, 1] (rounding in someone else's pipeline) are accepted and clamped.
_RANGE_SLACK = 1e-3


def _pick_key(keys: list[str], key: str | None, path: Path) -> str:
    """``key`` if given and present; else "images" if present, else the only array; else raise."""
    if key is None:
        if "images" in keys:
            return "images"
        if len(keys) == 1:
            return keys[0]
        raise PosteriaError(f"{str(path)!r} holds several arrays; pass key= one of: {', '.join(keys)}")
    if key not in keys:
        raise PosteriaError(f"key {key!r} not in {str(path)!r}; available keys: {', '.join(keys) or 'none'}")
    return key


def _read_array(path: Path, key: str | None) -> tuple[str, np.ndarray]:
    """Open the npz at ``path`` and return the chosen key and its array."""
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a file"
        raise PosteriaError(f"npz file {str(path)!r} {what}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise PosteriaError(f"cannot read npz file {str(path)!r}: {err}".replace("\n", " ")) from err
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise PosteriaError(f"{str(path)!r} holds a single .npy array, not an .npz archive")
    with loaded as npz:
        name = _pick_key(list(npz.files), key, path)
        try:
            return name, npz[name]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise PosteriaError(f"cannot read array {name!r} of {str(path)!r}: {err}") from err


def _to_event_layout(arr: np.ndarray, name: str) -> np.ndarray:
    """(N, D) and (N, C, H, W) stay; (N, H, W) gains C = 1; (N, H, W, C) with C in (1, 3, 4) is transposed."""
    if arr.ndim in (2,) or (arr.ndim == 4 and arr.shape[1] in (1, 3, 4)):
        return arr
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4):
        return arr.transpose(0, 3, 1, 2)
    raise PosteriaError(
        f"array {name!r} has shape {arr.shape}; expected (N, D) vectors or (N, H, W), (N, C, H, W) "
        "or (N, H, W, C) images with C in (1, 3, 4)"
    )


def _to_model_space(arr: np.ndarray, name: str, unit_interval: bool) -> torch.Tensor:
    """Integers 0..255 -> ``u / 127.5 - 1``; floats in [0, 1] (``unit_interval``) -> ``2 v - 1``; else kept"""
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise PosteriaError(
                f"integer array {name!r} has values outside 0..255: [{arr.min()}, {arr.max()}]"
            )
        return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0)
    if not np.issubdtype(arr.dtype, np.floating):
        raise PosteriaError(f"array {name!r} has dtype {arr.dtype}; expected uint8 (0..255) or float")
    x = torch.from_numpy(np.asarray(arr, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        raise PosteriaError(f"array {name!r} contains NaN or infinite values")
    lo, hi = (0.0, 1.0) if unit_interval else (-1.0, 1.0)
    if x.numel() and (float(x.min()) < lo - _RANGE_SLACK or float(x.max()) > hi + _RANGE_SLACK):
        hint = "" if unit_interval else " (pass unit_interval=True for data in [0, 1])"
        raise PosteriaError(
            f"float array {name!r} has values in [{float(x.min()):g}, {float(x.max()):g}], "
            f"expected [{lo:g}, {hi:g}]{hint}"
        )
    x = x.clamp(lo, hi)
    return x * 2.0 - 1.0 if unit_interval else x


def npz_arrays(
    path: str | os.PathLike[str], key: str | None = None, unit_interval: bool = False
) -> torch.Tensor:
    """Load images or vectors from an .npz file as a float32 model-space tensor.

    Args:
        path: the .npz archive.
        key: which array; by default "images" if present, else the only array in the file.
        unit_interval: float arrays hold values in [0, 1] (mapped by ``2 v - 1``); by default float
            arrays are taken to be in model space [-1, 1] already. Integer arrays are always 0..255.

    Returns:
        (N, D) for vectors, (N, C, H, W) for images: (N, H, W) gains a channel axis and channels-last
        (N, H, W, C) with C in (1, 3, 4) is transposed when axis 1 does not already look like channels.

    Raises:
        PosteriaError: missing or unreadable file, missing key (the available keys are listed), a shape
            that is not 2-, 3- or 4-D, an unsupported dtype, or values outside the expected range.
    """
    path = Path(path)
    name, arr = _read_array(path, key)
    return _to_model_space(
        np.ascontiguousarray(_to_event_layout(arr, name)), name, unit_interval
    ).contiguous()
