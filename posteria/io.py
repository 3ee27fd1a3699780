"""Image files at the boundary: read them into model space [-1, 1], write batches back as PNG, atomically.

Every write goes to a temporary file in the target's directory and is moved into place with
``os.replace``, so a reader never sees a half-written file and an interrupted write leaves the old
file (or nothing) at the target.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from posteria.errors import PosteriaError, check_finite

__all__ = [
    "IMAGE_SUFFIXES",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_folder",
    "from_uint8",
    "has_colour",
    "read_image",
    "save_grid",
    "save_image",
    "staged_folder",
    "to_uint8",
]

#: File suffixes (lower case) that ``read_image`` and ``image_folder`` treat as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------------------
# Atomic writes


def _atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` on a fresh temp file next to ``path``, then move it onto ``path`` in one step.

    The temp file is opened with ``"xb"`` (not ``mkstemp``) so it gets the usual ``0o666 & ~umask``
    permissions. Parent folders are created. On any error the temp file is removed and the target
    is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise PosteriaError(f"path {str(path)!r} is a directory; expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``out`` to write a set of result files into; when the block
    ends cleanly, move every file up into ``out`` (each with ``os.replace``, sub-folders kept), and when
    it raises, delete the staging folder and the folders this call created. A run that fails half-way
    (a full disk, a bad image, Ctrl-C) then leaves ``out`` as it was, not a mix of new and old results.
    Each move is atomic, the set is not: a target that is a folder is refused before the first move, so
    only a failure between two renames (or a killed process, which leaves ``.staged-*``) can split it.
    Staging inside ``out`` keeps every move on one file system and needs no write access above it."""
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]  # innermost first
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staged-", dir=out))
    try:
        yield stage
        moves = [(f, out / f.relative_to(stage)) for f in sorted(stage.rglob("*")) if f.is_file()]
        for _, target in moves:
            if target.is_dir():
                raise PosteriaError(f"out {str(out)!r}: {str(target)!r} is a folder, not a result file")
        for file, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):  # only if empty: never delete what someone else wrote
                folder.rmdir()
        raise
    shutil.rmtree(stage, ignore_errors=True)


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder that results can be written to (created later, with its parents, by the first
    write), or one line saying why not: commands call it before a long run, so that a bad ``--out``
    fails first, and without creating anything, so that bad input leaves nothing behind."""
    folder = Path(path)
    if folder.is_symlink() and not folder.exists():
        raise PosteriaError(f"out {str(folder)!r} is a broken symbolic link; expected a folder")
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        what = "is a file" if existing == folder else f"is under the file {str(existing)!r}"
        raise PosteriaError(f"out {str(folder)!r} {what}; expected a folder")
    try:  # a file created and deleted: os.access says yes to root and on read-only file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        reason = f"cannot write into {str(existing)!r} ({err.strerror})"
        raise PosteriaError(f"out {str(folder)!r}: {reason}") from None
    return folder


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` (UTF-8 by default)."""
    return atomic_write_bytes(path, text.encode(encoding))


# ---------------------------------------------------------------------------------------------------------
# Model space <-> 8-bit pixels


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Map model-space values in [-1, 1] to uint8 pixels 0..255 (clamped, rounded); same shape, on CPU.

    ``from_uint8(to_uint8(x))`` is within 1/255 of ``clamp(x, -1, 1)``, and ``to_uint8(from_uint8(u)) == u``.
    """
    check_finite("x", x)
    x = x.detach().to("cpu", torch.float32)
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def from_uint8(u: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Map uint8 pixels 0..255 to float32 model space [-1, 1]: ``u / 127.5 - 1``."""
    if isinstance(u, np.ndarray):  # copy: arrays from Pillow are read-only
        u = torch.from_numpy(u.astype(np.float32))
    return u.to(torch.float32) / 127.5 - 1.0


# ---------------------------------------------------------------------------------------------------------
# Reading


