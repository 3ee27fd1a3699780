"""The user's own measurement: read from .safetensors, .npy or a picture, checked against the operator,
and ``posteria solve --measurement`` reruns exactly on the ``y`` a previous run saved."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from posteria.cli import app, main
from posteria.errors import PosteriaError
from posteria.io import save_image
from posteria.measurements import read_measurement, save_tensors
from posteria.operators import get_operator

pytestmark = pytest.mark.usefixtures("one_thread")

EVENT = (1, 8, 8)


def solve(tiny_prior, out, *args: str) -> dict:
    """``posteria solve`` with DDRM on the tiny prior; returns metrics.json."""
    base = ["solve", "--prior", str(tiny_prior.folder), "--operator", "sr2", "--method", "ddrm",
            "--steps", "3", "--samples", "2", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, [*base, *args])
    assert result.exit_code == 0 and result.exception is None, result.output
    return json.loads((out / "metrics.json").read_text())


def tensors(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "result.safetensors")


def test_solve_reruns_exactly_on_the_measurement_it_saved(tmp_path, tiny_prior):
    first = solve(tiny_prior, tmp_path / "a", "--test-digits", "2")
    again = solve(tiny_prior, tmp_path / "b", "--measurement", str(tmp_path / "a" / "result.safetensors"))
    a, b = tensors(tmp_path / "a"), tensors(tmp_path / "b")
    assert a["y"].shape == (2, 1, 4, 4) and a["samples"].shape == (2, 2, *EVENT) and "truth" in a
    assert torch.equal(a["y"], b["y"]) and torch.equal(a["samples"], b["samples"]) and "truth" not in b
    assert torch.equal(b["mean"], b["samples"].mean(1)) and torch.equal(b["std"], b["samples"].std(1))
    assert again["measurements"] == 2 and again["consistency"] == first["consistency"]
    assert "psnr_mean" in first and "psnr_mean" not in again and "test_digits" not in again
    assert (tmp_path / "b" / "panels.png").is_file()
    with safe_open(tmp_path / "b" / "result.safetensors", "pt") as f:
        assert f.metadata() == {"operator": "sr2", "method": "ddrm", "noise": "GaussianNoise(sigma_y=0.05)"}
    other = solve(tiny_prior, tmp_path / "c", "--measurement", str(tmp_path / "a" / "result.safetensors"),
                  "--seed", "1")  # fmt: skip
    assert not torch.equal(tensors(tmp_path / "c")["samples"], a["samples"]) and other["seed"] == 1


def test_result_file_records_operator_and_method_and_skips_missing_tensors(tmp_path):
    path = save_tensors({"y": torch.ones(2, 3), "truth": None}, tmp_path / "r.safetensors", operator="cs")
    with safe_open(path, "pt") as f:
        assert list(f.keys()) == ["y"] and f.metadata() == {"operator": "cs"}


def test_a_picture_is_the_measurement_of_an_image_operator_and_a_masks_pixels(tmp_path):
    image = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    sr = get_operator("sr2", EVENT, sigma_y=0.05)
    y = sr(image[None])
    save_image(y[0], tmp_path / "y.png")
    read = read_measurement(tmp_path / "y.png", sr)
    assert read.shape == (1, 1, 4, 4) and read.dtype == torch.float32
    assert (read - y).abs().max() <= 1 / 255 + 1e-6  # 8-bit quantisation only
    box = get_operator("inpaint-box", EVENT, sigma_y=0.05)
    save_image(image, tmp_path / "holes.png")
    observed = read_measurement(tmp_path / "holes.png", box)
    assert torch.equal(
        observed, box(read_measurement(tmp_path / "holes.png", get_operator("denoise", EVENT)))
    )


def test_array_files_hold_one_measurement_or_a_batch(tmp_path):
    cs = get_operator("cs25", EVENT)
    np.save(tmp_path / "one.npy", np.arange(16, dtype=np.float64))
    one = read_measurement(tmp_path / "one.npy", cs)
    assert one.shape == (1, 16) and one.dtype == torch.float32 and float(one[0, 3]) == 3.0
    mri = get_operator("mri4", EVENT)
    k = mri.measure(torch.zeros(3, *EVENT), torch.Generator().manual_seed(0))
    np.save(tmp_path / "k.npy", k.numpy().astype(np.complex128))
    np.save(tmp_path / "big_endian.npy", np.arange(16, dtype=">f8"))  # read in native order
    assert torch.equal(read_measurement(tmp_path / "big_endian.npy", cs), one)
    assert torch.equal(read_measurement(tmp_path / "k.npy", mri), k)
    save_file({"kspace": k}, tmp_path / "k.safetensors")  # the only tensor, whatever its name
    assert torch.equal(read_measurement(tmp_path / "k.safetensors", mri), k)


def bad_files(folder) -> dict[str, object]:
    """Files that no operator below accepts, by what is wrong with them."""
    save_file({"a": torch.ones(16), "b": torch.ones(16)}, folder / "two.safetensors")
    (folder / "junk.safetensors").write_bytes(b"not a safetensors file")
    np.save(folder / "pickle.npy", np.array([{}], dtype=object))
    np.save(folder / "nan.npy", np.full(16, np.nan, dtype=np.float32))
    np.save(folder / "short.npy", np.ones((2, 15), dtype=np.float32))
    np.save(folder / "real.npy", np.ones((1, 16), dtype=np.float32))
    save_image(torch.zeros(1, 8, 8), folder / "image.png")
    np.save(folder / "counts.npy", np.arange(16))
    save_file({"y": torch.ones(16, dtype=torch.bool)}, folder / "bool.safetensors")
    np.savez(folder / "archive.npz", y=np.ones(16))
    (folder / "archive.npz").rename(folder / "archive.npy")
    np.save(folder / "empty.npy", np.ones((0, 16), dtype=np.float32))
    save_tensors({"y": torch.ones(1, 16)}, folder / "other.safetensors", operator="cs10")
    return {
        "counts.npy": ("cs25", "holds int64 values; expected floats in model space (pixels in [-1, 1])"),
        "bool.safetensors": ("cs25", "holds bool values; expected floats"),
        "archive.npy": ("cs25", "is an .npz archive; expected one .npy array"),
        "empty.npy": ("cs25", "has shape (0, 16); operator 'cs25' expects (B, 16) or (16,)"),
        "other.safetensors": ("cs25", "was measured by operator 'cs10', not 'cs25'"),
        "two.safetensors": ("cs25", "has no tensor named 'y' (it holds: a, b)"),
        "junk.safetensors": ("cs25", "is not a readable safetensors file"),
        "pickle.npy": ("cs25", "is not a readable .npy array"),
        "nan.npy": ("cs25", "y contains NaN or infinite values"),
        "short.npy": ("cs25", "has shape (2, 15); operator 'cs25' expects (B, 16) or (16,)"),
        "real.npy": ("mri4", "operator 'mri4' measures complex values, got torch.float32"),
        "image.png": (
            "cs25",
            "operator 'cs25' does not measure a picture; give its y as .safetensors or .npy",
        ),
        "nope.npy": ("cs25", "does not exist or is not a file"),
    }


def test_a_file_that_does_not_fit_the_operator_is_one_line_naming_the_option(tmp_path):
    for name, (operator, expected) in bad_files(tmp_path).items():
        with pytest.raises(PosteriaError) as err:
            read_measurement(tmp_path / name, get_operator(operator, EVENT))
        assert str(err.value).startswith("--measurement") and expected in str(err.value), (name, err.value)
    with pytest.raises(PosteriaError, match="'sr2' expects a 4x4 picture"):
        read_measurement(tmp_path / "image.png", get_operator("sr2", EVENT))


def test_solve_takes_an_image_to_measure_or_a_measurement_not_both(tmp_path, tiny_prior, monkeypatch, capsys):
    save_image(torch.zeros(1, 4, 4), tmp_path / "y.png")
    monkeypatch.setattr(sys, "argv", ["posteria", "solve", "--prior", str(tiny_prior.folder), "--operator",
                        "sr2", "--input", str(tmp_path / "y.png"), "--measurement", str(tmp_path / "y.png"),
                        "--out", str(tmp_path / "out")])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err.strip() == (
        "error: give --input (an image to measure) or --measurement (your y), not both"
    )


def test_solve_batch_size_changes_memory_not_samples(tmp_path, tiny_prior):
    whole = solve(tiny_prior, tmp_path / "whole", "--test-digits", "3")
    split = solve(
        tiny_prior, tmp_path / "split", "--test-digits", "3", "--batch-size", "3"
    )  # 1 digit at a time
    # float32 convolutions round differently at another batch size, so equal to rounding, not bit for bit
    torch.testing.assert_close(tensors(tmp_path / "split")["samples"], tensors(tmp_path / "whole")["samples"])
    assert whole["nfe"] == split["nfe"] == 3


def test_the_measurement_shown_is_y_where_y_is_a_picture_of_the_signal():
    """Blur and denoising show ``y`` itself (their ``A^+ y`` amplifies the noise by ``1 / s_min``), other
    linear operators ``A^+ y`` (zero-filled, upsampled), phase retrieval nothing."""
    from posteria.restore import measurement_image

    x = 0.5 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for name in ("blur-gauss", "denoise"):
        op = get_operator(name, (1, 8, 8), sigma_y=0.05)
        y = op.measure(x, generator=torch.Generator().manual_seed(1))
        shown, title = measurement_image(op, y)
        assert shown is y and title == "y"
    sr = get_operator("sr2", (1, 8, 8), sigma_y=0.05)
    shown, title = measurement_image(sr, sr(x))
    assert shown.shape == x.shape and title == "y (A+ y)"
    assert measurement_image(get_operator("phase", (1, 8, 8)), torch.zeros(2, 1, 16, 16))[0] is None
