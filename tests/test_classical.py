"""Classical baselines through ``solve``: closed forms for least squares, Tikhonov and MAP with a known
projection; optimality of the TV proximal step; the shipped regression network; bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import posteria as pa
from posteria.classical.tv import (
    WARM_UP,
    finite_differences,
    finite_differences_adjoint,
    fista_tv,
    total_variation,
    tv_prox,
)
from posteria.denoisers.gaussian import GaussianDenoiser
from posteria.errors import PosteriaError
from posteria.noise import VPLinear
from posteria.operators import Composition, Downsample, MatrixOperator, get_operator

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def matrix_problem(m: int = 5, d: int = 8, sigma_y: float = 0.1, seed: int = 0):
    """A float64 MatrixOperator, a signal batch and its measurement."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, d, generator=g, dtype=torch.float64)
    operator = MatrixOperator(A, sigma_y=sigma_y)
    x = torch.randn(3, d, generator=g, dtype=torch.float64)
    return operator, A, operator.measure(x, g)


def test_least_squares_is_the_pseudo_inverse():
    operator, A, y = matrix_problem()
    x = pa.solve(None, operator, y, method="least-squares", n=2)
    assert x.shape == (3, 2, 8)
    torch.testing.assert_close(x[:, 0], y @ torch.linalg.pinv(A).T)
    torch.testing.assert_close(x[:, 0], x[:, 1])


@pytest.mark.parametrize("with_svd", [True, False])
def test_tikhonov_solves_the_regularised_normal_equations(with_svd):
    operator, A, y = matrix_problem()
    if not with_svd:  # a composition has no SVD: conjugate gradients instead
        operator = Composition(operator, MatrixOperator(torch.eye(8, dtype=torch.float64)))
        assert operator.svd is None
    lam = 0.3
    expected = torch.linalg.solve(A.T @ A + lam * torch.eye(8, dtype=torch.float64), A.T @ y.T).T
    x = pa.solve(None, operator, y, method="tikhonov", weight=lam, steps=50)
    torch.testing.assert_close(x[:, 0], expected)


def test_tikhonov_defaults_to_the_gaussian_map_weight_sigma_y_squared():
    operator, A, y = matrix_problem(sigma_y=0.5)
    expected = torch.linalg.solve(A.T @ A + 0.25 * torch.eye(8, dtype=torch.float64), A.T @ y.T).T
    torch.testing.assert_close(pa.solve(None, operator, y, method="tikhonov")[:, 0], expected)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 1000))
def test_finite_differences_adjoint_is_exact(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, h, w, generator=g, dtype=torch.float64)
    p = (
        torch.randn(2, 1, h, w, generator=g, dtype=torch.float64),
        torch.randn(2, 1, h, w, dtype=torch.float64),
    )
    dx, dy = finite_differences(x)
    lhs = (dx * p[0]).sum() + (dy * p[1]).sum()
    torch.testing.assert_close(lhs, (x * finite_differences_adjoint(p)).sum())


