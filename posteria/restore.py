"""Restoration runs: measure ground-truth images, sample the posterior, score the samples.

This is what ``posteria solve``, the demo and ``posteria bench restore`` share: one call from clean
images (or a given measurement) to posterior samples, their mean and pixel-wise standard deviation,
and the metrics of the field (PSNR and SSIM of the posterior mean, data consistency, NFE, seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_count
from posteria.io import has_colour, read_array, read_image, save_grid
from posteria.lab.scores import ExactReference
from posteria.measurements import ARRAY_SUFFIXES, save_tensors
from posteria.metrics.image import aligned_samples, consistency, psnr, ssim
from posteria.operators.base import Operator
from posteria.posterior.base import Runner, solve_in_batches
from posteria.random import PerSampleNoise
from posteria.report.figures import image_rows


@dataclass
class Restoration:
    """Posterior samples for B measurements: ``samples`` (B, n, *event), ``y`` (B, *measurement);
    ``drawn`` holds them as the sampler drew them when ``samples`` were registered within the operator's
    ambiguities (see :func:`restore`; data consistency is theirs), else None."""

    method: str
    y: torch.Tensor
    samples: torch.Tensor
    truth: torch.Tensor | None
    nfe: int
    vjps: int
    seconds: float
    drawn: torch.Tensor | None = None

    @property
    def registered_to(self) -> str | None:
        """What the samples were registered to: the truth, each measurement's first sample, or nothing."""
        if self.drawn is None:
            return None
        return "first sample" if self.truth is None else "truth"

    @property
    def mean(self) -> torch.Tensor:
        """The posterior mean estimate (B, *event): the average of the samples."""
        return self.samples.mean(dim=1)

    @property
    def std(self) -> torch.Tensor:
        """Pixel-wise posterior standard deviation (B, *event) (zero for a single sample)."""
        n = self.samples.shape[1]
        return self.samples.std(dim=1) if n > 1 else torch.zeros_like(self.mean)

    def metrics(self, operator: Operator) -> dict[str, float | None]:
        """PSNR and SSIM of the posterior mean and of single samples (if the truth is known), the mean
        data consistency of the samples, NFE, and the seconds of sampling, in all and per measurement."""
        flat = (self.samples if self.drawn is None else self.drawn).flatten(0, 1)
        out = {"method": self.method, "nfe": self.nfe, "vjps": self.vjps, "seconds": self.seconds,
               "seconds_per_image": self.seconds / self.y.shape[0]}  # fmt: skip
        if self.truth is not None:
            out |= self.scores()
        if self.registered_to is not None:
            out |= {"up_to": operator.ambiguities, "registered_to": self.registered_to}
        y_rep = self.y.repeat_interleave(self.samples.shape[1], dim=0)
        noiseless = operator.noise.std(self.y[:1]).amax() == 0  # consistency is undefined
        out["consistency"] = None if noiseless else float(consistency(operator, flat, y_rep).mean())
        return out

    def scores(self) -> dict[str, float]:
        """PSNR and SSIM of the posterior mean and PSNR of single samples against the truth."""
        truth_rep = self.truth.repeat_interleave(self.samples.shape[1], dim=0)
        return {
            "psnr_mean": float(psnr(self.mean, self.truth).mean()),
            "ssim_mean": float(ssim(self.mean, self.truth).mean()),
            "psnr_sample": float(psnr(self.samples.flatten(0, 1), truth_rep).mean()),
        }


