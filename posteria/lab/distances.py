"""How far a sampler's samples are from an exact posterior: distances, moment errors and calibration.

Everything is batched over measurements: samples ``x`` are (B, n, D) (flatten the event first), the exact
posterior of measurement ``i`` is given by its mean (B, D), covariance (D, D) or (B, D, D), exact samples
(B, n', D) or its marginal CDF, and every score comes back per measurement, (B,), computed in float64.

* :func:`gaussian_w2`: 2-Wasserstein distance between the Gaussian fitted to the samples and N(mean, cov).
* :func:`sliced_wasserstein`: sliced 2-Wasserstein distance to exact samples (POT).
* :func:`mean_error`, :func:`cov_error`: errors of the first two moments.
* :func:`coverage`: exact posterior mass of the samples' central credible intervals.
* :func:`monte_carlo_floor`: what the distances give for exact samples, i.e. the noise floor of n samples.
* :func:`summary`: all of them averaged over the batch, for tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ot
import torch

from posteria.errors import PosteriaError, check_finite

#: eigenvalues below this fraction of the largest one span the null space of a covariance
RANK_RTOL = 1e-10
#: torch.quantile refuses an input with more elements than this
QUANTILE_MAX_NUMEL = 2**24

#: the exact marginal posterior CDF: values (B, k, D) -> probabilities (B, k, D)
MarginalCDF = Callable[[torch.Tensor], torch.Tensor]


def gaussian_w2(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """2-Wasserstein distance between ``N(xbar, S)``, the Gaussian with the moments of ``x``, and
    ``N(mean, cov)``:

    ``W2^2 = |xbar - mean|^2 + tr(S + C - 2 (C^1/2 S C^1/2)^1/2)``, ``C = cov``

    (Dowson & Landau 1982; Givens & Shortt 1984). ``S`` is the unbiased sample covariance (divisor
    ``n - 1``). Square roots come from symmetric eigendecompositions with negative round-off eigenvalues
    clamped, so singular covariances (noiseless measurements) are fine.

    Args:
        x: samples (B, n, D), n >= 2.
        mean: exact posterior means (B, D).
        cov: exact posterior covariance (D, D), or one per measurement (B, D, D).

    Returns:
        W2 (B,), float64.
    """
    x = _samples("x", x)
    B, _, D = x.shape
    m2, S2 = _mean("mean", mean, B, D), _cov("cov", cov, B, D)
    m1, S1 = _moments(x)
    root = _sqrtm_psd(S2)
    # tr (C^1/2 S C^1/2)^1/2 is the sum of the square roots of that matrix's eigenvalues
    cross = torch.linalg.eigvalsh(_sym(root @ S1 @ root)).clamp_min(0).sqrt().sum(-1)
    w2sq = (m1 - m2).square().sum(-1) + _trace(S1) + _trace(S2) - 2 * cross
    return w2sq.clamp_min(0).sqrt()  # round-off can make an exact 0 slightly negative


def sliced_wasserstein(
    x: torch.Tensor, reference: torch.Tensor, projections: int = 256, seed: int = 0
) -> torch.Tensor:
    """Sliced 2-Wasserstein distance between the sample sets ``x`` and ``reference``, per measurement:

    ``SW2(mu, nu)^2 = E_theta W2^2(theta # mu, theta # nu)``, ``theta`` uniform on the unit sphere,

    estimated with ``projections`` random directions by ``ot.sliced_wasserstein_distance`` (POT; Bonneel
    et al. 2015). The directions come from ``seed``, so they are the same for every measurement and every
    call. ``reference`` should be exact posterior samples: then even an exact sampler scores above 0, and
    the distance between two independent exact sets of the same sizes (:func:`monte_carlo_floor`) is the
    Monte-Carlo floor to compare a sampler's score with.

    Args:
        x: samples (B, n, D), n >= 2.
        reference: exact samples (B, n', D), n' >= 2 (n' may differ from n).
        projections: number of random directions.
        seed: seed of the directions.

    Returns:
        SW2 (B,), float64.
    """
    x, reference = _samples("x", x), _samples("reference", reference)
    if reference.shape[0] != x.shape[0] or reference.shape[2] != x.shape[2]:
        raise PosteriaError(f"reference must be ({x.shape[0]}, n', {x.shape[2]}), got {_shape(reference)}")
    if projections < 1:
        raise PosteriaError(f"projections must be >= 1, got {projections}")
    a, b = x.cpu().numpy(), reference.cpu().numpy()
    # POT reseeds its own RandomState from ``seed`` on every call: same directions for every measurement
    sw = [
        ot.sliced_wasserstein_distance(a[i], b[i], n_projections=projections, p=2, seed=seed)
        for i in range(len(a))
    ]
    return torch.tensor([float(s) for s in sw], dtype=torch.float64)


def monte_carlo_floor(
    sample_exact: Callable[[int, torch.Generator], torch.Tensor],
    n: int,
    mean: torch.Tensor | None = None,
    cov: torch.Tensor | None = None,
    n_reference: int | None = None,
    repeats: int = 4,
    projections: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """The scores of an exact sampler with ``n`` samples: no sampler can be told apart from exact below them.

    Each repeat draws two independent exact sets, ``n`` and ``n_reference`` (default ``n``) samples, from
    ``sample_exact(count, generator)`` (which returns (B, count, ...), e.g. ``GaussianPosterior.sample``),
    and scores the first against the second (``sw``) and, when ``mean`` and ``cov`` are given, against the
    exact moments (``w2``, ``mean_err`` whitened, ``cov_err``).

    Returns:
        each score averaged over the measurements and the ``repeats``.
    """
    if repeats < 1:
        raise PosteriaError(f"repeats must be >= 1, got {repeats}")
    scores: dict[str, list[float]] = {}
    for r in range(repeats):
        g = torch.Generator().manual_seed(seed + r)
        a, b = _flat(sample_exact(n, g)), _flat(sample_exact(n_reference or n, g))
        drawn = {"sw": sliced_wasserstein(a, b, projections, seed=seed + r)}
        if mean is not None and cov is not None:
            drawn |= {"w2": gaussian_w2(a, mean, cov), "mean_err": mean_error(a, mean, cov)}
            drawn["cov_err"] = cov_error(a, cov)
        for key, value in drawn.items():
            scores.setdefault(key, []).append(float(value.mean()))
    return {key: sum(values) / len(values) for key, values in scores.items()}


def mean_error(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor | None = None) -> torch.Tensor:
    """Error of the sample mean ``xbar``: ``|xbar - mean|``, or with ``cov`` in posterior standard deviations,
    ``|L^+ (xbar - mean)| = sqrt(sum_k (q_k . d)^2 / lambda_k)`` for ``L L^T = cov = Q diag(lambda) Q^T``.

    The pseudo-inverse keeps singular covariances finite: eigenvalues below ``RANK_RTOL`` times the largest
    count as 0 and errors along their directions are ignored. Exact samples give ``E err^2 = rank / n``.

    Args:
        x: samples (B, n, D); mean: (B, D); cov: (D, D) or (B, D, D).

    Returns:
        (B,), float64.
    """
    x = _samples("x", x)
    B, _, D = x.shape
    d = x.mean(1) - _mean("mean", mean, B, D)
    if cov is None:
        return d.norm(dim=-1)
    lam, Q = torch.linalg.eigh(_cov("cov", cov, B, D))
    keep = lam > RANK_RTOL * lam.amax(-1, keepdim=True)
    along = (d[:, None, :] @ Q)[:, 0]  # d in the eigenbasis: q_k . d, (B, D)
    return torch.where(keep, along.square() / lam.where(keep, 1.0), 0.0).sum(-1).sqrt()


def cov_error(x: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Relative Frobenius error of the unbiased sample covariance ``S``: ``|S - cov|_F / |cov|_F``.

    Args:
        x: samples (B, n, D); cov: (D, D) or (B, D, D), not zero.

    Returns:
        (B,), float64.
    """
    x = _samples("x", x)
    B, _, D = x.shape
    C = _cov("cov", cov, B, D)
    scale = torch.linalg.matrix_norm(C)
    if not bool((scale > 0).all()):
        raise PosteriaError("cov must be nonzero for a relative error")
    return torch.linalg.matrix_norm(_moments(x)[1] - C) / scale


def coverage(
    x: torch.Tensor, cdf: MarginalCDF, levels: Sequence[float] = (0.5, 0.9, 0.95)
) -> dict[float, torch.Tensor]:
    """Calibration of the samples' central credible intervals, per level ``q``:

    ``coverage_q = mean_j [F_j(hi_j) - F_j(lo_j)]``, ``lo_j, hi_j`` the ``(1 -+ q) / 2`` sample quantiles
    of coordinate ``j``,

    the exact posterior mass of the sampler's interval, averaged over the coordinates. An exact sampler
    gives ``q`` up to Monte-Carlo error (about ``sqrt(q (1 - q) / (n D))`` for independent coordinates); a
    collapsed one (too little variance) gives less, an over-dispersed one more. E.g. samples with
    ``c`` times the exact standard deviation give ``2 Phi(c z_q) - 1`` for a Gaussian posterior.

    Args:
        x: samples (B, n, D), n >= 2.
        cdf: the exact marginal posterior CDFs ``F``, values (B, k, D) -> probabilities (B, k, D), e.g.
            :meth:`~posteria.lab.gaussian.GaussianPosterior.marginal_cdf`.
        levels: credible levels in (0, 1).

    Returns:
        {q: coverage (B,) float64} for each level.
    """
    x = _samples("x", x)
    qs = [float(q) for q in levels]
    if not qs or not all(0 < q < 1 for q in qs):
        raise PosteriaError(f"levels must be numbers in (0, 1), got {list(levels)}")
    probs = torch.tensor([(1 - q) / 2 for q in qs] + [(1 + q) / 2 for q in qs], dtype=torch.float64)
    ends = _quantiles(x, probs)  # (B, 2k, D): the k lower ends, then the k upper ends
    F = cdf(ends)
    if not isinstance(F, torch.Tensor) or F.shape != ends.shape:
        raise PosteriaError(f"cdf must map (B, k, D) values to (B, k, D) probabilities, got {_shape(F)}")
    F = check_finite("cdf(values)", F.to(torch.float64))
    mass = (F[:, len(qs) :] - F[:, : len(qs)]).mean(-1)  # (B, k)
    return {q: mass[:, i] for i, q in enumerate(qs)}


def summary(
    x: torch.Tensor,
    mean: torch.Tensor,
    cov: torch.Tensor,
    reference: torch.Tensor,
    cdf: MarginalCDF,
    projections: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Every score averaged over the batch, for tables: ``sw`` (to ``reference``), ``w2``, ``mean_err``
    (whitened), ``cov_err`` and the coverages ``cov50``, ``cov90``, ``cov95``. Arguments as in the
    functions above; compare ``sw``, ``w2``, ``mean_err`` and ``cov_err`` with :func:`monte_carlo_floor`."""
    scores = {
        "sw": sliced_wasserstein(x, reference, projections, seed),
        "w2": gaussian_w2(x, mean, cov),
        "mean_err": mean_error(x, mean, cov),
        "cov_err": cov_error(x, cov),
    }
    scores |= {f"cov{round(100 * q)}": c for q, c in coverage(x, cdf).items()}
    return {key: float(value.mean()) for key, value in scores.items()}


def _samples(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` as float64 after checking that it is (B, n, D) with n >= 2 and finite."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or 0 in (x.shape[0], x.shape[2]):
        raise PosteriaError(f"{name} must be a (B, n, D) tensor, got {_shape(x)}")
    if x.shape[1] < 2:
        raise PosteriaError(f"{name} needs n >= 2 samples per measurement, got n = {x.shape[1]}")
    return check_finite(name, x.detach().to(torch.float64))


def _mean(name: str, mean: torch.Tensor, B: int, D: int) -> torch.Tensor:
    """``mean`` as a finite float64 (B, D)."""
    if not isinstance(mean, torch.Tensor) or tuple(mean.shape) != (B, D):
        raise PosteriaError(f"{name} must be ({B}, {D}), got {_shape(mean)}")
    return check_finite(name, mean.detach().to(torch.float64))


def _cov(name: str, cov: torch.Tensor, B: int, D: int) -> torch.Tensor:
    """``cov`` (D, D) or (B, D, D) as a finite, symmetrised float64 (B, D, D)."""
    if not isinstance(cov, torch.Tensor) or tuple(cov.shape) not in ((D, D), (B, D, D)):
        raise PosteriaError(f"{name} must be ({D}, {D}) or ({B}, {D}, {D}), got {_shape(cov)}")
    cov = check_finite(name, cov.detach().to(torch.float64))
    return _sym(cov).expand(B, D, D)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean (B, D) and unbiased sample covariance (B, D, D) of ``x`` (B, n, D)."""
    m = x.mean(1)
    c = x - m[:, None]
    return m, _sym(c.mT @ c / (x.shape[1] - 1))


def _sqrtm_psd(S: torch.Tensor) -> torch.Tensor:
    """The symmetric PSD square root of symmetric PSD matrices (..., D, D); negative round-off clamped."""
    lam, Q = torch.linalg.eigh(S)
    return _sym((Q * lam.clamp_min(0).sqrt()[..., None, :]) @ Q.mT)


def _quantiles(x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Quantiles ``probs`` (k,) of ``x`` (B, n, D) over the samples: (B, k, D), by ``torch.quantile``
    (linear interpolation) on column chunks small enough for its input-size limit."""
    B, n, D = x.shape
    columns = x.permute(1, 0, 2).reshape(n, B * D)
    width = max(1, QUANTILE_MAX_NUMEL // n)
    q = torch.cat([torch.quantile(c, probs, dim=0) for c in columns.split(width, dim=1)], dim=1)
    return q.reshape(len(probs), B, D).permute(1, 0, 2)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, n, *event) -> (B, n, D)."""
    return x.reshape(*x.shape[:2], -1)


def _shape(x: object) -> str:
    """A tensor's shape as a tuple, or the type of anything else, for error messages."""
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def _sym(S: torch.Tensor) -> torch.Tensor:
    return (S + S.mT) / 2


def _trace(S: torch.Tensor) -> torch.Tensor:
    return S.diagonal(dim1=-2, dim2=-1).sum(-1)
