"""Gaussian mixture parameters with exact sampling: the ground truth behind the toy and low-rank sets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from posteria.errors import PosteriaError


def check_count(name: str, value: int, low: int = 1) -> int:
    """Raise unless ``value`` is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PosteriaError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """``p(x) = sum_k weights[k] N(x; means[k], covs[k])``, held in float64.

    Attributes:
        means: (K, D).
        covs: (K, D, D), symmetric positive semi-definite (low-rank allowed).
        weights: (K,), non-negative; normalised to sum to one on construction.
        factors: optional (K, D, r) with ``covs[k] = factors[k] @ factors[k].T``; when present, samples
            are drawn as ``means[k] + factors[k] @ z`` with ``z ~ N(0, I_r)``, so they lie exactly in the
            component's affine subspace.
    """

    means: torch.Tensor
    covs: torch.Tensor
    weights: torch.Tensor
    factors: torch.Tensor | None = None

    def __post_init__(self) -> None:
        """Cast to float64, check the shapes agree and normalise the weights."""
        f64 = {
            k: torch.as_tensor(getattr(self, k), dtype=torch.float64) for k in ("means", "covs", "weights")
        }
        K, D = f64["means"].shape if f64["means"].dim() == 2 else (-1, -1)
        if K < 1 or f64["covs"].shape != (K, D, D) or f64["weights"].shape != (K,):
            shapes = {k: tuple(v.shape) for k, v in f64.items()}
            raise PosteriaError(f"mixture needs means (K, D), covs (K, D, D), weights (K,); got {shapes}")
        w = f64["weights"]
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise PosteriaError(f"mixture weights must be finite, >= 0 and not all zero, got {w.tolist()}")
        f64["weights"] = w / w.sum()
        if self.factors is not None:
            f64["factors"] = torch.as_tensor(self.factors, dtype=torch.float64)
            if f64["factors"].dim() != 3 or f64["factors"].shape[:2] != (K, D):
                raise PosteriaError(
                    f"mixture factors must be (K, D, r) = ({K}, {D}, r), got {tuple(f64['factors'].shape)}"
                )
        for k, v in f64.items():
            object.__setattr__(self, k, v)

    @classmethod
    def low_rank(
        cls, means: torch.Tensor, factors: torch.Tensor, weights: torch.Tensor | None = None
    ) -> GaussianMixture:
        """Mixture with ``covs[k] = factors[k] @ factors[k].T``, factors (K, D, r); equal weights if None."""
        factors = torch.as_tensor(factors, dtype=torch.float64)
        weights = torch.ones(factors.shape[0], dtype=torch.float64) if weights is None else weights
        return cls(means, factors @ factors.transpose(-1, -2), weights, factors)

    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """D, the dimension of the data."""
        return self.means.shape[1]

    def _roots(self) -> torch.Tensor:
        """(K, D, r) matrices ``R`` with ``R R^T = cov``: the factors, or symmetric square roots via eigh."""
        if self.factors is not None:
            return self.factors
        evals, evecs = torch.linalg.eigh(self.covs)
        return evecs * evals.clamp_min(0.0).sqrt().unsqueeze(-2)

    def sample_labelled(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` samples (n, D) and their component indices (n,) int64; labels first, then noise."""
        check_count("n", n)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        roots = self._roots()[labels]
        z = torch.randn(n, roots.shape[-1], 1, generator=generator, dtype=torch.float64)
        x = self.means[labels] + (roots @ z).squeeze(-1)
        return x.to(dtype), labels

    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Draw ``n`` samples, shape (n, D)."""
        return self.sample_labelled(n, generator, dtype)[0]

    def _component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x_b; m_k, C_k)`` for x (B, D), shape (B, K); raise if a cov is singular."""
        L, info = torch.linalg.cholesky_ex(self.covs)
        if bool(info.any()):
            raise PosteriaError("this needs full-rank covariances; the mixture is singular (low-rank)")
        x = torch.as_tensor(x, dtype=torch.float64)
        diff = (x.unsqueeze(-2) - self.means).unsqueeze(-1)  # (B, K, D, 1)
        z = torch.linalg.solve_triangular(L, diff, upper=False).squeeze(-1)
        log_det = torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
        return self.weights.log() - 0.5 * z.pow(2).sum(-1) - log_det - 0.5 * self.dim * math.log(2 * math.pi)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` for x (B, D), in float64 (B,); full-rank covariances only."""
        return torch.logsumexp(self._component_log_probs(x), dim=-1)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable component of each row of x (B, D), int64 (B,); full-rank covariances only."""
        return self._component_log_probs(x).argmax(dim=-1)


def isotropic_mixture(
    means: torch.Tensor, std: float, weights: torch.Tensor | None = None
) -> GaussianMixture:
    """Components ``N(means[k], std^2 I)`` with equal weights unless ``weights`` is given."""
    if not (math.isfinite(std) and std > 0):
        raise PosteriaError(f"std must be a finite number > 0, got {std!r}")
    means = torch.as_tensor(means, dtype=torch.float64)
    K, D = means.shape
    covs = (std**2) * torch.eye(D, dtype=torch.float64).expand(K, D, D).clone()
    return GaussianMixture(means, covs, torch.ones(K, dtype=torch.float64) if weights is None else weights)
