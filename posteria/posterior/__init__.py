"""Posterior sampling for inverse problems: ``solve`` and the registered methods."""

from posteria.posterior.base import (
    METHODS,
    Method,
    capabilities,
    methods,
    prepare,
    register,
    solve,
    supported,
)

__all__ = [
    "METHODS",
    "Method",
    "capabilities",
    "methods",
    "prepare",
    "register",
    "solve",
    "supported",
]

# Guidance methods register themselves on import.
from posteria.posterior import dps, mmps, pigdm  # noqa: E402, F401

# isort: split
# Transition methods (sampler subclasses) register themselves on import too.
from posteria.posterior import ddnm, ddrm, diffpir, travel  # noqa: E402, F401 - travel: repaint, ddnm

# isort: split
# DAPS and TDS: transition methods for any operator with Gaussian noise, nonlinear ones included.
from posteria.posterior import daps, tds  # noqa: E402, F401

# isort: split
# Classical baselines register point-estimate methods with the same call shape.
from posteria import classical  # noqa: E402, F401
