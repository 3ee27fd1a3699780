"""Data in model space: MNIST-10k, sklearn digits, image folders, .npz arrays, toy and low-rank sets.

Images come out as float32 (N, C, H, W) in [-1, 1]; labels as int64 (N,). Nothing is downloaded.
"""

from posteria.data.arrays import npz_arrays
from posteria.data.digits import digits
from posteria.data.folder import image_files, image_folder
from posteria.data.lowrank import low_rank_subspace_mixture, random_low_rank_matrices, random_subspace_mixture
from posteria.data.mixture import GaussianMixture, isotropic_mixture
from posteria.data.mnist import mnist10k, mnist10k_license
from posteria.data.registry import dataset_names, load_dataset
from posteria.data.splits import split_indices
from posteria.data.toy import checkerboard, gaussian_mixture_2d, ring_of_gaussians, swiss_roll, two_moons

__all__ = [
    "GaussianMixture",
    "checkerboard",
    "dataset_names",
    "digits",
    "gaussian_mixture_2d",
    "image_files",
    "image_folder",
    "isotropic_mixture",
    "load_dataset",
    "low_rank_subspace_mixture",
    "mnist10k",
    "mnist10k_license",
    "npz_arrays",
    "random_low_rank_matrices",
    "random_subspace_mixture",
    "ring_of_gaussians",
    "split_indices",
    "swiss_roll",
    "two_moons",
]