def test_tv_prox_minimises_its_objective_and_keeps_constant_images():
    g = torch.Generator().manual_seed(0)
    b = torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64) * 0.5
    gamma, box = 0.2, (-1.0, 1.0)
    x = tv_prox(b, gamma, box, iterations=500)

    def objective(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z - b) ** 2).flatten(1).sum(1) + gamma * total_variation(z)

    for _ in range(20):  # any feasible perturbation does worse
        z = (x + 1e-2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(*box)
        assert bool((objective(z) >= objective(x) - 1e-9).all())
    constant = torch.full((1, 1, 5, 5), 0.3, dtype=torch.float64)
    torch.testing.assert_close(tv_prox(constant, gamma, box), constant)
    assert float(tv_prox(3 * b, gamma, box).abs().max()) <= 1.0  # the box holds


def test_fista_tv_denoises_a_piecewise_constant_image_better_than_least_squares():
    x = -torch.ones(2, 1, 12, 12, dtype=torch.float64)
    x[:, :, 3:9, 4:10] = 1.0
    operator = get_operator("denoise", (1, 12, 12), sigma_y=0.3).double()
    y = operator.measure(x, torch.Generator().manual_seed(0))
    error = {m: float(((pa.solve(None, operator, y, method=m)[:, 0] - x) ** 2).mean()) for m in
             ("least-squares", "fista-tv")}  # fmt: skip
    assert error["fista-tv"] < 0.3 * error["least-squares"]  # measured 0.22


def tv_problem(name: str, sigma_y: float = 1e-3):
    """A float64 6x6 operator and the measurements of three images: two piecewise constant, one noise."""
    operator = get_operator(name, (1, 6, 6), sigma_y=sigma_y, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    x = -torch.ones(3, 1, 6, 6, dtype=F64)
    x[:, :, 1:5, 2:5] = 1.0
    x[1, :, 0:2, 0:3] = 0.5
    x[2] = torch.rand(1, 6, 6, generator=g, dtype=F64) * 2 - 1
    return operator.double(), operator.double().measure(x, g)


def test_fista_tv_stops_once_converged_at_low_noise():
    """At sigma_y = 1e-3 (lambda = 1e-4) MRI x4 of a piecewise constant image is 6e-4 off the optimal
    objective after 300 steps; the default tolerance ``0.02 sigma_y`` stops it, before 1,000 steps, within
    1e-4 of a 1,000-step run without stopping (measured 2e-5)."""
    operator, y = tv_problem("mri4")
    y = y[:2]

    def objective(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((operator(x) - y).abs() ** 2).flatten(1).sum(1) + 1e-4 * total_variation(x)

    stopped = fista_tv(None, operator, y, 1000, inner_iterations=2)
    assert torch.equal(fista_tv(None, operator, y, 2000, inner_iterations=2), stopped)  # it stopped
    best = objective(fista_tv(None, operator, y, 1000, inner_iterations=2, tolerance=0))
    assert bool((objective(stopped) - best <= 1e-4 * best).all())


def test_fista_tv_does_not_stop_while_its_momentum_builds():
    """Box inpainting at sigma_y = 0.01 moves by 5e-5 of the image at step 2, under ``0.02 sigma_y``: no
    sample stops in the first ``WARM_UP`` steps."""
    operator, y = tv_problem("inpaint-box", sigma_y=0.01)
    warm = fista_tv(None, operator, y, WARM_UP, inner_iterations=2)
    torch.testing.assert_close(warm, fista_tv(None, operator, y, WARM_UP, inner_iterations=2, tolerance=0))


def test_fista_tv_stops_each_sample_on_its_own():
    """Two images that stop at different steps (measured 245 and 484): a batch gives each what it gives
    alone."""
    operator, y = tv_problem("sr2")
    y = y[:2]
    together = fista_tv(None, operator, y, 1000, inner_iterations=2)
    alone = torch.cat([fista_tv(None, operator, y[i : i + 1], 1000, inner_iterations=2) for i in range(2)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    at_300 = fista_tv(None, operator, y, 300, inner_iterations=2)
    assert torch.equal(at_300[0], together[0]) and not torch.equal(at_300[1], together[1])


def test_map_distance_with_a_known_subspace_projection_reaches_its_closed_form():
    """With ``P`` the projection onto span(U), the minimiser of 1/2||y - Ax||^2 + lam/2 ||(I - UU^T) x||^2
    is ``(A^T A + lam (I - U U^T))^{-1} A^T y``."""
    operator, A, y = matrix_problem(m=4, d=8)
    U = torch.linalg.qr(torch.randn(8, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))[0]
    lam = 2.0
    residual = torch.eye(8, dtype=torch.float64) - U @ U.T
    expected = torch.linalg.solve(A.T @ A + lam * residual, A.T @ y.T).T
    prior = GaussianDenoiser.full(VPLinear(), torch.zeros(8, dtype=torch.float64), U @ U.T + 1e-3 * residual)
    x = pa.solve(prior, operator, y, "map-distance", steps=3000, weight=lam, project=lambda v: v @ U @ U.T)
    torch.testing.assert_close(x[:, 0], expected, atol=1e-6, rtol=1e-6)


def test_the_regression_network_beats_zero_filling_on_held_out_digits():
    from posteria.data import load_dataset
    from posteria.metrics.image import psnr

    x = load_dataset("mnist", "test")[0][:16]
    operator = get_operator("inpaint-box", (1, 28, 28), sigma_y=0.05)
    y = operator.measure(x, torch.Generator().manual_seed(0))
    score = {m: float(psnr(pa.solve(None, operator, y, method=m)[:, 0], x).mean()) for m in
             ("least-squares", "regression")}  # fmt: skip
    assert score["regression"] > score["least-squares"] + 3


def test_the_regression_network_rejects_other_image_sizes():
    operator = get_operator("inpaint-box", (1, 8, 8))
    with pytest.raises(PosteriaError, match="trained on images of shape"):
        pa.solve(None, operator, torch.zeros(1, *operator.measurement_shape), method="regression")


def test_baselines_report_no_network_calls_and_identical_samples():
    operator = get_operator("sr2", (1, 8, 8), sigma_y=0.1)
    y = operator.measure(torch.rand(2, 1, 8, 8) * 2 - 1, torch.Generator().manual_seed(0))
    sampler = pa.posterior.prepare(None, operator, y, "fista-tv", steps=5, n=3)
    assert sampler.nfe == 0
    x = pa.solve(None, operator, y, method="fista-tv", steps=5, n=3)
    assert x.shape == (2, 3, 1, 8, 8) and bool((x == x[:, :1]).all())
    listed = {m["name"]: m for m in pa.methods()}
    assert listed["tikhonov"]["point"] and not listed["tikhonov"]["prior"]
    assert listed["map-distance"]["prior"] and not listed["mmps"]["point"]


def test_bad_input_to_baselines_gives_one_line():
    operator = Downsample((1, 8, 8), factor=2, sigma_y=0.1)
    y = torch.zeros(1, *operator.measurement_shape)
    with pytest.raises(PosteriaError, match="needs a prior"):
        pa.solve(None, operator, y, method="map-distance")
    with pytest.raises(PosteriaError, match="'tikhonov' takes no option lambda; its options: weight=None"):
        pa.solve(None, operator, y, method="tikhonov", **{"lambda": 1.0})
    with pytest.raises(PosteriaError, match="weight must be"):
        pa.solve(None, operator, y, method="fista-tv", weight=-1.0)
    with pytest.raises(PosteriaError, match="tolerance must be a finite number >= 0"):
        pa.solve(None, operator, y, method="fista-tv", tolerance=-1e-3)
    with pytest.raises(PosteriaError, match="mask"):
        pa.solve(None, operator, y, method="regression")
    vector = MatrixOperator(torch.eye(4))
    with pytest.raises(PosteriaError, match="image-shaped"):
        pa.solve(None, vector, torch.zeros(1, 4), method="fista-tv")


@pytest.mark.parametrize(("method", "kept"), [("nuclear-norm", 0.6), ("logdet", 0.6), ("rpca", 0.8)])
def test_low_rank_methods_complete_a_masked_low_rank_matrix_through_solve(method, kept):
    """Rank 2, 40 x 40; robust PCA, which also allows sparse corruptions, needs more entries (at 60%
    kept it is 18% off)."""
    from posteria.operators import Mask

    g = torch.Generator().manual_seed(1)
    left, right = (
        torch.randn(2, 1, *shape, generator=g, dtype=torch.float64) for shape in ((40, 2), (2, 40))
    )
    x = left @ right
    operator = Mask.random((1, 40, 40), kept, generator=g).double()
    estimate = pa.solve(None, operator, operator(x), method=method)[:, 0]
    assert float((estimate - x).norm() / x.norm()) < 1e-2
    assert float((operator.pinv(operator(x)) - x).norm() / x.norm()) > 0.4  # zero filling is far off


@pytest.mark.parametrize("method", ["least-squares", "tikhonov", "fista-tv", "nuclear-norm", "rpca", "ddrm"])
def test_integer_measurements_are_refused_in_one_line(method):
    """An integer ``y`` came back as an integer image (least squares on a mask) and failed inside
    ``torch.finfo`` (DDRM): one line naming ``y`` instead, for every method."""
    operator = get_operator("inpaint-random", (1, 8, 8), sigma_y=0.1)
    y = operator(torch.ones(1, 1, 8, 8)).to(torch.int64)
    prior = (
        GaussianDenoiser.diagonal(VPLinear(), torch.zeros(1, 8, 8), torch.ones(64))
        if method == "ddrm"
        else None
    )
    with pytest.raises(PosteriaError, match=r"y must be a floating-point tensor, got torch.int64") as info:
        pa.solve(prior, operator, y, method=method, steps=2)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("method", ["fista-tv", "nuclear-norm", "logdet", "rpca"])
def test_baselines_refuse_half_precision_measurements(method):
    """Half precision failed inside torch's matrix norm (FISTA-TV's power iteration) or SVD (the low-rank
    baselines): one line naming ``y``. Posterior samplers take it (bfloat16 priors give bfloat16 ``y``)."""
    operator = get_operator("inpaint-random", (1, 8, 8), sigma_y=0.1)
    y = operator(torch.ones(1, 1, 8, 8)).to(torch.float16)
    with pytest.raises(PosteriaError, match=r"y must be float32 or float64 for a classical baseline"):
        pa.solve(None, operator, y, method=method, steps=2)


def test_map_distance_with_a_projection_counts_no_network_calls_and_checks_its_shape():
    """With ``project`` the denoiser is never called: NFE 0, not ``steps``, and no prior is needed (the
    same estimate with and without one); a ``project`` that changes the shape is named in one line, not a
    broadcasting error from inside the gradient step."""
    operator, A, y = matrix_problem(m=4, d=8)
    prior = GaussianDenoiser.full(VPLinear(), torch.zeros(8, dtype=F64), torch.eye(8, dtype=F64))
    runner = pa.posterior.prepare(prior, operator, y, "map-distance", steps=7, project=lambda v: v)
    assert runner.nfe == 0
    halve = lambda v: v / 2  # noqa: E731
    without = pa.solve(None, operator, y, "map-distance", steps=7, project=halve)
    assert torch.equal(without, pa.solve(prior, operator, y, "map-distance", steps=7, project=halve))
    assert pa.posterior.prepare(prior, operator, y, "map-distance", steps=7).nfe == 7
    with pytest.raises(PosteriaError, match=r"project must return a tensor of shape \(3, 8\)"):
        pa.solve(prior, operator, y, "map-distance", steps=2, project=lambda v: v[:, :2])


def real_rows(v: torch.Tensor) -> torch.Tensor:
    """(B, *measurement) -> (B, M): a complex measurement as its real and imaginary parts, so that the
    real inner product ``Re <y, y'>`` of the operators' adjoints is the dot product of the rows."""
    return (torch.view_as_real(v) if v.is_complex() else v).flatten(1)


@pytest.mark.parametrize("name", ["mri4", "sr2", "blur-gauss", "inpaint-random"])
def test_tikhonov_and_least_squares_match_dense_solves_on_each_operator_kind(name):
    """``(A^T A + lam I)^-1 A^T y`` and ``pinv(A) y`` from the operator's dense matrix, k-space included."""
    operator = get_operator(name, (1, 8, 8), sigma_y=0.1).double()
    g = torch.Generator().manual_seed(0)
    y = operator.measure(torch.rand(2, 1, 8, 8, dtype=F64, generator=g) * 2 - 1, g)
    A = real_rows(operator(torch.eye(64, dtype=F64).reshape(64, 1, 8, 8))).T  # (M, D)
    lam = 0.01
    ridge = torch.linalg.solve(A.T @ A + lam * torch.eye(64, dtype=F64), A.T @ real_rows(y).T).T
    tikhonov = pa.solve(None, operator, y, method="tikhonov", weight=lam)[:, 0].flatten(1)
    torch.testing.assert_close(tikhonov, ridge, rtol=1e-10, atol=1e-12)
    least_squares = pa.solve(None, operator, y, method="least-squares")[:, 0].flatten(1)
    # A^+ amplifies rounding by the condition number (529 for this blur): 1e-12 of a value of 10 is eps x 450
    torch.testing.assert_close(least_squares, real_rows(y) @ torch.linalg.pinv(A).T, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("method", ["tikhonov", "fista-tv", "nuclear-norm", "logdet", "rpca"])
def test_each_estimate_depends_on_its_own_measurement_only(method):
    """A batch gives each measurement what it gives alone, and ``batch_size`` changes nothing."""
    operator = get_operator("inpaint-random", (1, 8, 8), sigma_y=0.05).double()
    y = operator.measure(torch.rand(3, 1, 8, 8, dtype=F64) * 2 - 1, torch.Generator().manual_seed(0))
    together = pa.solve(None, operator, y, method=method, steps=20)
    alone = torch.cat([pa.solve(None, operator, y[i : i + 1], method=method, steps=20) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    assert torch.equal(pa.solve(None, operator, y, method=method, steps=20, batch_size=2), together)
