"""Low-rank matrix baselines: singular value thresholding, matrix completion and robust PCA.

Every function is a batched pure function on tensors of shape ``(..., H, W)``: the matrices are the last
two axes and the leading axes are a batch (an MNIST-like batch of images is ``(B, 1, 28, 28)``). A mask
is a 0/1 (float or bool) tensor broadcastable to ``(..., H, W)`` with 1 marking an observed entry, and
an observation ``y`` is zero-filled (0 where the mask is 0). Work happens in the dtype of ``y``.
"""

from __future__ import annotations

import math

import torch

from posteria.errors import PosteriaError, check_count, check_finite, check_positive

#: Floor of the default completion thresholds, relative to the spectral norm of ``y``: with ``sigma_y = 0``
#: the problems stay penalised, and their solutions lie within about this relative error of exact ones.
WEIGHT_FLOOR = 1e-4

#: Decay per step of the nuclear norm's weight, from ``||y||_2`` (where the solution is 0) to its target
#: (the continuation of Toh & Yun 2010, Sec. 3.3): a strong early weight keeps the iterates low rank while
#: the dominant subspace is found, which converges much faster than starting at a tiny weight.
NUCLEAR_DECAY = 0.9

#: Fraction of the log-det solver's steps spent weakening its penalty to the target. The objective is not
#: convex: a slow continuation, which lengthens with the budget, is what steers it clear of local minima.
LOGDET_CONTINUATION = 0.8

#: Default ``epsilon = T / EPSILON_RATIO`` of the log-det surrogate, ``T`` being the nuclear norm's default
#: weight: then ``log(1 + s^2 / epsilon^2)`` is nearly ``2 log(s / epsilon)``, a rank count, above ``T``.
EPSILON_RATIO = 10.0

#: Default log-det weight ``LOGDET_WEIGHT T^2``. With ``epsilon = T / 10`` its proximal map jumps at
#: ``1.66 T``: below, a singular value is divided by about 50 (times ``epsilon^2 / (epsilon^2 + weight)``),
#: nearly cut like the noise it is; above, one of size ``s`` loses only about ``T^2 / (2 s)``.
LOGDET_WEIGHT = 0.5

#: Growth of the penalty ``mu`` per robust PCA step. Lin, Chen & Ma use 1.5 with every entry observed;
#: with missing entries that stops short of the optimum (relative errors up to 4e-2 measured at 80%
#: observed, 50 x 50, rank 2), while 1.1 reaches it, in about as many steps when all are observed.
RPCA_GROWTH = 1.1


