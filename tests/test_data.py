"""Data sets: MNIST-10k and digits, image folders, .npz arrays, toy and low-rank sets, the registry."""

from __future__ import annotations

import hashlib
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from posteria.data import (
    GaussianMixture,
    checkerboard,
    dataset_names,
    digits,
    gaussian_mixture_2d,
    image_folder,
    load_dataset,
    low_rank_subspace_mixture,
    mnist10k,
    mnist10k_license,
    npz_arrays,
    random_low_rank_matrices,
    random_subspace_mixture,
    ring_of_gaussians,
    split_indices,
    swiss_roll,
    two_moons,
)
from posteria.errors import PosteriaError
from posteria.io import save_image

LICENSE_SHA256 = "79f415dab2cde86bf0cbf7acb6f7f8affa479fdbc534b2fca59814f523950772"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _is_8bit(x: torch.Tensor) -> bool:
    """True when every value is ``u / 127.5 - 1`` for an integer u in 0..255."""
    u = (x.double() + 1) * 127.5
    return bool(((u - u.round()).abs() < 1e-4).all()) and float(x.min()) >= -1 and float(x.max()) <= 1


# ---------------------------------------------------------------------------------------------------------
# MNIST-10k


@pytest.mark.parametrize(("split", "n"), [("train", 9000), ("test", 1000), ("all", 10000)])
def test_mnist_shapes_dtypes_range(split: str, n: int) -> None:
    x, y = mnist10k(split)
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0 and _is_8bit(x[:500])
    assert set(y.unique().tolist()) == set(range(10))


def test_mnist_split_is_the_documented_one() -> None:
    perm = np.random.default_rng(0).permutation(10000)
    assert np.array_equal(split_indices(10000, "test", 1000), perm[:1000])
    assert np.array_equal(split_indices(10000, "train", 1000), perm[1000:])
    x_all, y_all = mnist10k("all")
    x_test, y_test = mnist10k("test")
    assert torch.equal(x_test, x_all[perm[:1000]]) and torch.equal(y_test, y_all[perm[:1000]])


def test_mnist_splits_disjoint_and_covering() -> None:
    train, test = split_indices(10000, "train", 1000), split_indices(10000, "test", 1000)
    assert len(set(train)) == 9000 and len(set(test)) == 1000
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(range(10000))


def test_mnist_deterministic_and_cache_protected() -> None:
    x1, y1 = mnist10k("test")
    x1[:] = 0.0
    y1[:] = 0
    x2, y2 = mnist10k("test")
    assert float(x2.min()) == -1.0 and len(y2.unique()) == 10
    x3, y3 = mnist10k("test")
    assert torch.equal(x2, x3) and torch.equal(y2, y3)
    xa1, _ = mnist10k("all")
    xa1.add_(5)
    assert float(mnist10k("all")[0].max()) == 1.0


def test_mnist_label_distribution() -> None:
    _, y_train = mnist10k("train")
    _, y_test = mnist10k("test")
    assert int(torch.bincount(y_train, minlength=10).min()) > 700
    assert int(torch.bincount(y_train, minlength=10).max()) < 1150
    assert int(torch.bincount(y_test, minlength=10).min()) > 60


def test_mnist_images_look_like_digits() -> None:
    x, _ = mnist10k("test")
    # Digits are white strokes on a black background: mostly -1, border empty, centre inked.
    assert float((x == -1).float().mean()) > 0.7
    assert float(x[:, :, :2, :].mean()) < -0.99 and float(x[:, :, 10:18, 10:18].mean()) > -0.5


def test_mnist_license_ships() -> None:
    text = mnist10k_license()
    assert "MIT License" in text and "Juan Cazala" in text
    raw = resources.files("posteria").joinpath("assets/data/mnist10k.LICENSE").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == LICENSE_SHA256


def test_unknown_split() -> None:
    with pytest.raises(PosteriaError, match="unknown split 'val'; expected one of: train, test, all"):
        mnist10k("val")


# ---------------------------------------------------------------------------------------------------------
# digits


def test_digits() -> None:
    x, y = digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert bool((((x + 1) * 8) == ((x + 1) * 8).round()).all())  # 17 grey levels
    (xtr, ytr), (xte, _) = digits("train"), digits("test")
    assert len(xtr) == 1617 and len(xte) == 180 and len(ytr) == 1617
    perm = np.random.default_rng(0).permutation(1797)
    assert torch.equal(xte, x[perm[:180]]) and torch.equal(ytr, y[perm[180:]])
    assert int(torch.bincount(ytr, minlength=10).min()) > 130
    xte[:] = 5
    assert torch.equal(digits("test")[0], x[perm[:180]])
    with pytest.raises(PosteriaError, match="unknown split 'validation'"):
        digits("validation")