def _is_count(value: object) -> bool:
    """True for a positive integer (Python or NumPy), bools excluded."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value > 0


def _image_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """Normalise ``size`` to (height, width), or None; raise unless it holds positive integers."""
    if size is None:
        return None
    hw = (size, size) if _is_count(size) else size
    if not (isinstance(hw, tuple | list) and len(hw) == 2 and all(_is_count(s) for s in hw)):
        raise PosteriaError(f"size must be a positive int or a (height, width) pair, got {size!r}")
    return int(hw[0]), int(hw[1])


def _check_channels(channels: int) -> int:
    """Raise unless ``channels`` is 1 (grayscale) or 3 (RGB)."""
    if channels not in (1, 3):
        raise PosteriaError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    return channels


def _open_pil(path: Path) -> Image.Image:
    """Open and fully decode an image file (first frame of an animation), upright per its EXIF tag."""
    if not path.exists():
        raise PosteriaError(f"image file {str(path)!r} does not exist")
    if not path.is_file():
        raise PosteriaError(f"image path {str(path)!r} is not a file")
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise PosteriaError(f"cannot read image file {str(path)!r}: {err}".replace("\n", " ")) from err


def _to_mode(img: Image.Image, channels: int, path: Path) -> Image.Image:
    """Convert to 8-bit grayscale ("L") or RGB. 16-bit grayscale is scaled down to 8 bits first, and
    floating-point grayscale ("F", a TIFF) read as [0, 1] (or [0, 255] when it goes above 1): PIL's
    convert("L") would clip both, turning a [0, 1] float image black."""
    if img.mode.startswith("I"):  # I, I;16, I;16B
        arr = np.asarray(img).astype(np.float64)
        img = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8))
    elif img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if not (math.isfinite(low) and math.isfinite(high) and low >= 0 and high <= 255):
            raise PosteriaError(
                f"image file {str(path)!r} holds floating-point values in [{low:g}, {high:g}]; "
                "expected [0, 1] or [0, 255]"
            )
        arr = arr * 255.0 if high <= 1 else arr
        img = Image.fromarray(np.round(arr).astype(np.uint8))
    return img.convert("L" if channels == 1 else "RGB")


def _pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An 8-bit "L" or "RGB" PIL image -> float32 (C, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return from_uint8(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def read_image(
    path: str | os.PathLike[str], channels: int = 1, size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """Read an image file as a float32 tensor (C, H, W) in model space [-1, 1].

    Args:
        path: any format Pillow reads (PNG, JPEG, BMP, GIF (first frame), TIFF, ...).
        channels: 1 converts to grayscale, 3 to RGB (alpha is dropped).
        size: resize (bicubic, antialiased, with Pillow) to ``size x size`` or ``(height, width)``.

    Raises:
        PosteriaError: the file is missing, not a file, or not a readable image.
    """
    _check_channels(channels)
    hw = _image_size(size)
    img = _to_mode(_open_pil(Path(path)), channels, Path(path))
    if hw is not None and img.size != (hw[1], hw[0]):
        img = img.resize((hw[1], hw[0]), Image.Resampling.BICUBIC)
    return _pil_to_tensor(img)


def has_colour(path: str | os.PathLike[str]) -> bool:
    """Whether the image at ``path`` has a pixel whose red, green and blue differ by more than 2 levels: a
    colour picture, which ``read_image(..., channels=1)`` turns into grey (ITU-R 601 luma), not grey stored
    as RGB (lossy codecs such as WebP leave +-1 between the channels of a grey picture)."""
    img = _open_pil(Path(path))
    if img.mode in ("1", "L", "LA", "F") or img.mode.startswith("I"):
        return False
    rgb = np.asarray(img.convert("RGB")).astype(np.int16)
    return bool((rgb.max(-1) - rgb.min(-1) > 2).any())


def read_array(path: str | os.PathLike[str], option: str, kinds: str, expected: str) -> np.ndarray:
    """The one array of a ``.npy`` file whose dtype kind is in ``kinds`` (NumPy's letters: ``"b"`` bool,
    ``"i"``/``"u"`` integers, ``"f"`` floats, ``"c"`` complex). One line naming ``option`` for a file that
    is unreadable, a pickle (never loaded), an ``.npz`` archive, or of another kind (``expected`` says
    what was wanted)."""
    try:
        array = np.load(Path(path), allow_pickle=False)
    except (ValueError, OSError) as err:
        raise PosteriaError(f"{option} {str(path)!r} is not a readable .npy array ({err})") from err
    if not isinstance(array, np.ndarray):
        raise PosteriaError(f"{option} {str(path)!r} is an .npz archive; expected one .npy array")
    if array.dtype.kind not in kinds:
        raise PosteriaError(f"{option} {str(path)!r} holds {array.dtype} values; expected {expected}")
    return array


# ---------------------------------------------------------------------------------------------------------
# Writing


def _check_image(x: torch.Tensor, name: str, ndim: int) -> torch.Tensor:
    """Raise unless ``x`` is a tensor of ``ndim`` dims whose channel axis (-3) holds 1 or 3 channels."""
    if not isinstance(x, torch.Tensor) or x.dim() != ndim or x.shape[-3] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        want = "(C, H, W)" if ndim == 3 else "(B, C, H, W)"
        raise PosteriaError(f"{name} must have shape {want} with C in (1, 3), got {shape}")
    if x.numel() == 0:
        raise PosteriaError(f"{name} is empty (shape {tuple(x.shape)})")
    return x


def _tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """A model-space (C, H, W) tensor with C in (1, 3) -> 8-bit "L" or "RGB" PIL image."""
    arr = to_uint8(x).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else np.ascontiguousarray(arr))


def _save_pil(img: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save ``img`` atomically, in the format named by the suffix of ``path`` (PNG, JPEG, ...)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise PosteriaError(f"path {str(path)!r} has no image suffix Pillow can write; expected e.g. .png")
    return _atomic_write(path, lambda f: img.save(f, format=fmt))


def save_image(x: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Save one model-space image ``x`` (C, H, W), C in (1, 3), to ``path`` atomically; returns the path.

    Values are clamped to [-1, 1] and quantised to 8 bits; the format follows the suffix (use .png for
    lossless round trips).
    """
    _check_image(x, "x", 3)
    return _save_pil(_tensor_to_pil(x), path)


