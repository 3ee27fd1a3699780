"""Denoisers: the contract, network parameterisations and exact analytic denoisers."""

from posteria.denoisers.base import Denoiser

__all__ = ["Denoiser"]

from posteria.denoisers.empirical import EmpiricalDenoiser  # noqa: E402
from posteria.denoisers.mixture import GaussianMixtureDenoiser  # noqa: E402

__all__ += ["EmpiricalDenoiser", "GaussianMixtureDenoiser"]