def restore(
    prior: Denoiser,
    operator: Operator,
    y: torch.Tensor,
    method: str,
    steps: int | None = None,
    n: int = 4,
    seed: int = 0,
    truth: torch.Tensor | None = None,
    progress: bool = False,
    batch_size: int | None = None,
    **options: object,
) -> Restoration:
    """Sample ``n`` posterior draws per measurement in ``y`` with ``method``, ``batch_size`` measurements
    at a time (default: all; the samples do not depend on it), and time it.

    Where the measurement cannot tell some signals apart (``operator.ambiguities``: phase retrieval's
    rotation and translations), each sample is registered, moved to the one of its equivalents nearest
    to the truth, or without one to its measurement's first sample
    (:func:`~posteria.metrics.image.aligned_samples`), so that their mean, spread and PSNR mean something
    (a digit and its rotation averaged are neither)."""
    generator = torch.Generator().manual_seed(seed)
    run = solve_in_batches(prior, operator, y, method, steps, n, generator, batch_size, progress, **options)
    vjps = max(map(vjps_of, run.runners))
    samples, drawn = run.samples, None
    if operator.ambiguities is not None:
        drawn = run.samples
        samples = aligned_samples(operator, drawn, drawn[:, 0] if truth is None else truth)
    return Restoration(method, y, samples, truth, run.runners[0].nfe, vjps, run.seconds, drawn)


def vjps_of(runner: Runner) -> int:
    """Vector-Jacobian products through the prior that a runner took per sample: as the sampler reports
    them (TDS), or per denoiser call (DPS, PiGDM, MMPS), with MMPS's fallbacks beyond its count per call."""
    vjps = getattr(runner, "vjps", None)
    vjps = (
        runner.nfe * getattr(getattr(runner, "denoiser", None), "vjps_per_call", 0) if vjps is None else vjps
    )
    mmps = getattr(runner, "moments", getattr(runner, "denoiser", None))
    return vjps + getattr(mmps, "fallbacks", 0)