# ----------------------------------------------------------------------------------------------------
# Input checks: each raises PosteriaError naming the argument.


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to exactly ``target`` (torch.broadcast_shapes's first call is 0.5 s)."""
    pairs = zip(reversed(shape), reversed(target), strict=False)
    return len(shape) <= len(target) and all(n in (1, m) for n, m in pairs)


def _check_matrix(name: str, x: torch.Tensor) -> torch.Tensor:
    """Require a finite floating-point tensor of shape ``(..., H, W)``."""
    if not isinstance(x, torch.Tensor):
        raise PosteriaError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise PosteriaError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 2:
        raise PosteriaError(f"{name} must have shape (..., H, W), got {tuple(x.shape)}")
    return check_finite(name, x)


def _check_mask(mask: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Require a 0/1 tensor broadcastable to ``y.shape``; return it expanded, in the dtype of ``y``."""
    if not isinstance(mask, torch.Tensor):
        raise PosteriaError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if not _broadcasts_to(mask.shape, y.shape):
        raise PosteriaError(
            f"mask must be broadcastable to y's shape {tuple(y.shape)}, got {tuple(mask.shape)}"
        )
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise PosteriaError("mask must hold only 0 and 1")
    return mask.to(device=y.device, dtype=y.dtype).expand(y.shape)


def _check_number(name: str, value: float, allow_zero: bool) -> float:
    """Require a finite real number > 0 (>= 0 when ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        bound = ">= 0" if allow_zero else "> 0"
        raise PosteriaError(f"{name} must be a finite number {bound}, got {type(value).__name__}")
    return check_positive(name, float(value), allow_zero=allow_zero)


def _check_weight(
    name: str, value: float | torch.Tensor, like: torch.Tensor, allow_zero: bool = True
) -> torch.Tensor:
    """Require a finite number >= 0 (> 0 unless ``allow_zero``), or a tensor of them broadcastable to the
    batch shape ``like.shape[:-2]``; return it as ``(..., 1, 1)`` in the dtype of ``like``."""
    batch = like.shape[:-2]
    bound = ">= 0" if allow_zero else "> 0"
    if not isinstance(value, torch.Tensor):
        _check_number(name, value, allow_zero)
        return torch.full((*batch, 1, 1), float(value), dtype=like.dtype, device=like.device)
    if not _broadcasts_to(value.shape, batch):
        raise PosteriaError(
            f"{name} must be a number or a tensor broadcastable to the batch shape {tuple(batch)}, "
            f"got shape {tuple(value.shape)}"
        )
    value = value.to(device=like.device, dtype=like.dtype)
    if not bool((torch.isfinite(value) & ((value >= 0) if allow_zero else (value > 0))).all()):
        raise PosteriaError(f"{name} must hold finite numbers {bound}")
    return value.expand(batch)[..., None, None]


def _completion_inputs(
    y: torch.Tensor, mask: torch.Tensor, sigma_y: float, iterations: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the arguments common to the completions; return ``y`` zeroed off the mask, and the mask."""
    y = _check_matrix("y", y)
    mask = _check_mask(mask, y)
    _check_number("sigma_y", sigma_y, allow_zero=True)
    check_count("iterations", iterations)
    return y * mask, mask


# ----------------------------------------------------------------------------------------------------
# Shared pieces.


def _spectral_norm(x: torch.Tensor) -> torch.Tensor:
    """Largest singular value of each matrix, as ``(..., 1, 1)``."""
    return torch.linalg.matrix_norm(x, ord=2)[..., None, None]


def _noise_threshold(y: torch.Tensor, mask: torch.Tensor, sigma_y: float) -> torch.Tensor:
    """``T = sigma_y sqrt(p) (sqrt(H) + sqrt(W))``, floored at ``WEIGHT_FLOOR ||y||_2``: ``(..., 1, 1)``.

    ``p`` is each matrix's observed fraction. ``T`` is about the spectral norm of the observed noise
    ``mask * Z`` for i.i.d. ``Z ~ N(0, sigma_y^2)``: singular values below it cannot be told from noise
    (Candes & Plan 2010, Sec. III.B, whose nuclear-norm weight it is). A last tiny floor keeps ``T > 0``
    for an all-zero ``y``.
    """
    H, W = y.shape[-2:]
    fraction = mask.mean(dim=(-2, -1), keepdim=True)
    noise = sigma_y * fraction.sqrt() * (math.sqrt(H) + math.sqrt(W))
    floor = (WEIGHT_FLOOR * _spectral_norm(y)).clamp_min(torch.finfo(y.dtype).tiny ** 0.25)
    return torch.maximum(noise, floor)


def _momentum(
    x: torch.Tensor, x_next: torch.Tensor, z: torch.Tensor, t: torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FISTA extrapolation (Beck & Teboulle 2009) with adaptive restart (O'Donoghue & Candes 2015).

    ``z`` is the point the step ``x -> x_next`` was taken from and ``t`` the momentum counter,
    ``(..., 1, 1)``. A matrix whose step opposes its momentum (``<z - x_next, x_next - x> > 0``: the
    momentum points uphill) restarts at ``t = 1``, as does one where ``keep`` is False. Returns the next
    extrapolated point and counter.
    """
    restart = ((z - x_next) * (x_next - x)).sum(dim=(-2, -1), keepdim=True) > 0
    if keep is not None:
        restart = restart | ~keep
    t = torch.where(restart, 1, t)
    t_next = (1 + torch.sqrt(1 + 4 * t**2)) / 2
    return x_next + ((t - 1) / t_next) * (x_next - x), t_next


# ----------------------------------------------------------------------------------------------------
# Proximal maps.


def _svt(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Singular value thresholding with ``tau`` of shape ``(..., 1)``, without input checks."""
    U, s, Vh = torch.linalg.svd(x, full_matrices=False)
    return (U * (s - tau).clamp_min(0).unsqueeze(-2)) @ Vh


def singular_value_threshold(x: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """The proximal operator of ``tau ||X||_*``: ``U diag(max(s - tau, 0)) V^T`` for ``X = U diag(s) V^T``.

    It is ``argmin_Z 0.5 ||Z - X||_F^2 + tau ||Z||_*`` (Cai, Candes & Shen 2010, Theorem 2.1).

    Args:
        x: ``(..., H, W)`` matrices.
        tau: threshold >= 0, a number or a tensor broadcastable to the batch shape ``x.shape[:-2]``
            (one threshold per matrix: shape ``(B, 1)`` for ``x`` of shape ``(B, 1, H, W)``).

    Returns:
        ``(..., H, W)``, in the dtype of ``x``.
    """
    x = _check_matrix("x", x)
    return _svt(x, _check_weight("tau", tau, x)[..., 0])


def _logdet_penalty(s: torch.Tensor, weight: torch.Tensor, epsilon: torch.Tensor) -> torch.Tensor:
    """``weight * 0.5 * sum_i log(1 + s_i^2 / epsilon^2)`` over the last axis (the singular values)."""
    return 0.5 * weight[..., 0] * torch.log1p((s / epsilon) ** 2).sum(-1)


def _logdet_shrink(sigma: torch.Tensor, weight: torch.Tensor, epsilon: torch.Tensor) -> torch.Tensor:
    """The proximal map of the log-det penalty, value by value: ``argmin_{s >= 0} 0.5 (s - sigma)^2 +
    0.5 weight log(1 + s^2 / epsilon^2)``.

    The penalty is not convex, so the stationarity condition ``(s - sigma)(epsilon^2 + s^2) + weight s = 0``
    is a cubic with up to three roots in ``[0, sigma]``: solve it, keep the root of least objective. In
    units of ``sigma`` (``s = u sigma``) the cubic is ``u^3 - u^2 + a u - b`` with ``a = (epsilon^2 +
    weight) / sigma^2`` and ``b = epsilon^2 / sigma^2``, whose roots are its companion matrix's eigenvalues.
    A proximal map is nondecreasing, so applied to the singular values it gives the proximal map of the
    spectral penalty (Lu et al. 2015, "Generalized singular value thresholding").

    Args:
        sigma: ``(..., k)`` values >= 0; weight, epsilon: ``(..., 1)``, > 0.
    """
    positive = sigma > 0
    scale = torch.where(positive, sigma, 1)  # sigma = 0 maps to 0; avoid dividing by it
    b = (epsilon / scale) ** 2
    w = weight / scale**2
    one, zero = torch.ones_like(b), torch.zeros_like(b)
    rows = [torch.stack([one, -(b + w), b], -1), torch.stack([one, zero, zero], -1)]
    companion = torch.stack([*rows, torch.stack([zero, one, zero], -1)], -2)
    # The real parts of complex roots are extra candidates: harmless, as the objective picks among them.
    u = torch.linalg.eigvals(companion).real.clamp(0, 1)
    objective = 0.5 * (u - 1) ** 2 + 0.5 * w[..., None] * torch.log1p(u**2 / b[..., None])
    best = u.gather(-1, objective.argmin(-1, keepdim=True)).squeeze(-1)
    return torch.where(positive, best * scale, 0)


# ----------------------------------------------------------------------------------------------------
# Matrix completion.


def nuclear_norm_completion(
    y: torch.Tensor,
    mask: torch.Tensor,
    sigma_y: float,
    weight: float | torch.Tensor | None = None,
    iterations: int = 500,
) -> torch.Tensor:
    """Matrix completion by nuclear-norm regularised least squares, with accelerated proximal gradient.

    Minimises ``0.5 ||mask * (X - y)||_F^2 + weight ||X||_*``. The data term's gradient ``mask * (X - y)``
    is 1-Lipschitz, so the step size is 1 and a step is ``X <- SVT(Z - mask * (Z - y), weight)`` from an
    extrapolated point ``Z`` (FISTA momentum with adaptive restart). The weight starts at ``||y||_2``,
    where the solution is 0, and decays by ``NUCLEAR_DECAY`` per step to its target: the APG algorithm
    with continuation of Toh & Yun (2010).

    Default ``weight = T = max(sigma_y sqrt(p) (sqrt(H) + sqrt(W)), 1e-4 ||y||_2)``, ``p`` the observed
    fraction. The first term is about the spectral norm of the observed noise, Candes & Plan's choice
    (2010, "Matrix completion with noise"): the noise's singular values fall below the threshold. The
    floor makes ``sigma_y = 0`` a nearly exact completion: as the weight goes to 0 the solution tends to the
    minimum nuclear norm completion, which singular value thresholding (Cai, Candes & Shen 2010) finds.

    Args:
        y: ``(..., H, W)`` zero-filled observations (entries off the mask are ignored).
        mask: 0/1 tensor broadcastable to ``y``; 1 = observed.
        sigma_y: standard deviation of the observation noise, >= 0.
        weight: the nuclear norm's weight >= 0, a number or a tensor broadcastable to the batch shape.
        iterations: proximal gradient steps (one SVD each).

    Returns:
        ``(..., H, W)``, the completed matrices in the dtype of ``y``.
    """
    y, mask = _completion_inputs(y, mask, sigma_y, iterations)
    target = _noise_threshold(y, mask, sigma_y) if weight is None else _check_weight("weight", weight, y)
    start = _spectral_norm(y)
    x = z = torch.zeros_like(y)
    t = torch.ones_like(target)
    for k in range(iterations):
        tau = torch.maximum(target, start * NUCLEAR_DECAY**k)
        x_next = _svt(z - mask * (z - y), tau[..., 0])
        z, t = _momentum(x, x_next, z, t)
        x = x_next
    return x


def logdet_completion(
    y: torch.Tensor,
    mask: torch.Tensor,
    sigma_y: float,
    epsilon: float | torch.Tensor | None = None,
    iterations: int = 300,
    weight: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Matrix completion with the log-det (coding rate) surrogate of rank, by proximal gradient.

    Minimises ``0.5 ||mask * (X - y)||_F^2 + weight * 0.5 logdet(I + X X^T / epsilon^2)``, where the penalty
    is ``weight * 0.5 sum_i log(1 + s_i^2 / epsilon^2)`` over the singular values of ``X``: the coding rate
    ``R_eps(X) = 1/2 logdet(I + d / (n eps^2) X X^T)`` of Ma et al. ("Learning Deep Representations of
    Data Distributions"), a smooth form of the log-det heuristic of Fazel, Hindi & Boyd (2003, "Log-det
    heuristic for matrix rank minimization"). It grows like ``log s``, not ``s``: closer to a rank count,
    it needs fewer samples than the nuclear norm and shrinks a large singular value by about
    ``weight / s`` instead of ``weight``.

    Solver: majorisation-minimisation. The data term is majorised by its quadratic of curvature 1 (its
    gradient is 1-Lipschitz), and that majoriser plus the penalty is minimised exactly by the penalty's
    proximal map on the singular values of ``G = Z - mask * (Z - y)`` (a cubic per value, see
    :func:`_logdet_shrink`); from ``Z = X`` the objective cannot rise. Majorising the log-det by its
    tangent instead (reweighted least squares) only ever shrinks the current column space, and stalls at
    too low a rank. FISTA momentum (with adaptive restart) extrapolates ``Z``; a step that raises the
    objective is dropped and the next one taken from ``Z = X``, so the objective never rises. The penalty
    starts strong (``weight`` times ``c^2``, ``epsilon`` times ``c``, which scales its cut by ``c``, from
    ``c = ||y||_2 / sqrt(weight)`` where all of ``y`` is cut) and ``c`` decays geometrically to 1 over the
    first ``LOGDET_CONTINUATION`` of the steps: the dominant subspace comes first, and the non-convex
    objective's poor local minima are avoided.

    Defaults, with ``T = max(sigma_y sqrt(p) (sqrt(H) + sqrt(W)), 1e-4 ||y||_2)`` the nuclear norm's
    default weight (about the spectral norm of the observed noise, ``p`` the observed fraction):
    ``epsilon = T / 10`` and ``weight = T^2 / 2``. The proximal map then jumps at ``1.66 T``: it divides
    the singular values below by about 50 and shrinks a larger one ``s`` by only about ``T^2 / (2 s)``.

    Args:
        y: ``(..., H, W)`` zero-filled observations (entries off the mask are ignored).
        mask: 0/1 tensor broadcastable to ``y``; 1 = observed.
        sigma_y: standard deviation of the observation noise, >= 0.
        epsilon: the distortion scale, > 0: a number or a tensor broadcastable to the batch shape.
        iterations: proximal gradient steps (one SVD each).
        weight: the penalty's weight, > 0, like ``epsilon``.

    Returns:
        ``(..., H, W)``, the completed matrices in the dtype of ``y``.
    """
    y, mask = _completion_inputs(y, mask, sigma_y, iterations)
    threshold = _noise_threshold(y, mask, sigma_y)
    if epsilon is None:
        epsilon = threshold / EPSILON_RATIO
    else:
        epsilon = _check_weight("epsilon", epsilon, y, allow_zero=False)
    if weight is None:
        weight = LOGDET_WEIGHT * threshold**2
    else:
        weight = _check_weight("weight", weight, y, allow_zero=False)
    weight, epsilon = weight[..., 0], epsilon[..., 0]  # (..., 1): broadcast over singular values
    start = (_spectral_norm(y)[..., 0] / weight.sqrt()).clamp_min(1)
    steps = LOGDET_CONTINUATION * iterations

    def objective(x: torch.Tensor, s: torch.Tensor, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return 0.5 * (mask * (x - y)).square().sum((-2, -1)) + _logdet_penalty(s, w, e)

    x = z = torch.zeros_like(y)
    s_x = torch.zeros_like(y[..., 0, : min(y.shape[-2:])])  # singular values of x: its penalty
    t = torch.ones_like(weight[..., None])
    plain = torch.ones_like(t, dtype=torch.bool)  # z == x, a step that cannot raise the objective
    for k in range(iterations):
        c = start ** max(1 - k / steps, 0)
        w, e = weight * c**2, epsilon * c
        U, s, Vh = torch.linalg.svd(z - mask * (z - y), full_matrices=False)
        s_next = _logdet_shrink(s, w, e)
        x_next = (U * s_next.unsqueeze(-2)) @ Vh
        rises = objective(x_next, s_next, w, e) > objective(x, s_x, w, e)
        drop = rises[..., None, None] & ~plain
        x_next, s_next = torch.where(drop, x, x_next), torch.where(drop[..., 0], s_x, s_next)
        z, t_next = _momentum(x, x_next, z, t, keep=~drop)
        plain = (z == x_next).all(dim=(-2, -1), keepdim=True)
        x, s_x, t = x_next, s_next, t_next
    return x


# ----------------------------------------------------------------------------------------------------
# Robust PCA.


def robust_pca(
    y: torch.Tensor,
    mask: torch.Tensor | None = None,
    weight: float | torch.Tensor | None = None,
    iterations: int = 500,
    tol: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal component pursuit by the inexact augmented Lagrangian method: ``y = L + S``.

    Solves ``min ||L||_* + weight ||S||_1`` subject to ``L + S = y``, or with a mask subject to
    ``mask * (L + S) = mask * y`` with ``S`` penalised only where observed (Candes, Li, Ma & Wright 2011,
    "Robust principal component analysis?"). Inexact ALM (Lin, Chen & Ma 2010, Algorithm 5), with
    multiplier ``Y`` and penalty ``mu``: ``L = SVT(y - S + Y / mu, 1 / mu)``, ``S = soft(y - L + Y / mu,
    weight / mu)`` (not thresholded off the mask, where ``S`` absorbs the constraint), ``Y += mu (y - L -
    S)``, and ``mu`` grows by ``RPCA_GROWTH`` up to ``1e7`` times its start ``1.25 / ||y||_2``. A matrix
    stops, keeping its values, once ``||mask * (y - L - S)||_F <= tol ||mask * y||_F``; the loop ends
    when all have stopped, so a batch gives what each matrix would alone.

    Args:
        y: ``(..., H, W)`` observed matrices (entries off the mask are ignored).
        mask: 0/1 tensor broadcastable to ``y``, 1 = observed; default: all observed.
        weight: the weight of ``||S||_1``, >= 0, a number or a tensor broadcastable to the batch shape;
            default ``1 / sqrt(max(H, W))`` (Candes et al. 2011, Theorem 1.1).
        iterations: the most ALM steps (one SVD each).
        tol: relative residual at which a matrix stops, > 0.

    Returns:
        ``(low_rank, sparse)``, each ``(..., H, W)`` in the dtype of ``y``; ``sparse`` is 0 off the mask.
    """
    y = _check_matrix("y", y)
    mask = torch.ones_like(y) if mask is None else _check_mask(mask, y)
    H, W = y.shape[-2:]
    weight = _check_weight("weight", 1 / math.sqrt(max(H, W)) if weight is None else weight, y)
    check_count("iterations", iterations)
    _check_number("tol", tol, allow_zero=False)
    y = y * mask
    spectral = _spectral_norm(y)
    spectral = torch.where(spectral > 0, spectral, 1)  # an all-zero y is solved by L = S = 0 at once
    # Start the multiplier at y / max(||y||_2, ||y||_inf / weight), feasible for the dual problem
    # (Lin et al. 2010, Sec. 3.1): the first steps are then already informative.
    largest = y.abs().amax(dim=(-2, -1), keepdim=True)
    dual = y / torch.maximum(spectral, largest / weight.clamp_min(torch.finfo(y.dtype).tiny))
    mu = 1.25 / spectral
    mu_max = 1e7 * mu
    low_rank, sparse = torch.zeros_like(y), torch.zeros_like(y)
    stop = tol * torch.linalg.matrix_norm(y)[..., None, None]
    running = torch.ones_like(mu, dtype=torch.bool)
    for _ in range(iterations):
        low_rank_next = _svt(y - sparse + dual / mu, 1 / mu[..., 0])
        target = y - low_rank_next + dual / mu
        shrunk = target.sign() * (target.abs() - weight / mu).clamp_min(0)
        sparse_next = torch.where(mask > 0, shrunk, target)
        residual = mask * (y - low_rank_next - sparse_next)
        low_rank = torch.where(running, low_rank_next, low_rank)
        sparse = torch.where(running, sparse_next, sparse)
        dual = torch.where(running, dual + mu * residual, dual)
        mu = torch.where(running, torch.minimum(RPCA_GROWTH * mu, mu_max), mu)
        running = running & (torch.linalg.matrix_norm(residual)[..., None, None] > stop)
        if not bool(running.any()):
            break
    return low_rank, mask * sparse
