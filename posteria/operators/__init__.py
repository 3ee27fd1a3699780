"""Measurement models ``y = A(x) + w`` for inverse problems, on model-space signals ``(B, *event)``.

Every operator is an ``nn.Module``: calling it applies ``A``; :meth:`~Operator.measure` adds noise.
Linear operators add ``adjoint``, ``pinv`` and, where one exists, an implicit ``svd``.

>>> import torch, posteria.operators as ops
>>> op = ops.Mask.box(shape=(1, 28, 28), size=14, sigma_y=0.05)
>>> y = op.measure(torch.zeros(4, 1, 28, 28), generator=torch.Generator().manual_seed(0))  # (4, 588)
"""

from posteria.operators.base import LinearOperator, Operator
from posteria.operators.blur import Blur, gaussian_kernel, motion_kernel
from posteria.operators.composition import Composition, LinearComposition
from posteria.operators.dense import MatrixOperator, RandomProjection
from posteria.operators.downsample import Downsample
from posteria.operators.identity import Identity
from posteria.operators.linalg import conjugate_gradient
from posteria.operators.mask import Mask
from posteria.operators.mri import SubsampledFourier
from posteria.operators.noise_models import GaussianNoise, NoiseModel, PoissonNoise
from posteria.operators.phase import PhaseRetrieval
from posteria.operators.registry import OPERATORS, get_operator
from posteria.operators.svd import ImplicitSVD

__all__ = [
    "OPERATORS",
    "Blur",
    "Composition",
    "Downsample",
    "GaussianNoise",
    "Identity",
    "ImplicitSVD",
    "LinearComposition",
    "LinearOperator",
    "Mask",
    "MatrixOperator",
    "NoiseModel",
    "Operator",
    "PhaseRetrieval",
    "PoissonNoise",
    "RandomProjection",
    "SubsampledFourier",
    "conjugate_gradient",
    "gaussian_kernel",
    "get_operator",
    "motion_kernel",
]
