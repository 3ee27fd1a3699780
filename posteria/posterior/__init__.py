"""Posterior sampling for inverse problems: ``solve`` and the registered methods."""

from posteria.posterior.base import METHODS, Method, capabilities, methods, register, solve, supported

__all__ = ["METHODS", "Method", "capabilities", "methods", "register", "solve", "supported"]

# Guidance methods register themselves on import.
from posteria.posterior import dps, mmps, pigdm  # noqa: E402, F401
