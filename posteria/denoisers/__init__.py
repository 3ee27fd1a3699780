"""Denoisers: the contract, network parameterisations and exact analytic denoisers."""

from posteria.denoisers.base import Denoiser

__all__ = ["Denoiser"]
