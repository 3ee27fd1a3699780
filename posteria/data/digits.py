"""scikit-learn's bundled 8x8 handwritten digits (1,797 images), read offline from the sklearn package."""

from __future__ import annotations

import functools

import numpy as np
import torch

from posteria.data.splits import split_indices


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    """Load the digits once: images float64 (1797, 8, 8) in 0..16 and labels (1797,); both read-only."""
    from sklearn.datasets import load_digits  # slow import; only when the digits are asked for

    bunch = load_digits()
    images, labels = np.array(bunch.images), np.array(bunch.target)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def digits(split: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits in model space.

    Args:
        split: "all" (1,797, file order), "test" (180 = 10%) or "train" (1,617); fixed split
            ``perm = np.random.default_rng(0).permutation(1797)``, test ``perm[:180]``, train the rest.

    Returns:
        images float32 (N, 1, 8, 8) in [-1, 1] (values 0..16 mapped by ``v / 8 - 1``) and labels int64 (N,),
        new tensors on every call.
    """
    images, labels = _load()
    idx = split_indices(len(images), split, round(0.1 * len(images)), seed=0)
    x = torch.from_numpy(images[idx] / 8.0 - 1.0).to(torch.float32).unsqueeze(1)
    return x, torch.from_numpy(labels[idx].astype(np.int64))