def measure(operator: Operator, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``y = A(x) + w`` for x (B, *event): the noise of measurement ``i`` comes from stream ``i`` of
    ``seed`` (:class:`~posteria.random.PerSampleNoise`), so digit ``i`` is measured alike whatever the
    number of digits."""
    streams = PerSampleNoise(seed, x.shape[0]).generators
    return torch.cat([operator.measure(x[i : i + 1], g) for i, g in enumerate(streams)])


def measurement_image(operator: Operator, y: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """What a person can look at of ``y`` in image space, and its title: ``y`` itself when it is a picture
    of the signal's size (denoising, blur: their ``A^+ y`` would amplify the noise by ``1 / s_min``),
    ``A^+ y`` for another linear operator (the zero-filled image for masks and MRI, the upsampled one for
    super-resolution), None otherwise."""
    if operator.picture == "image" and operator.measurement_shape == operator.event_shape:
        return y, "y"
    return (operator.pinv(y).real if operator.linear else None), "y (A+ y)"


def fourier_magnitude_image(y: torch.Tensor) -> torch.Tensor:
    """Fourier magnitudes (B, C, H, W) as images in [-1, 1]: ``log(1 + |y|)``, zero frequency centred,
    each stretched by its own maximum (phase retrieval's ``y``, whose DC term dwarfs the rest)."""
    shown = torch.fft.fftshift(torch.log1p(y.abs()), dim=(-2, -1))
    return 2 * shown / shown.flatten(1).amax(1).clamp_min(1e-8).reshape(-1, 1, 1, 1) - 1


def held_out_digits(data: str, count: int) -> torch.Tensor:
    """The first ``count`` test images of ``data`` (count, *event); one line if it has fewer."""
    from posteria.data import load_dataset

    images = load_dataset(data, "test")[0]
    if check_count("test_digits", count) > images.shape[0]:
        raise PosteriaError(f"test_digits must be at most {images.shape[0]} (the test split), got {count}")
    return images[:count]


def _read_at_size(
    path: Path, event_shape: tuple[int, ...], option: str
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The image at ``path`` as (C, H, W) at the prior's size, and its own (width, height). An image of
    the prior's aspect ratio, at least as large, is resized; any other is refused in one line naming
    ``option`` (stretching or enlarging it would restore a different picture)."""
    channels, height, width = event_shape
    try:
        w, h = tuple(read_image(path, channels=channels).shape[:0:-1])
    except PosteriaError as err:  # name the option: "--mask: image file 'x.png' does not exist"
        raise PosteriaError(f"{option}: {err}") from err
    if w * height != h * width or h < height:
        raise PosteriaError(
            f"{option} {str(path)!r} is {w}x{h}; expected {width}x{height} or a larger image of the same "
            "aspect ratio (it is resized down)"
        )
    return read_image(path, channels=channels, size=(height, width)), (w, h)


def input_truth(path: Path, event_shape: tuple[int, ...]) -> tuple[torch.Tensor, dict[str, object]]:
    """The user's image, or every image in the user's folder (sorted by name), as (N, C, H, W) at the
    prior's size; and what metrics.json records of them: the path and the image's own (width, height),
    or the folder's file names."""
    from posteria.data.folder import image_files

    if not Path(path).is_dir():
        image, size = _read_at_size(path, event_shape, "--input")
        source: dict[str, object] = {"input": str(path), "input_size": list(size)}
        return image[None], source | _colour_to_grey([Path(path)], event_shape)
    try:
        files = image_files(path)
    except PosteriaError as err:
        raise PosteriaError(f"--input: {err}") from err
    images = torch.stack([_read_at_size(f, event_shape, "--input")[0] for f in files])
    source = {"input": str(path), "input_files": [f.name for f in files]}
    return images, source | _colour_to_grey(files, event_shape)


def _colour_to_grey(files: list[Path], event_shape: tuple[int, ...]) -> dict[str, object]:
    """``{"colour_to_grey": names}`` for the colour pictures among ``files`` that a one-channel prior
    reads as grey (so the user learns it from metrics.json and the command's note), else ``{}``."""
    if event_shape[0] != 1:
        return {}
    names = [f.name for f in files if has_colour(f)]
    return {"colour_to_grey": names} if names else {}


def measurement_colour(path: Path, operator: Operator) -> dict[str, object]:
    """``{"colour_to_grey": [name]}`` if the measurement ``path`` is a colour picture that a one-channel
    operator reads as grey, else ``{}`` (arrays are never pictures)."""
    if Path(path).suffix.lower() in ARRAY_SUFFIXES:
        return {}
    return _colour_to_grey([Path(path)], operator.event_shape)


def _read_exact(path: Path, size: tuple[int, int], option: str) -> torch.Tensor:
    """A grayscale picture (1, H, W) that must be exactly ``size = (H, W)``: never resized."""
    try:
        image = read_image(path, channels=1)
    except PosteriaError as err:
        raise PosteriaError(f"{option}: {err}") from err
    if tuple(image.shape[1:]) != tuple(size):
        raise PosteriaError(
            f"{option} {str(path)!r} is {image.shape[2]}x{image.shape[1]}; expected exactly "
            f"{size[1]}x{size[0]} (it is not resized)"
        )
    return image


def input_mask(path: Path, event_shape: tuple[int, ...], frequencies: bool = False) -> torch.Tensor:
    """The user's mask as a boolean (H, W) at the prior's size, white (brighter than mid-grey) True: the
    observed pixels of an inpainting mask (a larger image of the same aspect is resized, then thresholded)
    or, with ``frequencies``, the measured frequencies of a k-space mask (never resized: that would move
    frequencies)."""
    size = tuple(event_shape[-2:])
    image = _read_exact(path, size, "--mask") if frequencies else _read_at_size(path, (1, *size), "--mask")[0]
    kept = image[0] > 0
    if not bool(kept.any()):
        what = "measured (white) frequencies" if frequencies else "observed (white) pixels"
        raise PosteriaError(f"--mask {str(path)!r} has no {what}")
    return kept


def input_kernel(path: Path) -> torch.Tensor:
    """The user's blur kernel (kh, kw), float64, scaled to sum 1 so that the blur keeps brightness: a
    2-D ``.npy`` array of non-negative weights, or a picture whose grey level is the weight (black 0,
    white 1). One line naming ``--kernel`` otherwise."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        weights = torch.from_numpy(read_array(path, "--kernel", "biuf", "real numbers").astype(np.float64))
    else:
        try:
            weights = (read_image(path, channels=1)[0].double() + 1) / 2
        except PosteriaError as err:
            raise PosteriaError(f"--kernel: {err}") from err
    if weights.dim() != 2 or not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise PosteriaError(f"--kernel {str(path)!r} must be a 2-D array of finite weights >= 0")
    total = weights.sum()
    if not bool(torch.isfinite(total)) or not float(total) > 0:
        raise PosteriaError(f"--kernel {str(path)!r} must have a finite, positive sum")
    return weights / total


def input_matrix(path: Path) -> torch.Tensor:
    """The user's measurement matrix (m, D) from a 2-D ``.npy`` array of finite real numbers, float64 (the
    operator's SVD is computed once from it); one line naming ``--matrix`` otherwise."""
    matrix = torch.from_numpy(read_array(path, "--matrix", "biuf", "real numbers").astype(np.float64))
    if matrix.dim() != 2 or not bool(torch.isfinite(matrix).all()):
        raise PosteriaError(f"--matrix {str(path)!r} must be a 2-D array (m, D) of finite numbers")
    return matrix


def save_restoration(result: Restoration, operator: Operator, out: Path) -> None:
    """OUT/panels.png (one row per measurement), measurement.png, samples.png (a row of samples per
    measurement), mean.png and std.png (stretched by its maximum), and their unquantised tensors in
    result.safetensors (``y``, ``samples``, ``mean``, ``std``, ``truth`` if known)."""
    tensors = {"y": result.y, "samples": result.samples, "mean": result.mean, "std": result.std}
    tensors["truth"] = result.truth  # None for the user's own measurement: left out
    header = {"operator": operator.name, "method": result.method, "noise": repr(operator.noise)}
    save_tensors(tensors, out / "result.safetensors", **header)
    rows, titles = panel_rows(result, operator)
    image_rows(rows, out / "panels.png", titles)
    seen, _ = measurement_image(operator, result.y)
    if seen is None and result.y.dim() == 4:  # phase retrieval: magnitudes of an oversampled DFT
        seen = fourier_magnitude_image(result.y)
    if seen is not None:
        save_grid(seen, out / "measurement.png", scale=2)
    n = result.samples.shape[1]
    save_grid(result.samples.flatten(0, 1), out / "samples.png", nrow=n, scale=2)
    save_grid(result.mean, out / "mean.png", scale=2)
    save_grid(result.std / result.std.max().clamp_min(1e-8) * 2 - 1, out / "std.png", scale=2)


def save_exact_posterior(reference: ExactReference, out: Path) -> None:
    """OUT/exact_mean.png and OUT/exact_std.png: the exact posterior's mean and pixel-wise standard
    deviation, drawn as mean.png and std.png are (the deviation stretched by its maximum)."""
    shape = reference.draws.shape[:1] + reference.draws.shape[2:]
    posterior = reference.posterior
    std = posterior.variance().clamp_min(0).sqrt().reshape(shape)
    save_grid(posterior.mean.reshape(shape), out / "exact_mean.png", scale=2)
    save_grid(std / std.max().clamp_min(1e-8) * 2 - 1, out / "exact_std.png", scale=2)


def panel_rows(result: Restoration, operator: Operator) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rows of a figure, one per measurement: truth, measurement, samples, mean, standard deviation
    (the latter stretched to [-1, 1] by its maximum so that it is visible), with column titles."""
    seen, seen_title = measurement_image(operator, result.y)
    std = result.std
    std_img = 2 * std / std.flatten(1).amax(1).clamp_min(1e-8).reshape(-1, *[1] * (std.dim() - 1)) - 1
    rows, titles = {}, []
    for i in range(result.y.shape[0]):
        cells = [] if result.truth is None else [result.truth[i]]
        cells += [] if seen is None else [seen[i]]
        cells += [*result.samples[i], result.mean[i], std_img[i]]
        rows[f"#{i}"] = torch.stack(cells)
    titles = (["truth"] if result.truth is not None else []) + ([seen_title] if seen is not None else [])
    titles += [f"sample {j + 1}" for j in range(result.samples.shape[1])] + ["mean", "std"]
    return rows, titles
