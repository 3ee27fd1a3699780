"""Classical baselines for inverse problems, run through ``posteria.solve`` like the posterior samplers.

Each registers a method whose ``n`` samples per measurement are one point estimate (``Method.point``):
least squares and Tikhonov (``linear``), FISTA with total variation (``tv``), MAP with a distance
function (``distance``), the masked regression network (``masked``), and low-rank completion and
robust PCA (``completion``, on the functions of ``lowrank``).
"""

from posteria.classical import completion, distance, linear, masked, tv  # noqa: F401 - they register on import
from posteria.classical.estimate import PointEstimate, register_estimate

__all__ = ["PointEstimate", "register_estimate"]
