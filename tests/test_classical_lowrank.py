"""Low-rank baselines against closed forms and known recovery results: the nuclear norm's proximal map,
exact completion without noise, error growing with the noise, robust PCA, batches, and bad input."""

from __future__ import annotations

import pytest
import torch

from posteria.classical.lowrank import (
    _logdet_shrink,
    logdet_completion,
    nuclear_norm_completion,
    robust_pca,
    singular_value_threshold,
)
from posteria.errors import PosteriaError

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def completion_problem(
    n: int = 40, rank: int = 2, fraction: float = 0.5, sigma: float = 0.0, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X, mask, y)``: a random ``n x n`` matrix of the given rank (Gaussian factors), a Bernoulli mask
    and ``y = mask * (X + sigma Z)``. ``X`` and the mask depend on the seed only, not on ``sigma``."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, rank, generator=g, dtype=F64) @ torch.randn(rank, n, generator=g, dtype=F64)
    mask = (torch.rand(n, n, generator=g, dtype=F64) < fraction).to(F64)
    y = mask * (X + sigma * torch.randn(n, n, generator=g, dtype=F64))
    return X, mask, y


def rpca_problem(
    n: int = 50, rank: int = 2, fraction: float = 0.05, size: float = 10.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, S)``: a rank-``rank`` ``n x n`` matrix and spikes of ``+-size`` on a random ``fraction``."""
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(n, rank, generator=g, dtype=F64) @ torch.randn(rank, n, generator=g, dtype=F64)
    support = torch.rand(n, n, generator=g, dtype=F64) < fraction
    signs = 2.0 * torch.randint(0, 2, (n, n), generator=g).to(F64) - 1
    return L, size * support * signs


def relative_error(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return float(torch.linalg.norm(estimate - truth) / torch.linalg.norm(truth))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Entrywise ``|actual - expected| <= atol + rtol |expected|``; torch.testing's first call is 0.8 s."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    excess = (actual - expected).abs() - (atol + rtol * expected.abs())
    assert float(excess.max()) <= 0, f"off by up to {float(excess.max()):.3g} beyond the tolerance"


# ----------------------------------------------------------------------------------------------------
# Singular value thresholding.


def test_svt_satisfies_the_proximal_optimality_condition():
    """``Z = prox(X)`` iff ``X - Z = tau (U_r V_r^T + W)`` with ``W`` orthogonal to ``Z``'s singular
    vectors and ``||W||_2 <= tau`` (the subdifferential of the nuclear norm): check each part."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 5, generator=g, dtype=F64)
    s = torch.linalg.svdvals(X)
    tau = float((s[1] + s[2]) / 2)  # keeps two singular values
    Z = singular_value_threshold(X, tau)
    U, sz, Vh = torch.linalg.svd(Z, full_matrices=False)
    r = int((sz > 1e-10).sum())
    assert r == 2
    U, V = U[:, :r], Vh[:r].T
    G = X - Z
    assert_close(G @ V, tau * U, atol=1e-12)
    assert_close(U.T @ G, tau * V.T, atol=1e-12)
    W = (torch.eye(7, dtype=F64) - U @ U.T) @ G @ (torch.eye(5, dtype=F64) - V @ V.T)
    assert float(torch.linalg.matrix_norm(W, ord=2)) <= tau * (1 + 1e-12)


def test_svt_minimises_the_proximal_objective():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(6, 8, generator=g, dtype=F64)
    tau = 1.3

    def objective(Z: torch.Tensor) -> float:
        return float(0.5 * (Z - X).square().sum() + tau * torch.linalg.svdvals(Z).sum())

    Z = singular_value_threshold(X, tau)
    best = objective(Z)
    for scale in (1e-1, 1e-3):
        for _ in range(20):
            assert objective(Z + scale * torch.randn(6, 8, generator=g, dtype=F64)) > best
    # The ends: no threshold is the identity, one above ||X||_2 gives 0.
    assert_close(singular_value_threshold(X, 0.0), X, atol=1e-12)
    big = float(torch.linalg.matrix_norm(X, ord=2)) * 1.01
    assert torch.equal(singular_value_threshold(X, big), torch.zeros_like(X))


