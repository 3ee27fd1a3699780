"""A folder of image files as one model-space batch."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from posteria.errors import PosteriaError
from posteria.io import IMAGE_SUFFIXES, read_image


def image_files(path: str | os.PathLike[str]) -> list[Path]:
    """The image files directly inside folder ``path`` (by suffix, case-insensitive), sorted by name.

    Raises:
        PosteriaError: the folder is missing, is not a folder, or holds no image files.
    """
    folder = Path(path)
    if not folder.exists():
        raise PosteriaError(f"image folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise PosteriaError(f"image folder {str(folder)!r} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PosteriaError(
            f"image folder {str(folder)!r} holds no image files; expected {', '.join(IMAGE_SUFFIXES)}"
        )
    return files


def image_folder(
    path: str | os.PathLike[str], size: int | tuple[int, int] | None = None, channels: int = 1
) -> torch.Tensor:
    """Every image directly inside folder ``path``, sorted by file name, as float32 (N, C, H, W) in [-1, 1].

    Args:
        path: the folder; files ending in .png, .jpg, .jpeg, .bmp, .gif, .tif or .tiff are read,
            others (and sub-folders) are ignored.
        size: resize every image (bicubic, Pillow) to ``size x size`` or ``(height, width)``; without it
            all images must already have the same size.
        channels: 1 for grayscale, 3 for RGB.

    Raises:
        PosteriaError: missing folder, not a folder, no images, an unreadable image (named), or images
            of different sizes when ``size`` is None (both files named).
    """
    files = image_files(path)
    images = [read_image(f, channels=channels, size=size) for f in files]
    first = images[0].shape
    for f, x in zip(files, images, strict=True):
        if x.shape != first:
            raise PosteriaError(
                f"images differ in size: {files[0].name!r} is {first[1]}x{first[2]} but {f.name!r} is "
                f"{x.shape[1]}x{x.shape[2]}; pass size= to resize them"
            )
    return torch.stack(images)
