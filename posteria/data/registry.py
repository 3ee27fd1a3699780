"""Named data sets: ``load_dataset(name, split)`` for the CLI and the benchmarks."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from posteria.data.arrays import npz_arrays
from posteria.data.digits import digits
from posteria.data.folder import image_folder
from posteria.data.mnist import mnist10k
from posteria.data.splits import SPLITS, split_indices
from posteria.data.toy import checkerboard, gaussian_mixture_2d, swiss_roll, two_moons
from posteria.errors import PosteriaError, check_choice

Loaded = tuple[torch.Tensor, torch.Tensor | None]

#: Sizes and seeds of the fixed toy splits; "all" is train then test.
TOY_SPLITS = {"train": (10_000, 0), "test": (2_000, 1)}

_TOY: dict[str, Callable[[int, torch.Generator], torch.Tensor]] = {
    "gaussian_mixture_2d": gaussian_mixture_2d,
    "two_moons": two_moons,
    "checkerboard": checkerboard,
    "swiss_roll": swiss_roll,
}

_LABELLED: dict[str, Callable[[str], Loaded]] = {"mnist": mnist10k, "mnist10k": mnist10k, "digits": digits}


def dataset_names() -> list[str]:
    """The names ``load_dataset`` accepts."""
    return [*_LABELLED, *_TOY]


def _toy(name: str, split: str) -> Loaded:
    """A fixed sample of toy set ``name``: "train" 10,000 points (seed 0), "test" 2,000 (seed 1)."""
    check_choice("split", split, SPLITS)
    parts = [s for s in TOY_SPLITS if split in (s, "all")]
    draws = [_TOY[name](TOY_SPLITS[s][0], torch.Generator().manual_seed(TOY_SPLITS[s][1])) for s in parts]
    return torch.cat(draws), None


def load_dataset(name: str, split: str = "train") -> Loaded:
    """Load a named data set in model space: ``(data, labels)``, labels int64 (N,) or None.

    Names: "mnist" / "mnist10k" (N, 1, 28, 28), "digits" (N, 1, 8, 8), and the 2-D toy sets
    "gaussian_mixture_2d", "two_moons", "checkerboard", "swiss_roll" (N, 2), whose splits are fixed
    draws (train: 10,000 points with seed 0, test: 2,000 with seed 1, all: both). ``split`` is
    "train", "test" or "all".

    Raises:
        PosteriaError: unknown name (the known names are listed) or split.
    """
    if name in _LABELLED:
        return _LABELLED[name](split)
    if name in _TOY:
        return _toy(name, split)
    if name.endswith(".npz") or "/" in name or os.sep in name:
        return _from_path(name, split)
    raise PosteriaError(
        f"unknown dataset {name!r}; expected one of: {', '.join(dataset_names())}, "
        "a folder of images or an .npz file"
    )


def _from_path(path: str, split: str) -> Loaded:
    """A user's folder of images or .npz file; split by :func:`split_indices` with 10% held out."""
    data = npz_arrays(path) if path.endswith(".npz") else image_folder(path)
    n_test = max(1, data.shape[0] // 10) if data.shape[0] > 1 else 0
    return data[split_indices(data.shape[0], split, n_test)], None
