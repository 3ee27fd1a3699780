"""Priors with exact denoisers and exact posteriors: a Gaussian and a Gaussian mixture (seed chapter,
Examples 3.3, 7.4 and 7.5).

Each prior samples itself, builds its exact denoiser ``E[x | x_t]`` (the existing
:class:`~posteria.denoisers.gaussian.GaussianDenoiser` or
:class:`~posteria.denoisers.mixture.GaussianMixtureDenoiser`) and its exact posterior given
``y = A x + w``, ``w ~ N(0, sigma_y^2 I)``, for any linear operator (complex measurements count as
real pairs):

>>> prior = GaussianMixturePrior.subspaces(D=16, K=3, P=2, generator=torch.Generator().manual_seed(0))
>>> op = MatrixOperator(torch.randn(6, 16, dtype=torch.float64), sigma_y=0.05)
>>> post = prior.posterior(op, op.measure(prior.sample(2)))   # .weights (2, 3), .mean (2, 16), ...
>>> denoiser = prior.denoiser(VPLinear())

A covariance is given in one of four forms: a full (D, D) matrix, a diagonal (D,), a scalar (a float or
0-dim tensor, ``s I``), or :class:`LowRank` ``(U, floor)`` for ``U U^T + floor I``. A mixture takes the
same forms with a leading component axis K (a (K,) tensor is one scalar per component). Everything is
float64 and dense: ``D`` up to :data:`~posteria.lab.gaussian.MAX_DIM`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from posteria.data.lowrank import random_subspace_mixture
from posteria.denoisers.gaussian import GaussianDenoiser
from posteria.denoisers.mixture import GaussianMixtureDenoiser
from posteria.errors import PosteriaError, check_finite, check_positive
from posteria.lab.gaussian import MAX_DIM, GaussianPosterior, gaussian_posterior, psd_factor
from posteria.lab.mixture import GaussianMixturePosterior, draw_mixture, gaussian_mixture_posterior
from posteria.noise import Schedule
from posteria.operators.base import LinearOperator
from posteria.operators.noise_models import GaussianNoise

#: relative tolerance for symmetry and for negative round-off eigenvalues of a "PSD" covariance
PSD_RTOL = 1e-6


@dataclass(frozen=True)
class LowRank:
    """The covariance ``factor factor^T + floor I``.

    Attributes:
        factor: (D, r) for a :class:`GaussianPrior`, (K, D, r) for a :class:`GaussianMixturePrior`.
        floor: a variance >= 0: a number, or (K,) for a mixture. With ``floor = 0`` the prior lives on
            the range of ``factor`` and its samples lie exactly there.
    """

    factor: torch.Tensor
    floor: float | torch.Tensor = 0.0


Covariance = torch.Tensor | float | LowRank


@dataclass(frozen=True)
class _Covariances:
    """K covariances in the form they were given (K = 1 for a Gaussian prior), all float64.

    ``dense`` (K, D, D) always; ``variances`` (K, D) for the diagonal and scalar forms; ``factors``
    (K, D, r) and ``floors`` (K,) for the low-rank form (``floors`` is 0 otherwise).
    """

    form: str
    dense: torch.Tensor
    variances: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    floors: torch.Tensor | None = None

    def roots(self) -> list[torch.Tensor]:
        """Per component ``R_k`` (D, r_k) with ``R_k R_k^T = Sigma_k``; a factor stays a factor, so
        low-rank draws lie exactly in their subspace when the floor is 0."""
        if self.factors is not None:
            eye = torch.eye(self.factors.shape[1], dtype=torch.float64)
            return [
                U if f == 0 else torch.cat([U, f.sqrt() * eye], 1)
                for U, f in zip(self.factors, self.floors, strict=True)
            ]
        if self.variances is not None:
            return [torch.diag(v.sqrt()) for v in self.variances]
        return [psd_factor(C) for C in self.dense]


def _float64(name: str, value: object) -> torch.Tensor:
    """``value`` as a finite real float64 tensor, or one PosteriaError line naming ``name``."""
    try:  # Python numbers straight to float64: through float32 they would lose digits
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise PosteriaError(f"{name} must be a real tensor or number, got {type(value).__name__}") from err
    if t.is_complex() or t.dtype == torch.bool:
        raise PosteriaError(f"{name} must be real, got {t.dtype}")
    return check_finite(name, t.to(torch.float64))


def _nonnegative(name: str, v: torch.Tensor) -> torch.Tensor:
    if bool((v < 0).any()):
        raise PosteriaError(f"{name} must be variances >= 0, got a minimum of {float(v.min()):g}")
    return v


def _forms(batch: tuple[int, ...], D: int) -> str:
    """The accepted covariance shapes, for error messages."""
    if not batch:
        return f"(D, D) = ({D}, {D}), (D,) = ({D},), a scalar or a LowRank"
    K = batch[0]
    return f"(K, D, D) = ({K}, {D}, {D}), (K, D) = ({K}, {D}), (K,), a scalar or a LowRank"


def _check_psd(name: str, C: torch.Tensor, batched: bool) -> torch.Tensor:
    """Raise one line unless every C[k] (K, D, D) is symmetric PSD up to :data:`PSD_RTOL`; symmetrise."""
    scale = C.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(torch.float64).tiny)
    lam = torch.linalg.eigvalsh((C + C.mT) / 2)
    asym = (C - C.mT).abs().amax(dim=(-2, -1)) > PSD_RTOL * scale
    negative = lam[:, 0] < -PSD_RTOL * scale
    for k in range(C.shape[0]):
        label = f"{name}[{k}]" if batched else name
        if bool(asym[k]):
            raise PosteriaError(
                f"{label} must be symmetric, got max |C - C^T| = {float((C[k] - C[k].T).abs().max()):.3g}"
            )
        if bool(negative[k]):
            raise PosteriaError(
                f"{label} must be positive semi-definite, got an eigenvalue {float(lam[k, 0]):.3g}"
            )
    return (C + C.mT) / 2


def _parse_low_rank(name: str, cov: LowRank, batch: tuple[int, ...], D: int) -> _Covariances:
    """``U U^T + floor I`` with ``U`` of shape batch + (D, r) and ``floor`` a number or batch-shaped."""
    U, f = _float64(f"{name}.factor", cov.factor), _float64(f"{name}.floor", cov.floor)
    if U.dim() != len(batch) + 2 or tuple(U.shape[:-1]) != batch + (D,) or U.shape[-1] < 1:
        want = ", ".join(map(str, batch + (D,)))
        raise PosteriaError(f"{name}.factor must have shape ({want}, r), got {tuple(U.shape)}")
    if f.dim() != 0 and tuple(f.shape) != batch:
        raise PosteriaError(f"{name}.floor must be a number or have shape {batch}, got {tuple(f.shape)}")
    K = batch[0] if batch else 1
    U, f = U.reshape(K, D, -1), _nonnegative(f"{name}.floor", f.expand(batch).reshape(K))
    dense = U @ U.mT + f[:, None, None] * torch.eye(D, dtype=torch.float64)
    return _Covariances("low_rank", dense, factors=U, floors=f)


def _parse_covariances(name: str, cov: Covariance, batch: tuple[int, ...], D: int) -> _Covariances:
    """Recognise the form of ``cov`` by its shape (``batch`` is () for one Gaussian, (K,) for a mixture)."""
    if isinstance(cov, LowRank):
        return _parse_low_rank(name, cov, batch, D)
    c, K = _float64(name, cov), (batch[0] if batch else 1)
    if c.dim() == 0 or tuple(c.shape) == batch:  # s I, shared or one per component
        v = _nonnegative(name, c.expand(batch).reshape(K, 1).expand(K, D).clone())
        return _Covariances("scalar", torch.diag_embed(v), variances=v)
    if tuple(c.shape) == batch + (D,):
        v = _nonnegative(name, c.reshape(K, D))
        return _Covariances("diagonal", torch.diag_embed(v), variances=v)
    if tuple(c.shape) == batch + (D, D):
        return _Covariances("full", _check_psd(name, c.reshape(K, D, D), bool(batch)))
    raise PosteriaError(f"{name} must be {_forms(batch, D)}; got shape {tuple(c.shape)}")


def _event_shape(event_shape: tuple[int, ...] | None, default: tuple[int, ...], D: int) -> tuple[int, ...]:
    """``event_shape`` (default ``default``) checked to hold D entries, 1 <= D <= MAX_DIM."""
    shape = tuple(int(n) for n in (default if event_shape is None else event_shape))
    if not shape or math.prod(shape) != D:
        raise PosteriaError(f"event_shape {shape} must have prod(event_shape) = D = {D} entries")
    if not 1 <= D <= MAX_DIM:
        raise PosteriaError(f"the dense laboratory needs 1 <= D <= {MAX_DIM}, got D = {D}")
    return shape


def _check_operator(operator: object, event_shape: tuple[int, ...]) -> None:
    """Raise one line unless ``operator`` is linear, Gaussian-noised and acts on ``event_shape``."""
    if not isinstance(operator, LinearOperator) or not operator.linear:
        kind = type(operator).__name__
        raise PosteriaError(f"operator must be a linear operator (y = A x + w), got {kind}")
    if not isinstance(operator.noise, GaussianNoise):
        raise PosteriaError(f"operator must have Gaussian noise, got {operator.noise!r}")
    if tuple(operator.event_shape) != event_shape:
        raise PosteriaError(
            f"operator acts on signals of shape {operator.event_shape}, "
            f"but the prior's event_shape is {event_shape}"
        )


class GaussianPrior:
    """``x ~ N(mean, Sigma)``: exact samples, denoiser and posterior (seed chapter, Example 7.4).

    Attributes:
        mean: (D,) float64.
        cov: (D, D) float64, the dense covariance, whatever form it was given in.
        form: ``"full"``, ``"diagonal"``, ``"scalar"`` or ``"low_rank"``.
        event_shape: the shape of one signal (default ``mean.shape``).
    """

    def __init__(
        self, mean: torch.Tensor, cov: Covariance, event_shape: tuple[int, ...] | None = None
    ) -> None:
        mean = _float64("mean", mean)
        self.event_shape = _event_shape(event_shape, tuple(mean.shape), mean.numel())
        self.mean = mean.reshape(-1)
        self._covs = _parse_covariances("cov", cov, (), self.mean.numel())
        self.form = self._covs.form
        self.cov = self._covs.dense[0]

    @property
    def dim(self) -> int:
        """D, the number of entries of a signal."""
        return self.mean.numel()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws ``mean + R z``, ``R R^T = Sigma``: (n, *event_shape), float64."""
        x = draw_mixture(self.mean[None, None], self._covs.roots(), torch.ones(1, 1), n, generator)[0]
        return x.reshape(n, *self.event_shape)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; mean, Sigma)`` for x (n, *event_shape) -> (n,); needs a positive-definite Sigma."""
        return GaussianPosterior(self.mean[None], self.cov, self.event_shape).log_prob(x[None])[0]

    def denoiser(self, schedule: Schedule) -> GaussianDenoiser:
        """The exact ``E[x | x_t]`` under ``schedule``: a float64 :class:`GaussianDenoiser`, built from the
        covariance in its given form (full: eigen form; diagonal and scalar: diagonal; low rank: SVD)."""
        c, kw = self._covs, {"event_shape": self.event_shape}
        if c.form == "full":
            return GaussianDenoiser.full(schedule, self.mean, c.dense[0], **kw)
        if c.form == "low_rank":
            return GaussianDenoiser.low_rank(schedule, self.mean, c.factors[0], float(c.floors[0]), **kw)
        return GaussianDenoiser.diagonal(schedule, self.mean, c.variances[0], **kw)

    def posterior(self, operator: LinearOperator, y: torch.Tensor) -> GaussianPosterior:
        """The exact posterior ``N(mu_i, C)`` of each measurement ``y_i`` (B, *measurement_shape), from
        :func:`~posteria.lab.gaussian.gaussian_posterior` (Bishop, PRML, 2.3.3). ``sigma_y = 0`` conditions
        exactly on ``A x = y`` (a pseudo-inverse where ``A Sigma A^T`` is singular)."""
        _check_operator(operator, self.event_shape)
        return gaussian_posterior(self.mean, self.cov, operator, y)

    def __repr__(self) -> str:
        return f"GaussianPrior(D={self.dim}, form={self.form!r}, event_shape={self.event_shape})"


class GaussianMixturePrior:
    """``x ~ sum_k w_k N(mu_k, Sigma_k)``: exact samples, denoiser and posterior (seed chapter, Example 7.5).

    Args:
        means: (K, *event) or (K, D) with ``event_shape`` given.
        covs: (K, D, D), (K, D) diagonals, (K,) or one scalar ``s_k I``, or a :class:`LowRank` with a
            factor (K, D, r).
        weights: (K,) positive (normalised here); uniform when None.
        event_shape: the shape of one signal (default ``means.shape[1:]``).

    Attributes:
        means (K, D), covs (K, D, D), weights (K,), form, event_shape; ``mean`` (D,) and ``cov`` (D, D)
        are the moments of the whole mixture.
    """

    def __init__(
        self,
        means: torch.Tensor,
        covs: Covariance,
        weights: torch.Tensor | None = None,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        means = _float64("means", means)
        if means.dim() < 2 or means.shape[0] < 1:
            raise PosteriaError(f"means must have shape (K, *event) with K >= 1, got {tuple(means.shape)}")
        K = means.shape[0]
        self.event_shape = _event_shape(event_shape, tuple(means.shape[1:]), means[0].numel())
        self.means = means.reshape(K, -1)
        self._covs = _parse_covariances("covs", covs, (K,), self.means.shape[1])
        self.form, self.covs = self._covs.form, self._covs.dense
        self.weights = self._check_weights(weights, K)

    @staticmethod
    def _check_weights(weights: torch.Tensor | None, K: int) -> torch.Tensor:
        """Positive finite (K,) weights, normalised; uniform when None."""
        if weights is None:
            return torch.full((K,), 1.0 / K, dtype=torch.float64)
        w = _float64("weights", weights)
        if tuple(w.shape) != (K,) or not bool((w > 0).all()):
            raise PosteriaError(f"weights must be {K} positive numbers (one per component), got {w.tolist()}")
        return w / w.sum()

    @classmethod
    def subspaces(
        cls,
        D: int,
        K: int,
        P: int,
        generator: torch.Generator | None = None,
        floor: float = 0.0,
        scale: float = 1.0,
        weights: torch.Tensor | None = None,
        event_shape: tuple[int, ...] | None = None,
    ) -> GaussianMixturePrior:
        """The seed chapter's union of K random P-dim subspaces of R^D (Examples 3.3 and 7.5).

        ``x = scale U_k z + sqrt(floor) e``, ``k ~ w``, ``z ~ N(0, I_P)``, ``e ~ N(0, I_D)``, with ``U_k``
        (D, P) Haar-random orthonormal bases from :func:`posteria.data.random_subspace_mixture`: component
        ``k`` is ``N(0, scale^2 U_k U_k^T + floor I)``. With ``floor = 0`` samples lie exactly on the union.
        The floor makes each component non-singular, so ``sigma_y = 0`` is then exact conditioning on
        ``A x = y`` (for ``A`` of full row rank); with ``floor = 0`` use ``sigma_y > 0``.
        """
        check_positive("scale", float(scale))
        check_positive("floor", float(floor), allow_zero=True)
        bases = random_subspace_mixture(D, P, K, generator).factors  # (K, D, P) orthonormal
        means = torch.zeros(K, D, dtype=torch.float64)
        return cls(means, LowRank(scale * bases, floor), weights, event_shape or (D,))

    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    @property
    def factors(self) -> torch.Tensor | None:
        """(K, D, r) low-rank factors when the covariances were given as a :class:`LowRank`, else None."""
        return self._covs.factors

    def _law(self) -> GaussianMixturePosterior:
        """The prior as a one-measurement mixture law: its moments and density come from there."""
        return GaussianMixturePosterior(
            self.weights.log()[None], self.means[None], self.covs, self.event_shape
        )

    @property
    def mean(self) -> torch.Tensor:
        """``E[x] = sum_k w_k mu_k``, (D,)."""
        return self._law().mean[0]

    @property
    def cov(self) -> torch.Tensor:
        """``Cov[x] = sum_k w_k (Sigma_k + (mu_k - m)(mu_k - m)^T)``, (D, D)."""
        return self._law().covariance()[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws, labels first: (n, *event_shape), float64; low rank: exactly in the subspaces."""
        x = draw_mixture(self.means[None], self._covs.roots(), self.weights[None], n, generator)[0]
        return x.reshape(n, *self.event_shape)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log sum_k w_k N(x; mu_k, Sigma_k)``: x (n, *event_shape) -> (n,); full-rank components only."""
        return self._law().log_prob(x[None])[0]

    def denoiser(self, schedule: Schedule) -> GaussianMixtureDenoiser:
        """The exact ``E[x | x_t]`` under ``schedule``: a float64 :class:`GaussianMixtureDenoiser`, built
        from the covariances in their given form (full, diagonal, or low rank with its floor)."""
        c = self._covs
        means = self.means.reshape(self.n_components, *self.event_shape)
        kw = {"weights": self.weights, "event_shape": self.event_shape}
        if c.form == "full":
            return GaussianMixtureDenoiser.full(schedule, means, c.dense, **kw)
        if c.form == "low_rank":
            return GaussianMixtureDenoiser.low_rank(schedule, means, c.factors, floor=c.floors, **kw)
        return GaussianMixtureDenoiser.diagonal(schedule, means, c.variances, **kw)

    def posterior(self, operator: LinearOperator, y: torch.Tensor) -> GaussianMixturePosterior:
        """The exact posterior mixture of each measurement ``y_i`` (B, *measurement_shape), from
        :func:`~posteria.lab.mixture.gaussian_mixture_posterior` (weights in log space, Joseph-form
        components); see there for what ``sigma_y = 0`` needs."""
        _check_operator(operator, self.event_shape)
        return gaussian_mixture_posterior(self.means, self.covs, self.weights, operator, y)

    def __repr__(self) -> str:
        K, D = self.means.shape
        return f"GaussianMixturePrior(K={K}, D={D}, form={self.form!r}, event_shape={self.event_shape})"


__all__ = ["Covariance", "GaussianMixturePrior", "GaussianPrior", "LowRank"]