# ---------------------------------------------------------------------------------------------------------
# image_folder


def test_image_folder_round_trip(tmp_path: Path) -> None:
    x = torch.rand(4, 3, 6, 5, generator=_gen()) * 2 - 1
    for i, xi in enumerate(x):
        save_image(xi, tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "sub").mkdir()
    y = image_folder(tmp_path, channels=3)
    assert y.shape == (4, 3, 6, 5) and y.dtype == torch.float32
    assert float((y - x).abs().max()) <= 1 / 255 + 1e-6
    assert image_folder(tmp_path, channels=1).shape == (4, 1, 6, 5)


def test_image_folder_mixed_formats_with_size(tmp_path: Path) -> None:
    Image.new("L", (10, 10), 255).save(tmp_path / "a.PNG")
    Image.new("RGB", (7, 9), (0, 0, 0)).save(tmp_path / "b.jpg")
    Image.new("P", (4, 4)).save(tmp_path / "c.gif")
    Image.new("L", (5, 3), 0).save(tmp_path / "d.bmp")
    Image.new("L", (6, 6), 0).save(tmp_path / "e.tif")
    y = image_folder(tmp_path, size=8)
    assert y.shape == (5, 1, 8, 8)
    assert float(y[0].min()) == 1.0 and float(y[1].max()) < -0.9


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(PosteriaError, match=r"image folder .*missing.* does not exist"):
        image_folder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(PosteriaError, match=r"file\.png.* is not a directory"):
        image_folder(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(PosteriaError, match=r"empty.* holds no image files"):
        image_folder(empty)


def test_image_folder_corrupt_file_named(tmp_path: Path) -> None:
    save_image(torch.zeros(1, 4, 4), tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(PosteriaError, match=r"broken\.jpg"):
        image_folder(tmp_path)


def test_image_folder_different_sizes(tmp_path: Path) -> None:
    save_image(torch.zeros(1, 4, 4), tmp_path / "a.png")
    save_image(torch.zeros(1, 5, 4), tmp_path / "b.png")
    with pytest.raises(PosteriaError, match=r"'a\.png' is 4x4 but 'b\.png' is 5x4; pass size="):
        image_folder(tmp_path)
    assert image_folder(tmp_path, size=(3, 2)).shape == (2, 1, 3, 2)


# ---------------------------------------------------------------------------------------------------------
# npz_arrays


def test_npz_uint8_images(tmp_path: Path) -> None:
    u = np.random.default_rng(0).integers(0, 256, (5, 6, 7), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=u, labels=np.arange(5))
    x = npz_arrays(tmp_path / "a.npz")
    assert x.shape == (5, 1, 6, 7) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.from_numpy(u).float() / 127.5 - 1)


def test_npz_layouts_and_ranges(tmp_path: Path) -> None:
    v = np.random.default_rng(0).uniform(-1, 1, (4, 3, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "f.npz", nchw=v, nhwc=v.transpose(0, 2, 3, 1), vec=v.reshape(4, -1), unit=(v + 1) / 2)
    path = tmp_path / "f.npz"
    assert torch.equal(npz_arrays(path, "nchw"), torch.from_numpy(v))
    assert torch.equal(npz_arrays(path, "nhwc"), torch.from_numpy(v))
    assert npz_arrays(path, "vec").shape == (4, 75)
    assert torch.allclose(npz_arrays(path, "unit", unit_interval=True), torch.from_numpy(v), atol=1e-6)
    np.savez(tmp_path / "one.npz", arr_0=v[:, 0])
    assert npz_arrays(tmp_path / "one.npz").shape == (4, 1, 5, 5)


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(PosteriaError, match=r"npz file .*nope\.npz.* does not exist"):
        npz_arrays(tmp_path / "nope.npz")
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 3)), y=np.zeros((2, 3, 4, 5, 6)), big=np.full((2, 3), 9.0))
    with pytest.raises(PosteriaError, match="key 'images' not in .*available keys: x, y, big"):
        npz_arrays(tmp_path / "a.npz", key="images")
    with pytest.raises(PosteriaError, match="several arrays; pass key= one of: x, y, big"):
        npz_arrays(tmp_path / "a.npz")
    with pytest.raises(PosteriaError, match=r"array 'y' has shape \(2, 3, 4, 5, 6\); expected"):
        npz_arrays(tmp_path / "a.npz", key="y")
    with pytest.raises(
        PosteriaError, match=r"'big' has values in \[9, 9\], expected \[-1, 1\].*unit_interval"
    ):
        npz_arrays(tmp_path / "a.npz", key="big")


