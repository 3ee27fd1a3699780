"""Measurement noise ``y ~ p(y | A(x))``: Gaussian and Poisson, each with ``sample`` and ``log_likelihood``.

A complex measurement (MRI k-space) is treated as a pair of real measurements: each of its real and
imaginary parts carries its own independent noise of the stated size.
"""

from __future__ import annotations

import math

import torch

from posteria.errors import PosteriaError, check_positive
from posteria.tensors import flat


def _real_view(y: torch.Tensor) -> torch.Tensor:
    """A complex tensor as real pairs (..., 2); a real tensor unchanged."""
    return torch.view_as_real(y) if y.is_complex() else y


def _randn_like(mean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``mean`` (complex: independent real and imaginary parts).

    The draw happens on the generator's device, so a CPU generator also serves CUDA measurements.
    """
    real = mean.real if mean.is_complex() else mean
    shape = tuple(real.shape) + ((2,) if mean.is_complex() else ())
    device = generator.device if generator is not None else mean.device
    w = torch.randn(shape, generator=generator, dtype=real.dtype, device=device).to(mean.device)
    return torch.view_as_complex(w) if mean.is_complex() else w


class NoiseModel:
    """The law of ``y`` given the clean measurement ``mean = A(x)``; shapes ``(B, *measurement)``."""

    name: str = "noise"
    #: whether :meth:`likelihood_variance` gives a Gaussian approximation (MMPS, PiGDM, DAPS need one)
    gaussian_approximation: bool = False

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``y ~ p(y | mean)``, same shape and dtype as ``mean``."""
        raise NotImplementedError

    def log_likelihood(self, y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """``log p(y | mean)`` summed over the measurement dimensions: shape ``(B,)``."""
        raise NotImplementedError

    def std(self, mean: torch.Tensor) -> torch.Tensor:
        """The standard deviation of each (real) component of ``y`` given ``mean``, shaped like ``mean``
        (real); zero where the noise is."""
        raise NotImplementedError

    def likelihood_variance(self, y: torch.Tensor) -> torch.Tensor | float:
        """The variance ``v`` of the Gaussian likelihood ``N(y; A(x), diag(v))`` that methods built on a
        Gaussian likelihood put in place of ``p(y | A(x))``: a float, or a tensor shaped like ``y``."""
        raise PosteriaError(f"{self!r} has no Gaussian approximation of its likelihood")


def check_noise_model(noise: object) -> NoiseModel:
    """``noise`` if it is a :class:`NoiseModel`, else one line (a number here means ``sigma_y``)."""
    if not isinstance(noise, NoiseModel):
        raise PosteriaError(f"noise must be a NoiseModel (GaussianNoise, PoissonNoise), got {noise!r}")
    return noise


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise ``y = mean + sigma_y * w``, ``w ~ N(0, I)``.

    ``log p(y | mean) = -||y - mean||^2 / (2 sigma_y^2) - n log(sigma_y sqrt(2 pi))`` with ``n`` the
    number of real components (twice the entries for complex ``y``). ``sigma_y = 0`` is noiseless:
    sampling returns ``mean`` and the density is degenerate.
    """

    name = "gaussian"
    gaussian_approximation = True

    def __init__(self, sigma_y: float = 0.0) -> None:
        # checked before float(): that turns "0.1" into a number and None into a TypeError
        self.sigma_y = float(check_positive("sigma_y", sigma_y, allow_zero=True))

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.sigma_y == 0:
            return mean.clone()
        return mean + self.sigma_y * _randn_like(mean, generator)

    def log_likelihood(self, y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        if self.sigma_y == 0:
            raise PosteriaError("log_likelihood needs sigma_y > 0; the noiseless likelihood is degenerate")
        r = flat(_real_view(y - mean))
        const = r.shape[1] * math.log(self.sigma_y * math.sqrt(2 * math.pi))
        return -0.5 * (r**2).sum(1) / self.sigma_y**2 - const

    def std(self, mean: torch.Tensor) -> torch.Tensor:
        return torch.full(mean.shape, self.sigma_y, dtype=mean.real.dtype, device=mean.device)

    def likelihood_variance(self, y: torch.Tensor) -> float:
        """``sigma_y^2``: the likelihood is Gaussian already."""
        return self.sigma_y**2

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma_y={self.sigma_y:g})"


class PoissonNoise(NoiseModel):
    """Photon-counting (shot) noise on a model-space signal in ``[-1, 1]``.

    The clean measurement is mapped to an intensity ``lam = rate * (mean + 1) / 2`` (so ``rate`` is the
    expected photon count of a white pixel), counts ``k ~ Poisson(lam)`` are drawn, and mapped back:
    ``y = 2 k / rate - 1``. Then ``E[y] = mean`` and ``Var[y] = 2 (mean + 1) / rate``: a larger rate
    means less noise. ``log p(y | mean) = sum k log lam - lam - log k!`` (negative intensities are
    clamped to 0). Reference: the Poisson model of DPS (Chung et al., 2023, section 3.2).
    """

    name = "poisson"
    gaussian_approximation = True

    def __init__(self, rate: float) -> None:
        self.rate = float(check_positive("rate", rate))

    def _intensity(self, mean: torch.Tensor) -> torch.Tensor:
        if mean.is_complex():
            raise PosteriaError("Poisson noise needs a real measurement, got a complex one")
        return (self.rate * (mean + 1) / 2).clamp_min(0)

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``y = 2 k / rate - 1``, ``k ~ Poisson(lam)``: (B, *measurement) -> same.

        ``torch.poisson`` consumes as many random numbers as its rates ask for, so one draw for the batch
        would make sample ``i``'s noise depend on the other samples' values. Instead one seed per sample
        is drawn from ``generator`` (a fixed count) and sample ``i`` counts from a generator of its own.
        Drawn on the generator's device, so a CPU generator also serves CUDA measurements.
        """
        lam = self._intensity(mean)
        device = generator.device if generator is not None else lam.device
        seeds = torch.randint(0, 2**62, (lam.shape[0],), generator=generator, device=device).tolist()
        counts = torch.stack(
            [
                torch.poisson(rates.to(device), generator=torch.Generator(device).manual_seed(seed))
                for rates, seed in zip(lam, seeds, strict=True)
            ]
        )
        return 2 * counts.to(lam.device) / self.rate - 1

    def log_likelihood(self, y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        lam = flat(self._intensity(mean))
        k = flat(torch.round(self.rate * (y + 1) / 2)).clamp_min(0)
        return (torch.xlogy(k, lam) - lam - torch.lgamma(k + 1)).sum(1)

    def std(self, mean: torch.Tensor) -> torch.Tensor:
        """``sqrt(Var[y]) = 2 sqrt(lam) / rate``, from ``Var[k] = lam``; ``lam`` floored at one count, the
        resolution of ``y`` (a black pixel's ``y`` is still read to within ``2 / rate``)."""
        return 2 * self._intensity(mean).clamp_min(1.0).sqrt() / self.rate

    def likelihood_variance(self, y: torch.Tensor) -> torch.Tensor:
        """``Var[y_j] = 2 (mean_j + 1) / rate`` with the measured ``y_j`` in place of the unknown mean
        (floored at one count, as :meth:`std`): DPS's Gaussian approximation of the Poisson likelihood,
        which weights residual ``j`` by the inverse of the measured count (Chung et al., 2023, section
        3.2)."""
        return self.std(y) ** 2

    def __repr__(self) -> str:
        return f"PoissonNoise(rate={self.rate:g})"
