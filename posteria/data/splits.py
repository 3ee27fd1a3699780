"""Fixed train/test splits: the same indices on every machine and every call."""

from __future__ import annotations

import numpy as np

from posteria.errors import check_choice

SPLITS = ("train", "test", "all")


def split_indices(n: int, split: str, n_test: int, seed: int = 0) -> np.ndarray:
    """Indices of ``split`` among ``n`` items, from one fixed permutation.

    ``perm = np.random.default_rng(seed).permutation(n)``; "test" is ``perm[:n_test]``, "train" is
    ``perm[n_test:]`` (both in permutation order) and "all" is ``arange(n)`` in file order.
    """
    check_choice("split", split, SPLITS)
    if split == "all":
        return np.arange(n)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_test] if split == "test" else perm[n_test:]
