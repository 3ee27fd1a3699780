"""Image file I/O: model space <-> 8-bit pixels, reading, atomic writing of images and grids."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import posteria.io as pio
from posteria.errors import PosteriaError
from posteria.io import (
    atomic_write_bytes,
    atomic_write_text,
    from_uint8,
    read_image,
    save_grid,
    save_image,
    staged_folder,
    to_uint8,
)

QUANT = 1.0 / 255.0 + 1e-6  # half an 8-bit step in model space (width 2), plus float slack


def _rand_images(*shape: int, seed: int = 0) -> torch.Tensor:
    """Uniform model-space images of the given shape."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _only_files(folder: Path) -> list[str]:
    """Names of all entries in ``folder`` (temp files included)."""
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------------------------------------------------
# to_uint8 / from_uint8


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6))))
def test_uint8_round_trip_is_exact(u: np.ndarray) -> None:
    x = from_uint8(u)
    assert x.dtype == torch.float32 and float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.equal(to_uint8(x), torch.from_numpy(u))


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.integers(1, 50), elements=st.floats(-1, 1, width=32)))
def test_float_round_trip_within_quantisation(v: np.ndarray) -> None:
    x = torch.from_numpy(v)
    assert float((from_uint8(to_uint8(x)) - x).abs().max()) <= QUANT


def test_to_uint8_clamps_and_keeps_shape() -> None:
    x = torch.tensor([[-3.0, -1.0, 0.0, 1.0, 7.0]])
    assert to_uint8(x).tolist() == [[0, 0, 128, 255, 255]]
    assert to_uint8(x).shape == x.shape and to_uint8(x).dtype == torch.uint8


def test_to_uint8_rejects_nan() -> None:
    with pytest.raises(PosteriaError, match="x contains NaN"):
        to_uint8(torch.tensor([0.0, float("nan")]))


# ---------------------------------------------------------------------------------------------------------
# save_image / read_image


@pytest.mark.parametrize("channels", [1, 3])
def test_save_read_round_trip(tmp_path: Path, channels: int) -> None:
    x = _rand_images(channels, 9, 7)
    path = save_image(x, tmp_path / "img.png")
    y = read_image(path, channels=channels)
    assert y.shape == (channels, 9, 7) and y.dtype == torch.float32
    assert float((y - x).abs().max()) <= QUANT
    assert _only_files(tmp_path) == ["img.png"]


def test_read_converts_channels_and_resizes(tmp_path: Path) -> None:
    save_image(_rand_images(1, 10, 12), tmp_path / "g.png")
    rgb = read_image(tmp_path / "g.png", channels=3)
    assert rgb.shape == (3, 10, 12) and torch.equal(rgb[0], rgb[2])
    assert read_image(tmp_path / "g.png", size=5).shape == (1, 5, 5)
    assert read_image(tmp_path / "g.png", channels=3, size=(4, 6)).shape == (3, 4, 6)


def test_read_constant_image_stays_constant_when_resized(tmp_path: Path) -> None:
    save_image(torch.full((3, 16, 16), 0.5), tmp_path / "c.png")
    y = read_image(tmp_path / "c.png", channels=3, size=5)
    assert float((y - 0.5).abs().max()) <= QUANT


def test_read_rgba_jpeg_and_16bit(tmp_path: Path) -> None:
    Image.new("RGBA", (4, 3), (255, 0, 0, 10)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", channels=3)[:, 0, 0].tolist() == [1.0, -1.0, -1.0]
    Image.new("RGB", (8, 8), (128, 128, 128)).save(tmp_path / "j.jpg", quality=95)
    assert float((read_image(tmp_path / "j.jpg") - 1 / 255).abs().max()) < 0.05
    Image.fromarray(np.full((3, 5), 65535, dtype=np.uint16)).save(tmp_path / "d.png")
    assert torch.equal(read_image(tmp_path / "d.png"), torch.ones(1, 3, 5))


def test_read_floating_point_tiffs_as_zero_to_one_or_as_bytes(tmp_path: Path) -> None:
    """Mode "F" (float TIFF): [0, 1] is scaled, [0, 255] taken as it is, anything else refused; PIL's own
    conversion would clip a [0, 1] image to black."""
    ramp = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(ramp, mode="F").save(tmp_path / "unit.tif")
    Image.fromarray(ramp * 255, mode="F").save(tmp_path / "bytes.tif")
    expected = torch.from_numpy(np.round(ramp * 255) / 127.5 - 1).float()[None]
    for name in ("unit.tif", "bytes.tif"):
        torch.testing.assert_close(read_image(tmp_path / name), expected)
    Image.fromarray(ramp - 0.5, mode="F").save(tmp_path / "signed.tif")
    with pytest.raises(PosteriaError, match=r"signed\.tif' holds floating-point values in \[-0\.5, 0\.5\]"):
        read_image(tmp_path / "signed.tif")


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PosteriaError, match=r"nope\.png.*does not exist"):
        read_image(tmp_path / "nope.png")