def test_npz_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(PosteriaError, match=r"cannot read npz file .*junk\.npz"):
        npz_arrays(tmp_path / "junk.npz")
    np.save(tmp_path / "plain.npy", np.zeros((2, 2)))
    with pytest.raises(PosteriaError, match=r"plain\.npy.* single \.npy array"):
        npz_arrays(tmp_path / "plain.npy")
    np.savez(tmp_path / "s.npz", images=np.array([["a", "b"]]), neg=np.full((2, 3), -4, dtype=np.int16))
    with pytest.raises(PosteriaError, match="dtype <U1; expected uint8 \\(0..255\\) or float"):
        npz_arrays(tmp_path / "s.npz")
    with pytest.raises(PosteriaError, match=r"outside 0\.\.255"):
        npz_arrays(tmp_path / "s.npz", key="neg")


# ---------------------------------------------------------------------------------------------------------
# Toy sets


TOYS = [gaussian_mixture_2d, two_moons, checkerboard, swiss_roll]


@pytest.mark.parametrize("sampler", TOYS)
def test_toy_shapes_and_reproducibility(sampler) -> None:
    x = sampler(500, _gen(3))
    assert x.shape == (500, 2) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    assert torch.equal(x, sampler(500, _gen(3)))
    assert not torch.equal(x, sampler(500, _gen(4)))
    assert float(x.abs().max()) < 3.0 and 0.3 < float(x.std()) < 2.0
    with pytest.raises(PosteriaError, match="n must be an integer >= 1"):
        sampler(0, _gen())


def test_gaussian_mixture_modes_recovered() -> None:
    mix = ring_of_gaussians()
    x, labels = mix.sample_labelled(4000, _gen(1))
    assert mix.n_components == 8 and mix.dim == 2
    assert torch.allclose(mix.weights, torch.full((8,), 1 / 8, dtype=torch.float64))
    assert torch.allclose(mix.means.norm(dim=1), torch.full((8,), 1.5, dtype=torch.float64))
    counts = torch.bincount(mix.assign(x), minlength=8)
    assert int(counts.min()) > 400 and int(counts.max()) < 600  # 500 +- ~4.8 sigma
    assert float((mix.assign(x) == labels).float().mean()) > 0.999  # modes are well separated
    for k in range(8):
        xk = x[labels == k].double()
        assert float((xk.mean(0) - mix.means[k]).norm()) < 0.04
        assert abs(float(xk.std(0).mean()) - 0.15) < 0.02


def test_gaussian_mixture_log_prob_is_normalised() -> None:
    mix = ring_of_gaussians(modes=3, radius=1.0, std=0.4)
    g = torch.linspace(-4, 4, 201, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), dim=-1).reshape(-1, 2)
    mass = float(mix.log_prob(grid).exp().sum()) * float(g[1] - g[0]) ** 2
    assert abs(mass - 1.0) < 1e-3


def test_gaussian_mixture_validation() -> None:
    with pytest.raises(PosteriaError, match="mixture needs means"):
        GaussianMixture(torch.zeros(2, 3), torch.zeros(2, 2, 2), torch.ones(2))
    with pytest.raises(PosteriaError, match="weights must be finite"):
        GaussianMixture(torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2), torch.tensor([1.0, -1.0]))
    mix = GaussianMixture(torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2), torch.tensor([1.0, 3.0]))
    assert mix.weights.tolist() == [0.25, 0.75] and mix.means.dtype == torch.float64
    with pytest.raises(PosteriaError, match="modes must be an integer"):
        ring_of_gaussians(modes=0)


def test_checkerboard_on_dark_cells() -> None:
    x = checkerboard(4000, _gen())
    cells = torch.floor(x + 2).long()
    assert bool(((cells >= 0) & (cells <= 3)).all())
    assert bool(((cells[:, 0] + cells[:, 1]) % 2 == 0).all())
    assert len(torch.unique(cells[:, 0] * 4 + cells[:, 1])) == 8


# ---------------------------------------------------------------------------------------------------------
# Low-rank sets


