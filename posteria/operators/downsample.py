"""Super-resolution: average pooling over ``f x f`` blocks of the last two axes."""

from __future__ import annotations

import math

import torch

from posteria.errors import PosteriaError, check_count, check_shape
from posteria.operators.base import LinearOperator
from posteria.operators.noise_models import NoiseModel
from posteria.operators.svd import ImplicitSVD, pad_to
from posteria.tensors import flat


def _block_basis(k: int, dtype: torch.dtype) -> torch.Tensor:
    """Symmetric orthogonal ``k x k`` Householder matrix whose first column is ``1 / sqrt(k)``."""
    u = torch.full((k,), 1 / math.sqrt(k), dtype=torch.float64)
    v = u.clone()
    v[0] -= 1
    if float(v.norm()) == 0:  # k = 1: nothing to reflect
        return torch.ones(1, 1, dtype=dtype)
    return (torch.eye(k, dtype=torch.float64) - 2 * torch.outer(v, v) / v.dot(v)).to(dtype)


class Downsample(LinearOperator):
    """``A x`` = mean of each ``f x f`` block: (B, ..., H, W) -> (B, ..., H/f, W/f).

    With ``k = f^2``: ``A A^T = I / k``, so ``pinv(y) = k A^T y`` is nearest upsampling and
    ``A^T y = upsample(y) / k``. SVD: each block's averaging row ``1^T / k`` has the single singular value
    ``1 / sqrt(k) = 1 / f``, right singular vector ``1 / sqrt(k)`` and left singular vector 1. ``V`` is, per
    block, a k x k Householder basis with that first column; ``Vt(x)`` lists all blocks' first coordinates
    (``s = 1/f``) then the rest (``s = 0``). Reference: DDRM's ``SuperResolution`` H-functions.
    """

    picture = "image"

    def __init__(
        self, shape: tuple[int, ...], factor: int, sigma_y: float = 0.0, noise: NoiseModel | None = None
    ) -> None:
        shape, self.factor = check_shape("shape", shape), check_count("factor", factor)
        if len(shape) < 2 or shape[-1] % self.factor or shape[-2] % self.factor:
            raise PosteriaError(f"factor must be >= 1 and divide H and W of shape {shape}, got {factor!r}")
        low = (*shape[:-2], shape[-2] // self.factor, shape[-1] // self.factor)
        super().__init__(shape, low, sigma_y, noise)
        self.register_buffer("basis", _block_basis(self.factor**2, torch.get_default_dtype()))

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ..., H, W) -> (B, ..., H/f, W/f, f*f)."""
        f, (h, w) = self.factor, self.measurement_shape[-2:]
        x = x.reshape(*x.shape[:-2], h, f, w, f).movedim(-3, -2)
        return x.reshape(*x.shape[:-2], f * f)

    def _unblocks(self, b: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_blocks`."""
        f, (h, w) = self.factor, self.measurement_shape[-2:]
        b = b.reshape(*b.shape[:-1], f, f).movedim(-2, -3)
        return b.reshape(*b.shape[:-4], h * f, w * f)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._blocks(x).mean(-1)

    def _pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self._unblocks(y[..., None].expand(*y.shape, self.factor**2))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._pinv(y) / self.factor**2

    @property
    def svd(self) -> ImplicitSVD:
        n, D = math.prod(self.measurement_shape), self.signal_dim

        def vt(x: torch.Tensor) -> torch.Tensor:
            c = flat(self._blocks(x) @ self.basis.to(x)).reshape(x.shape[0], n, -1)
            return torch.cat([c[..., 0], flat(c[..., 1:])], 1)

        def v(z: torch.Tensor) -> torch.Tensor:
            c = torch.cat([z[:, :n, None], z[:, n:].reshape(z.shape[0], n, -1)], -1)
            return self._unblocks((c @ self.basis.to(z)).reshape(z.shape[0], *self.measurement_shape, -1))

        def u(z: torch.Tensor) -> torch.Tensor:
            return z[:, :n].reshape(z.shape[0], *self.measurement_shape)

        s = pad_to(torch.full((1, n), 1 / self.factor, device=self.basis.device), D)[0]
        return ImplicitSVD(Vt=vt, V=v, Ut=lambda y: pad_to(flat(y), D), U=u, s=s)