def test_svt_batched_equals_per_item_with_per_item_thresholds():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(3, 1, 6, 4, generator=g, dtype=F64)
    tau = torch.tensor([[0.1], [1.0], [2.5]], dtype=F64)
    batched = singular_value_threshold(X, tau)
    for i in range(3):
        assert_close(batched[i, 0], singular_value_threshold(X[i, 0], float(tau[i, 0])), atol=1e-12)
    assert not torch.allclose(batched[0], batched[2])  # the thresholds did differ per item


def test_logdet_shrink_is_the_scalar_proximal_map():
    """The cubic's best root beats a dense grid search of ``0.5 (s - sigma)^2 + 0.5 w log(1 + s^2/e^2)``
    on ``[0, sigma]``, across the regimes where it is continuous and where it jumps."""
    g = torch.Generator().manual_seed(3)
    sigma = 5 * torch.rand(200, 1, generator=g, dtype=F64)
    weight = 3 * torch.rand(200, 1, generator=g, dtype=F64)
    epsilon = torch.rand(200, 1, generator=g, dtype=F64) ** 3 + 1e-4
    s = _logdet_shrink(sigma, weight, epsilon)

    def objective(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (v - sigma) ** 2 + 0.5 * weight * torch.log1p(v**2 / epsilon**2)

    grid = torch.linspace(0, 1, 10001, dtype=F64) * sigma
    assert bool((objective(s)[:, 0] <= objective(grid).min(-1).values + 1e-12).all())
    assert bool(((s >= 0) & (s <= sigma)).all())
    assert float(_logdet_shrink(torch.zeros(1, 1, dtype=F64), weight[:1], epsilon[:1])) == 0


def test_logdet_shrink_of_the_defaults_jumps_at_1_66_threshold():
    """``weight = T^2 / 2``, ``epsilon = T / 10`` (``T = 1``): nondecreasing, as a proximal map must be,
    about ``sigma / 51`` well below the jump at 1.66 and ``sigma - 1 / (2 sigma)`` well above it."""
    sigma = torch.linspace(0, 20, 20001, dtype=F64)[None]
    s = _logdet_shrink(sigma, torch.tensor([[0.5]], dtype=F64), torch.tensor([[0.1]], dtype=F64))[0]
    steps = s.diff()
    assert bool((steps >= 0).all())
    jump = int(steps.argmax())
    assert float(steps[jump]) > 1 and abs(float(sigma[0, jump]) - 1.66) < 0.01
    below = sigma[0] < 1
    assert_close(s[below], sigma[0, below] / 51, rtol=0.05)  # 4% off at sigma = 1
    above = sigma[0] > 10
    assert_close(s[above], sigma[0, above] - 1 / (2 * sigma[0, above]), rtol=1e-3)


# ----------------------------------------------------------------------------------------------------
# Matrix completion.


def test_noiseless_completion_at_half_the_entries():
    """Rank 2, 40 x 40, 50% observed: both recover; the log-det also beats the nuclear norm's bias."""
    X, mask, y = completion_problem(fraction=0.5)
    nuclear = relative_error(nuclear_norm_completion(y, mask, 0.0, iterations=150), X)
    logdet = relative_error(logdet_completion(y, mask, 0.0, iterations=100), X)
    assert nuclear < 1e-2  # measured 3e-4 (the bias of the weight's floor 1e-4 ||y||_2)
    assert logdet < 1e-6  # measured 6e-9
    assert logdet <= nuclear


def test_logdet_recovers_where_the_nuclear_norm_fails():
    """At 30% observed (about 3 samples per degree of freedom) minimum nuclear norm completion is not
    the truth (relative error 0.2 here, converged), while the log-det surrogate recovers it exactly."""
    X, mask, y = completion_problem(fraction=0.3)
    nuclear = relative_error(nuclear_norm_completion(y, mask, 0.0, iterations=150), X)
    logdet = relative_error(logdet_completion(y, mask, 0.0, iterations=200), X)
    assert nuclear > 0.05  # measured 0.19
    assert logdet < 1e-5  # measured 1e-8


def test_completion_solves_its_penalised_problem():
    """Fixed points of the proximal gradient map ``X = prox(X - mask * (X - y))``: the nuclear norm's is
    its (convex) optimality condition, the log-det's its stationarity condition."""
    X, mask, y = completion_problem(n=20, fraction=0.6, sigma=0.1, seed=4)
    weight = 1.0
    Z = nuclear_norm_completion(y, mask, 0.1, weight=weight, iterations=100)
    step = singular_value_threshold(Z - mask * (Z - y), weight)
    assert relative_error(step, Z) < 1e-10  # measured 4e-16
    Z = logdet_completion(y, mask, 0.1, epsilon=0.2, weight=1.0, iterations=200)
    U, s, Vh = torch.linalg.svd(Z - mask * (Z - y), full_matrices=False)
    step = (U * _logdet_shrink(s, torch.tensor([1.0], dtype=F64), torch.tensor([0.2], dtype=F64))) @ Vh
    assert relative_error(step, Z) < 1e-8  # measured 1e-10: the last 20% of the steps are at the target


@pytest.mark.parametrize(("method", "iterations"), [(nuclear_norm_completion, 150), (logdet_completion, 100)])
def test_noisy_completion_error_grows_with_sigma(method, iterations):
    """With the default weights, 50% observed: error grows about in proportion to ``sigma_y`` and stays
    far below the zero-filled observation's (0.70)."""
    errors = {}
    for sigma in (0.01, 0.1):
        X, mask, y = completion_problem(fraction=0.5, sigma=sigma)
        errors[sigma] = relative_error(method(y, mask, sigma, iterations=iterations), X)
        zero_filled = relative_error(y, X)
    # measured (nuclear, logdet): 0.011, 0.003 at sigma 0.01 and 0.085, 0.030 at 0.1
    assert 3 * errors[0.01] < errors[0.1] < 0.15 * zero_filled


def test_logdet_beats_nuclear_norm_with_noise():
    """Shrinking large singular values by ``~T^2 / s`` instead of ``T`` pays off with noise too."""
    X, mask, y = completion_problem(fraction=0.5, sigma=0.1, seed=3)
    nuclear = relative_error(nuclear_norm_completion(y, mask, 0.1, iterations=150), X)
    logdet = relative_error(logdet_completion(y, mask, 0.1, iterations=100), X)
    assert logdet < 0.6 * nuclear  # measured 0.036 against 0.086


@pytest.mark.parametrize(("method", "iterations"), [(nuclear_norm_completion, 150), (logdet_completion, 100)])
def test_completion_works_in_float32(method, iterations):
    X, mask, y = completion_problem(fraction=0.5)
    out = method(y.float(), mask.bool(), 0.0, iterations=iterations)
    assert out.dtype == torch.float32
    assert relative_error(out.double(), X) < 1e-2  # measured 3e-4 (nuclear), 8e-7 (log-det)


# ----------------------------------------------------------------------------------------------------
# Robust PCA.


def test_robust_pca_separates_low_rank_and_spikes():
    L, S = rpca_problem()
    low_rank, sparse = robust_pca(L + S)
    assert relative_error(low_rank, L) < 1e-6  # measured 7e-8 (tol = 1e-7 on the residual)
    assert relative_error(sparse, S) < 1e-6
    # It stopped at the tolerance, well before the iteration budget: a larger budget changes nothing.
    again = robust_pca(L + S, iterations=2000)
    assert torch.equal(again[0], low_rank) and torch.equal(again[1], sparse)


def test_robust_pca_with_missing_entries():
    L, S = rpca_problem(seed=1)
    g = torch.Generator().manual_seed(101)
    mask = torch.rand(50, 50, generator=g, dtype=F64) < 0.8
    low_rank, sparse = robust_pca(mask * (L + S), mask)
    assert relative_error(low_rank, L) < 1e-6  # measured 1e-7, the unobserved entries included
    assert relative_error(sparse, mask * S) < 1e-6
    assert bool((sparse[~mask] == 0).all())


# ----------------------------------------------------------------------------------------------------
# Batches.


def test_batch_equals_each_matrix_alone():
    """Leading dims (3, 1): each of the three functions gives per matrix what it gives alone, including
    robust PCA, whose matrices stop at different steps; a mask of shape (H, W) is shared."""
    problems = [completion_problem(n=20, fraction=0.5, sigma=0.05, seed=seed) for seed in range(3)]
    y = torch.stack([p[2] for p in problems])[:, None]
    masks = torch.stack([p[1] for p in problems])[:, None]
    shared = problems[0][1]
    for method in (nuclear_norm_completion, logdet_completion):
        for mask in (masks, shared):
            batched = method(y * mask, mask, 0.05, iterations=25)
            assert batched.shape == (3, 1, 20, 20)
            for i in range(3):
                alone = method(
                    y[i, 0] * mask.expand_as(y)[i, 0], mask.expand_as(y)[i, 0], 0.05, iterations=25
                )
                assert_close(batched[i, 0], alone, atol=1e-10)
    pairs = [rpca_problem(n=20, fraction=f, seed=seed) for seed, f in enumerate((0.02, 0.05, 0.1))]
    y = torch.stack([L + S for L, S in pairs])[:, None]
    low_rank, sparse = robust_pca(y, masks)
    for i in range(3):
        alone = robust_pca(y[i, 0], masks[i, 0])
        assert_close(low_rank[i, 0], alone[0], atol=1e-10)
        assert_close(sparse[i, 0], alone[1], atol=1e-10)


def test_all_zero_input_gives_zero():
    y = torch.zeros(2, 6, 5, dtype=F64)
    mask = torch.ones(6, 5)
    for out in (
        nuclear_norm_completion(y, mask, 0.0, iterations=5),
        logdet_completion(y, mask, 0.0, iterations=5),
        *robust_pca(y),
    ):
        assert torch.equal(out, torch.zeros_like(y))


# ----------------------------------------------------------------------------------------------------
# Bad input.

Y = torch.ones(2, 4, 5, dtype=F64)
MASK = torch.ones(4, 5)
NAN = Y.clone().index_put_(
    (torch.tensor(0), torch.tensor(1), torch.tensor(2)), torch.tensor(float("nan"), dtype=F64)
)


def call_completion(method, **overrides):
    args = {"y": Y, "mask": MASK, "sigma_y": 0.1, "iterations": 2} | overrides
    return lambda: method(**args)


BAD = [
    ("x", lambda: singular_value_threshold(torch.ones(5, dtype=F64), 1.0)),
    ("x", lambda: singular_value_threshold(NAN, 1.0)),
    ("tau", lambda: singular_value_threshold(Y, -1.0)),
    ("tau", lambda: singular_value_threshold(Y, torch.ones(3))),
    ("tau", lambda: singular_value_threshold(Y, torch.tensor([1.0, float("nan")]))),
    ("y", lambda: robust_pca(torch.ones(3, 4, dtype=torch.int64))),
    ("y", lambda: robust_pca(NAN)),
    ("mask", lambda: robust_pca(Y, torch.ones(4, 4))),
    ("weight", lambda: robust_pca(Y, weight=-0.1)),
    ("iterations", lambda: robust_pca(Y, iterations=0)),
    ("tol", lambda: robust_pca(Y, tol=0.0)),
    ("tol", lambda: robust_pca(Y, tol=None)),
]
for _method in (nuclear_norm_completion, logdet_completion):
    BAD += [
        ("y", call_completion(_method, y=torch.ones(5, dtype=F64))),
        ("y", call_completion(_method, y=NAN)),
        ("mask", call_completion(_method, mask=torch.ones(3, 5))),
        ("mask", call_completion(_method, mask=torch.ones(3, 2, 4, 5))),
        ("mask", call_completion(_method, mask=2 * MASK)),
        ("sigma_y", call_completion(_method, sigma_y=-0.1)),
        ("sigma_y", call_completion(_method, sigma_y=float("nan"))),
        ("sigma_y", call_completion(_method, sigma_y="0.1")),
        ("iterations", call_completion(_method, iterations=0)),
        ("iterations", call_completion(_method, iterations=-3)),
        ("iterations", call_completion(_method, iterations=2.5)),
        ("weight", call_completion(_method, weight=-1.0)),
    ]
BAD += [
    ("epsilon", call_completion(logdet_completion, epsilon=0.0)),
    ("weight", call_completion(logdet_completion, weight=0.0)),
]


@pytest.mark.parametrize(("name", "call"), BAD, ids=[f"{i}-{name}" for i, (name, _) in enumerate(BAD)])
def test_bad_input_raises_one_line_naming_the_argument(name, call):
    with pytest.raises(PosteriaError, match=rf"^{name} ") as info:
        call()
    assert "\n" not in str(info.value)