def _grid(x: torch.Tensor, nrow: int, padding: int, pad_value: float) -> torch.Tensor:
    """Tile (B, C, H, W) into one (C, H', W') image, ``nrow`` images per row, ``padding`` px around each."""
    B, C, H, W = x.shape
    rows = math.ceil(B / nrow)
    canvas = x.new_full((C, rows * (H + padding) + padding, nrow * (W + padding) + padding), pad_value)
    for i in range(B):
        top, left = padding + (i // nrow) * (H + padding), padding + (i % nrow) * (W + padding)
        canvas[:, top : top + H, left : left + W] = x[i]
    return canvas


def save_grid(
    x: torch.Tensor,
    path: str | os.PathLike[str],
    nrow: int | None = None,
    padding: int = 2,
    scale: int = 1,
    pad_value: float = 1.0,
) -> Path:
    """Save a model-space batch ``x`` (B, C, H, W) as one image grid (PNG for a .png path), atomically.

    The grid has ``cols = min(nrow, B)`` images per row (``nrow`` defaults to ``ceil(sqrt(B))``) and
    ``rows = ceil(B / cols)`` rows, ``padding`` pixels of ``pad_value`` (model space; 1.0 is white)
    around every image, and is then enlarged ``scale`` times with nearest-neighbour so small images
    stay crisp. Its size in pixels (height by width) is
    ``scale * (rows * (H + padding) + padding)`` by ``scale * (cols * (W + padding) + padding)``.
    """
    _check_image(x, "x", 4)
    nrow = math.ceil(math.sqrt(x.shape[0])) if nrow is None else nrow
    for name, value, low in (("nrow", nrow, 1), ("padding", padding, 0), ("scale", scale, 1)):
        if not isinstance(value, int) or value < low:
            raise PosteriaError(f"{name} must be an integer >= {low}, got {value!r}")
    check_finite("x", x)
    cols = min(nrow, x.shape[0])
    img = _tensor_to_pil(_grid(x.detach().to("cpu", torch.float32), cols, padding, pad_value))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return _save_pil(img, path)