def test_read_directory(tmp_path: Path) -> None:
    with pytest.raises(PosteriaError, match="is not a file"):
        read_image(tmp_path)


def test_read_corrupt_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(PosteriaError, match=r"cannot read image file .*junk\.png") as info:
        read_image(tmp_path / "junk.png")
    assert "\n" not in str(info.value)
    save_image(_rand_images(3, 32, 32), tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PosteriaError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")


@pytest.mark.parametrize(("kwargs", "match"), [({"channels": 2}, "channels"), ({"size": 0}, "size")])
def test_read_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    save_image(_rand_images(1, 4, 4), tmp_path / "x.png")
    with pytest.raises(PosteriaError, match=match):
        read_image(tmp_path / "x.png", **kwargs)


@pytest.mark.parametrize("shape", [(4, 4), (2, 4, 4), (1, 1, 4, 4)])
def test_save_image_rejects_bad_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(PosteriaError, match=r"x must have shape \(C, H, W\)"):
        save_image(torch.zeros(shape), tmp_path / "x.png")


def test_save_image_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(PosteriaError, match=r"x\.unknown"):
        save_image(torch.zeros(1, 2, 2), tmp_path / "x.unknown")
    assert _only_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------
# save_grid


@pytest.mark.parametrize(
    ("B", "nrow", "padding", "scale", "expected_hw"),
    [
        (16, None, 2, 1, (4 * 30 + 2, 4 * 30 + 2)),
        (5, 2, 1, 1, (3 * 29 + 1, 2 * 29 + 1)),
        (3, 8, 0, 2, (2 * 28, 2 * 3 * 28)),
        (1, None, 2, 3, (3 * 32, 3 * 32)),
    ],
)
def test_save_grid_size(
    tmp_path: Path, B: int, nrow: int | None, padding: int, scale: int, expected_hw: tuple[int, int]
) -> None:
    path = save_grid(_rand_images(B, 1, 28, 28), tmp_path / "grid.png", nrow, padding, scale)
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and (img.height, img.width) == expected_hw and img.mode == "L"
    assert _only_files(tmp_path) == ["grid.png"]


def test_save_grid_places_images_and_padding(tmp_path: Path) -> None:
    x = _rand_images(3, 3, 5, 4)
    save_grid(x, tmp_path / "g.png", nrow=2, padding=1, pad_value=-1.0)
    grid = np.asarray(Image.open(tmp_path / "g.png"))  # (2*6+1, 2*5+1, 3)
    assert grid.shape == (13, 11, 3)
    assert np.array_equal(grid[1:6, 1:5], to_uint8(x[0]).permute(1, 2, 0).numpy())
    assert np.array_equal(grid[7:12, 1:5], to_uint8(x[2]).permute(1, 2, 0).numpy())
    assert grid[0].max() == 0 and grid[7:12, 6:10].max() == 0  # padding and the empty cell are black


def test_save_grid_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(PosteriaError, match=r"\(B, C, H, W\)"):
        save_grid(torch.zeros(1, 4, 4), tmp_path / "g.png")
    with pytest.raises(PosteriaError, match="nrow"):
        save_grid(torch.zeros(2, 1, 4, 4), tmp_path / "g.png", nrow=0)
    with pytest.raises(PosteriaError, match="scale"):
        save_grid(torch.zeros(2, 1, 4, 4), tmp_path / "g.png", scale=0)
    with pytest.raises(PosteriaError, match="NaN"):
        save_grid(torch.full((2, 1, 4, 4), float("nan")), tmp_path / "g.png")
    assert _only_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------
# Atomic writes


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(src: str, dst: str) -> None:
        raise OSError("disk unplugged")

    monkeypatch.setattr(pio.os, "replace", fail)
    with pytest.raises(OSError, match="disk unplugged"):
        save_grid(_rand_images(4, 1, 8, 8), tmp_path / "grid.png")
    assert _only_files(tmp_path) == []


def test_interrupted_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = atomic_write_text(tmp_path / "card.json", '{"old": true}')

    def fail_midway(f: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pio._atomic_write(target, fail_midway)
    assert target.read_text() == '{"old": true}' and _only_files(tmp_path) == ["card.json"]


def test_atomic_write_text_and_bytes(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "sub" / "dir" / "a.json", "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert _only_files(path.parent) == ["a.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # the usual permissions, not mkstemp's 0600


def test_atomic_write_to_directory_fails(tmp_path: Path) -> None:
    with pytest.raises(PosteriaError, match="is a directory"):
        atomic_write_text(tmp_path, "x")


def test_save_json_writes_non_finite_numbers_as_null(tmp_path):
    """JSON has no NaN or Infinity: a metric that overflowed is written as null, and the file parses."""
    import json

    from posteria.train.checkpoint import save_json

    save_json({"a": float("inf"), "b": [1.0, float("nan")], "c": {"d": 2.5}}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": [1.0, None], "c": {"d": 2.5}}


def test_staged_folder_moves_a_finished_set_into_place(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    with staged_folder(out) as stage:
        atomic_write_text(stage / "a.txt", "a")
        atomic_write_text(stage / "sub" / "b.txt", "b")
        assert not (out / "a.txt").exists()  # nothing lands before the set is complete
    assert (out / "a.txt").read_text() == "a" and (out / "sub" / "b.txt").read_text() == "b"
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "sub"]  # no staging folder left


def test_staged_folder_that_fails_half_way_leaves_old_results(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "old a")
    atomic_write_text(tmp_path / "b.txt", "old b")
    with pytest.raises(OSError, match="disk full"), staged_folder(tmp_path) as stage:
        atomic_write_text(stage / "a.txt", "new a")
        raise OSError("disk full")  # before b.txt is written
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["old a", "old b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_staged_folder_that_fails_removes_the_folder_it_created(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), staged_folder(tmp_path / "out") as stage:
        atomic_write_text(stage / "a.txt", "a")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_staged_folder_refuses_a_folder_in_a_results_place_before_moving_anything(tmp_path: Path) -> None:
    (tmp_path / "b.txt").mkdir()
    with pytest.raises(PosteriaError, match="b.txt' is a folder"), staged_folder(tmp_path) as stage:
        atomic_write_text(stage / "a.txt", "a")
        atomic_write_text(stage / "b.txt", "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]  # a.txt was not moved either


def test_staged_folder_that_fails_removes_the_parents_it_created(tmp_path: Path) -> None:
    with pytest.raises(OSError), staged_folder(tmp_path / "x" / "y") as stage:
        atomic_write_text(stage / "a.txt", "a")
        raise OSError("failed")
    assert list(tmp_path.iterdir()) == []


def test_a_broken_link_is_not_an_output_folder(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(PosteriaError, match="is a broken symbolic link"):
        pio.check_output_folder(tmp_path / "link")


def test_has_colour_ignores_the_rounding_of_lossy_codecs(tmp_path):
    """Grey stored as RGB with +-1 between channels (WebP rounding) is grey; 3 levels apart is colour."""
    from posteria.io import has_colour

    rgb = np.full((4, 4, 3), 100, dtype=np.uint8)
    rgb[1, 1] = (101, 100, 99)
    Image.fromarray(rgb).save(tmp_path / "grey.png")
    rgb[2, 2] = (103, 100, 100)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    assert not has_colour(tmp_path / "grey.png") and has_colour(tmp_path / "colour.png")
    assert not has_colour(tmp_path / "l.png")