@pytest.mark.parametrize(("rows", "cols", "rank"), [(6, 4, 1), (5, 7, 3), (8, 8, 8)])
def test_low_rank_matrices_have_the_rank(rows: int, cols: int, rank: int) -> None:
    M = random_low_rank_matrices(20, rows, cols, rank, _gen(), dtype=torch.float64)
    assert M.shape == (20, rows, cols) and M.dtype == torch.float64
    s = torch.linalg.svdvals(M)
    assert float(s[:, rank - 1].min()) > 1e-8 * float(s[:, 0].max())
    if rank < min(rows, cols):
        assert float(s[:, rank].max()) < 1e-10 * float(s[:, 0].max())
    assert torch.equal(M, random_low_rank_matrices(20, rows, cols, rank, _gen(), dtype=torch.float64))
    assert random_low_rank_matrices(2, rows, cols, rank).dtype == torch.float32


def test_low_rank_matrices_errors() -> None:
    with pytest.raises(PosteriaError, match=r"rank must be <= min\(rows, cols\) = 3, got 4"):
        random_low_rank_matrices(2, 3, 5, 4)
    with pytest.raises(PosteriaError, match="rank must be an integer >= 1"):
        random_low_rank_matrices(2, 3, 5, 0)


def test_subspace_mixture_samples_lie_in_their_subspace() -> None:
    x, mix = low_rank_subspace_mixture(600, dim=10, rank=3, components=4, generator=_gen(2))
    U = mix.factors
    assert x.shape == (600, 10) and U.shape == (4, 10, 3) and mix.covs.shape == (4, 10, 10)
    assert torch.allclose(
        U.transpose(1, 2) @ U, torch.eye(3, dtype=torch.float64).expand(4, 3, 3), atol=1e-12
    )
    assert torch.allclose(torch.linalg.matrix_rank(mix.covs), torch.tensor(3))
    projected = (U @ (U.transpose(1, 2) @ x.double().T)).permute(2, 0, 1)  # (600, K, 10)
    residual = x.double().unsqueeze(1) - projected
    dist = residual.norm(dim=-1)  # (600, K): distance of each sample to each subspace
    assert float(dist.min(dim=1).values.max()) < 1e-5 and float(dist.max(dim=1).values.min()) > 0.05
    assert torch.bincount(dist.argmin(dim=1), minlength=4).min() > 100
    assert abs(float(x.double().pow(2).sum(1).mean()) - 3.0) < 0.4
    x2, mix2 = low_rank_subspace_mixture(600, 10, 3, 4, generator=_gen(2))
    assert torch.equal(x, x2) and torch.equal(mix.factors, mix2.factors)


def test_subspace_mixture_is_singular() -> None:
    mix = random_subspace_mixture(5, 2, 3, _gen())
    with pytest.raises(PosteriaError, match="full-rank"):
        mix.log_prob(torch.zeros(1, 5))
    with pytest.raises(PosteriaError, match="rank must be <= dim = 5"):
        random_subspace_mixture(5, 6, 3)


# ---------------------------------------------------------------------------------------------------------
# Registry


def test_load_dataset_names() -> None:
    names = dataset_names()
    assert {"mnist", "mnist10k", "digits", "two_moons", "checkerboard", "gaussian_mixture_2d"} <= set(names)
    x, y = load_dataset("mnist", "test")
    assert torch.equal(x, mnist10k("test")[0]) and torch.equal(y, load_dataset("mnist10k", "test")[1])
    assert load_dataset("digits", "all")[0].shape == (1797, 1, 8, 8)


def test_load_dataset_toy_splits() -> None:
    train, labels = load_dataset("two_moons")
    test, _ = load_dataset("two_moons", "test")
    both, _ = load_dataset("two_moons", "all")
    assert labels is None and train.shape == (10000, 2) and test.shape == (2000, 2)
    assert torch.equal(both, torch.cat([train, test])) and torch.equal(train, load_dataset("two_moons")[0])
    assert not torch.equal(train[:2000], test)


def test_load_dataset_unknown() -> None:
    with pytest.raises(
        PosteriaError, match="unknown dataset 'cifar'; expected one of: mnist, mnist10k, digits"
    ):
        load_dataset("cifar")
    with pytest.raises(PosteriaError, match="unknown split"):
        load_dataset("checkerboard", "val")
    assert math.isfinite(float(load_dataset("swiss_roll", "test")[0].sum()))
