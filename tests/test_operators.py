"""Measurement operators: adjointness, pseudo-inverse identities and implicit SVDs against dense oracles."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import posteria.operators as ops
from posteria.errors import PosteriaError
from posteria.operators.fourier import coordinate_weights, fft2c, hermitian_coords, hermitian_spectrum
from posteria.tensors import flat

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def float64_one_thread() -> Iterator[None]:
    """Operators are checked in float64 on one thread (tiny tensors; a shared, busy machine)."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


# --- random operators -------------------------------------------------------------------------------


def _image(data: st.DataObject, low: int = 2, high: int = 8) -> tuple[int, int, int]:
    return data.draw(st.integers(1, 2)), data.draw(st.integers(low, high)), data.draw(st.integers(low, high))


def _generator(data: st.DataObject) -> torch.Generator:
    return torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))


def _user_mask(data: st.DataObject) -> torch.Tensor:
    """Random pixels at one half, the first always kept (a mask keeps one; a 2x2 draw keeps none 1 in 16)."""
    mask = torch.rand(_image(data), generator=_generator(data)) < 0.5
    mask.view(-1)[0] = True
    return mask


def _mild_kernel(data: st.DataObject) -> torch.Tensor:
    """A 3x3 kernel with a dominant centre: |k_hat| >= 0.4, well conditioned for CG."""
    k = torch.rand(3, 3, generator=_generator(data)) * 0.075
    k[1, 1] = 1.0
    return k


def _downsample(data: st.DataObject) -> ops.Operator:
    f = data.draw(st.integers(1, 3))
    shape = (data.draw(st.integers(1, 2)), f * data.draw(st.integers(1, 3)), f * data.draw(st.integers(1, 3)))
    return ops.Downsample(shape, f)


def _blur_gauss(data: st.DataObject) -> ops.Operator:
    shape = _image(data, 3)
    size = data.draw(st.integers(1, min(shape[1:])))
    return ops.Blur.gaussian(shape, size, data.draw(st.floats(0.3, 2.0)))


def _matrix(data: st.DataObject) -> ops.Operator:
    """A dense matrix of random rank, possibly rank deficient and wider or taller than square."""
    D, m, r = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    g = _generator(data)
    return ops.MatrixOperator(torch.randn(m, r, generator=g) @ torch.randn(r, D, generator=g))


#: kind -> (builder, well conditioned: closed-form pinv agrees with CG and the dense pinv)
BUILDERS: dict[str, tuple[Callable[[st.DataObject], ops.Operator], bool]] = {
    "identity": (lambda d: ops.Identity(_image(d)), True),
    "vector-identity": (lambda d: ops.Identity((d.draw(st.integers(1, 9)),)), True),
    "mask-random": (lambda d: ops.Mask.random(_image(d), d.draw(st.floats(0.1, 1.0)), _generator(d)), True),
    "mask-box": (lambda d: ops.Mask.box(_image(d, 3), d.draw(st.integers(1, 2))), True),
    "mask-half": (
        lambda d: ops.Mask.half(_image(d), d.draw(st.sampled_from(["left", "top", "bottom"]))),
        True,
    ),
    "mask-user": (lambda d: ops.Mask(_user_mask(d)), True),
    "downsample": (_downsample, True),
    "blur-gauss": (_blur_gauss, False),
    "blur-motion": (lambda d: ops.Blur.motion(_image(d, 3), 3, generator=_generator(d)), False),
    "blur-mild": (lambda d: ops.Blur(_mild_kernel(d), _image(d, 3)), True),
    "random-projection": (
        lambda d: ops.RandomProjection(d.draw(st.integers(1, 20)), _image(d), _generator(d)),
        False,
    ),
    "matrix": (_matrix, False),
    "mri-cartesian": (lambda d: ops.SubsampledFourier.cartesian(_image(d), 2.0, 0.2, _generator(d)), True),
    "mri-random": (lambda d: ops.SubsampledFourier.random(_image(d), 0.3, _generator(d)), True),
    "mri-radial": (lambda d: ops.SubsampledFourier.radial(_image(d), d.draw(st.integers(1, 4))), True),
    "mri-spiral": (lambda d: ops.SubsampledFourier.spiral(_image(d), 1.5), True),
    "sr-of-blur": (
        lambda d: ops.Composition(ops.Downsample((1, 6, 4), 2), ops.Blur(_mild_kernel(d), (1, 6, 4))),
        True,
    ),
    "mask-of-blur": (
        lambda d: ops.Composition(
            ops.Mask.random((2, 5, 4), 0.5, _generator(d)), ops.Blur(_mild_kernel(d), (2, 5, 4))
        ),
        True,
    ),
}
WITH_SVD = [k for k in BUILDERS if not k.endswith("-of-blur")]
WELL_CONDITIONED = [k for k, (_, ok) in BUILDERS.items() if ok]


def _signal(op: ops.Operator, n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *op.event_shape, generator=torch.Generator().manual_seed(seed))


def _measurement(op: ops.Operator, n: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if op.complex_measurement:
        return torch.complex(*torch.randn(2, n, *op.measurement_shape, generator=g))
    return torch.randn(n, *op.measurement_shape, generator=g)


def _real(t: torch.Tensor) -> torch.Tensor:
    """(B, ...) real or complex -> (B, n) real: complex entries as (re, im) pairs."""
    return flat(torch.view_as_real(t) if t.is_complex() else t)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample real inner product; for complex tensors ``Re <a, b>``."""
    return (_real(a) * _real(b)).sum(1)


def _dense(op: ops.Operator) -> torch.Tensor:
    """The matrix of ``A`` in the real view: (measurement reals, D), built column by column."""
    basis = torch.eye(op.signal_dim).reshape(op.signal_dim, *op.event_shape)
    return _real(op(basis)).T


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-9) -> None:
    """Equal up to ``rtol`` times the larger norm (absolute scale for ill-conditioned operators)."""
    scale = max(float(_real(a).norm()), float(_real(b).norm()), 1.0)
    torch.testing.assert_close(a, b, rtol=0, atol=rtol * scale)


# --- linear-algebra invariants on random operators ----------------------------------------------------


@pytest.mark.parametrize("kind", list(BUILDERS))
@SETTINGS
@given(data=st.data())
def test_adjoint_is_transpose(kind: str, data: st.DataObject) -> None:
    """<A x, y> = <x, A^T y> (real inner product for complex y), and A^T equals the dense transpose."""
    op = BUILDERS[kind][0](data)
    x, y = _signal(op), _measurement(op)
    _close(_inner(op(x), y), _inner(x, op.adjoint(y)))
    _close(_real(op.adjoint(y)), _real(y) @ _dense(op))


@pytest.mark.parametrize("kind", list(BUILDERS))
@SETTINGS
@given(data=st.data())
def test_autograd_adjoint_matches_closed_form(kind: str, data: st.DataObject) -> None:
    """The vector-Jacobian fallback of the base class equals each operator's closed-form adjoint."""
    op = BUILDERS[kind][0](data)
    y = _measurement(op)
    _close(op.adjoint_autograd(y), op.adjoint(y))


@pytest.mark.parametrize("kind", list(BUILDERS))
@SETTINGS
@given(data=st.data())
def test_pinv_penrose_identities(kind: str, data: st.DataObject) -> None:
    """A A^+ A = A and A^+ A A^+ = A^+ on random inputs; A^+ equals the dense pseudo-inverse."""
    op = BUILDERS[kind][0](data)
    x, y = _signal(op), _measurement(op)
    _close(op(op.pinv(op(x))), op(x), 1e-8)
    _close(op.pinv(op(op.pinv(y))), op.pinv(y), 1e-8)
    if BUILDERS[kind][1]:
        _close(_real(op.pinv(y)), _real(y) @ torch.linalg.pinv(_dense(op)).T, 1e-8)


@pytest.mark.parametrize("kind", WELL_CONDITIONED)
@SETTINGS
@given(data=st.data())
def test_pinv_matches_conjugate_gradients(kind: str, data: st.DataObject) -> None:
    """The closed-form (or SVD) pinv equals CG on the normal equations started at 0 (minimum norm)."""
    op = BUILDERS[kind][0](data)
    y = _measurement(op)
    _close(op.pinv_cg(y), op.pinv(y), 1e-8)


@pytest.mark.parametrize("kind", list(BUILDERS))
@SETTINGS
@given(data=st.data())
def test_proximal_step_is_the_dense_ridge_solution(kind: str, data: st.DataObject) -> None:
    """``argmin_u ||y - A u||^2 + rho ||u - x||^2`` solves ``(A^T A + rho I) u = A^T y + rho x`` (dense, real
    view); by the SVD where there is one, by CG otherwise; at ``rho = 0`` it is the projection."""
    op = BUILDERS[kind][0](data)
    x, y = _signal(op), _measurement(op)
    rho = data.draw(st.floats(1e-2, 10.0))
    A = _dense(op)
    normal = A.T @ A + rho * torch.eye(op.signal_dim)
    expected = torch.linalg.solve(normal, (_real(y) @ A + rho * flat(x)).T).T
    _close(flat(op.proximal(x, y, rho)), expected, 1e-7)
    _close(op.proximal(x, y, 0.0), op.projection(x, y))


def test_proximal_step_checks_its_arguments() -> None:
    op = ops.get_operator("inpaint-box", (1, 8, 8))
    x = torch.zeros(3, 1, 8, 8)
    _one_line_error(lambda: op.proximal(x, op(x)[:1], 0.5), r"y must have shape \(3, ")
    _one_line_error(lambda: op.proximal(x, op(x), -1.0), "rho must be a finite number >= 0")
    _one_line_error(lambda: op.proximal(x, op(x), 0.5, max_iter=1.5), "max_iter must be a positive integer")


@pytest.mark.parametrize("name", ["cs25", "mri4"])
def test_pinv_cg_asked_for_more_than_float32_precision_stays_at_the_answer(name: str) -> None:
    """rtol = 0 in float32 (CG past rounding walked into the null space of A^T A, to |x| ~ 1e10)."""
    op = ops.get_operator(name, (1, 28, 28), sigma_y=0.05)
    y = op(torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    x = op.pinv_cg(y, rtol=0.0)
    assert torch.allclose(x, op.pinv(y), atol=1e-4)
    assert ((op(x) - y).abs().amax() / y.abs().amax()).item() < 1e-4


@pytest.mark.parametrize("kind", WITH_SVD)
@SETTINGS
@given(data=st.data())
def test_implicit_svd(kind: str, data: st.DataObject) -> None:
    """A x = U(s Vt x); V orthogonal; U orthonormal on the range; s = dense singular values; SVD pinv."""
    op = BUILDERS[kind][0](data)
    svd, x, y = op.svd, _signal(op), _measurement(op)
    D = op.signal_dim
    z = torch.randn(3, D, generator=torch.Generator().manual_seed(2))
    assert svd.s.shape == (D,) and bool((svd.s >= 0).all())
    _close(svd.U(svd.s * svd.Vt(x)), op(x))
    _close(svd.V(svd.Vt(x)), x)
    _close(svd.Vt(svd.V(z)), z)
    z_range = z * (svd.s > 1e-6 * svd.s.max())
    _close(svd.Ut(svd.U(z_range)), z_range)
    expected = torch.linalg.svdvals(_dense(op))
    _close(svd.s.sort(descending=True).values[: expected.numel()], expected)
    _close(svd.pinv(y), op.pinv(y), 1e-8)


# --- compositions ---------------------------------------------------------------------------------------


def test_composition_is_linear_only_when_both_parts_are() -> None:
    """Linear o linear is a LinearOperator with the outer noise; a nonlinear part gives a plain Operator."""
    blur = ops.Blur.gaussian((1, 6, 6), 3, 1.0)
    linear = ops.Composition(ops.Downsample((1, 6, 6), 2, sigma_y=0.1), blur)
    assert isinstance(linear, ops.LinearOperator) and linear.linear and linear.sigma_y == 0.1
    assert linear.svd is None
    nonlinear = ops.Composition(ops.PhaseRetrieval((1, 6, 6)), blur)
    assert not nonlinear.linear and not isinstance(nonlinear, ops.LinearOperator)
    x = _signal(blur)
    _close(nonlinear(x), ops.PhaseRetrieval((1, 6, 6))(blur(x)))
    with pytest.raises(PosteriaError, match="outer operator takes"):
        ops.Composition(ops.Downsample((1, 4, 4), 2), blur)


# --- concrete operators -----------------------------------------------------------------------------------


def test_mask_constructors_and_to_image() -> None:
    """Box and half hide the stated pixels on every channel; random keeps round(f H W); to_image refills."""
    box = ops.Mask.box((3, 10, 10), size=4)
    assert box.measurement_shape == (3 * (100 - 16),)
    assert not bool(box.mask[:, 3:7, 3:7].any()) and bool(box.mask[:, :3].all())
    right = ops.Mask.half((1, 6, 7), "right")
    assert bool(right.mask[..., :4].all()) and not bool(right.mask[..., 4:].any())
    rnd = ops.Mask.random((2, 5, 5), 0.4, torch.Generator().manual_seed(0))
    assert rnd.measurement_shape == (20,) and bool((rnd.mask[0] == rnd.mask[1]).all())
    x = _signal(box)
    _close(box.to_image(box(x), fill=-1.0), torch.where(box.mask, x, -1.0))
    _close(box.projection(torch.zeros_like(x), box(x)), x * box.mask)


def test_downsample_pinv_is_nearest_upsampling() -> None:
    """A^+ y = nearest upsampling of y; A^T = A^+ / f^2; singular values 1/f."""
    op = ops.Downsample((1, 4, 6), 2)
    y = torch.arange(6.0).reshape(1, 1, 2, 3)
    up = y.repeat_interleave(2, -2).repeat_interleave(2, -1)
    _close(op.pinv(y), up)
    _close(op.adjoint(y), up / 4)
    assert sorted(set(op.svd.s.tolist())) == [0.0, 0.5]


def test_blur_kernels() -> None:
    """Constructors give normalised kernels; a horizontal motion kernel lies on the centre row."""
    assert math.isclose(float(ops.gaussian_kernel(7, 1.5).sum()), 1.0)
    k = ops.motion_kernel(5, 0.0)
    assert math.isclose(float(k.sum()), 1.0) and math.isclose(float(k[2].sum()), 1.0)
    delta = torch.zeros(1, 1, 7, 7)
    delta[0, 0, 0, 0] = 1
    out = ops.Blur(ops.gaussian_kernel(3, 1.0), (1, 7, 7))(delta)  # the kernel wraps around (0, 0)
    _close(out[0, 0, :2, :2], ops.gaussian_kernel(3, 1.0)[1:, 1:])


def test_mri_masks_and_projection() -> None:
    """Cartesian masks keep whole lines; radial/spiral contain DC; projection replaces measured k-space."""
    mask = ops.SubsampledFourier.cartesian((1, 16, 16), 4.0, 0.125, torch.Generator().manual_seed(0)).mask
    assert bool((mask == mask[0]).all()) and int(mask[0].sum()) == 4 and bool(mask[0, 7:9].all())
    for op in (ops.SubsampledFourier.radial((1, 9, 8), 3), ops.SubsampledFourier.spiral((1, 9, 8), 2.0)):
        assert bool(op.mask[4, 4]) and 1 < int(op.mask.sum()) < 72
    symmetric = torch.zeros(8, 8, dtype=torch.bool)
    symmetric[4, :] = symmetric[:, 4] = True  # lines through DC: a Hermitian-symmetric mask
    op = ops.SubsampledFourier(symmetric, (2, 8, 8))
    x, x0 = _signal(op), _signal(op, seed=5)
    k = torch.fft.fftshift(fft2c(x0), dim=(-2, -1))
    replaced = torch.where(symmetric, torch.fft.fftshift(fft2c(x), dim=(-2, -1)), k)
    expected = torch.fft.ifft2(torch.fft.ifftshift(replaced, dim=(-2, -1)), norm="ortho").real
    _close(op.projection(x0, op(x)), expected)
    _close(op.pinv(op(x)), op.adjoint(op(x)))  # symmetric mask: pinv is the zero-filled inverse
    _close(op.to_kspace(op(x)), torch.where(symmetric, torch.fft.fftshift(fft2c(x), dim=(-2, -1)), 0))


def test_phase_retrieval_is_nonlinear_and_sign_blind() -> None:
    """|F pad(x)| is invariant to x -> -x (unit_range=False), keeps the energy, and is not linear."""
    op = ops.PhaseRetrieval((1, 5, 6), oversampling=2.0, unit_range=False)
    assert op.measurement_shape == (1, 10, 12) and not isinstance(op, ops.LinearOperator)
    x = _signal(op)
    _close(op(-x), op(x))
    _close(flat(op(x)).square().sum(1), flat(x).square().sum(1))


@pytest.mark.parametrize("unit_range", [True, False])
def test_phase_retrieval_knows_its_jacobian_norm(unit_range: bool) -> None:
    """The closed form ``||J||^2`` (1/4 on [-1, 1] images, 1 on raw ones) is what power iteration finds,
    and no direction stretches more (random probes)."""
    from posteria.posterior.daps import jacobian_norm2

    op = ops.PhaseRetrieval((1, 6, 5), unit_range=unit_range)
    x = _signal(op)
    known = op.jacobian_norm2(x)
    assert known.shape == (3,)
    torch.testing.assert_close(jacobian_norm2(op, x, iterations=200), known, rtol=1e-3, atol=0)
    x = x.detach().requires_grad_(True)
    for v in torch.randn(20, *x.shape, generator=torch.Generator().manual_seed(0)):
        (jv,) = torch.autograd.functional.jvp(op, x, v)[1:]
        assert bool((flat(jv).square().sum(1) <= known * flat(v).square().sum(1) * (1 + 1e-9)).all())


_BLUR = ops.Blur.gaussian((1, 6, 6), 3, 1.0)


@pytest.mark.parametrize(
    "op",
    [
        ops.PhaseRetrieval((1, 6, 5)),
        ops.PhaseRetrieval((2, 5, 4), oversampling=1.5, unit_range=False),
        ops.Composition(ops.PhaseRetrieval((1, 6, 6)), _BLUR),
        ops.Composition(ops.SubsampledFourier(torch.arange(36).reshape(6, 6) % 3 == 0, (1, 6, 6)), _BLUR),
    ],
    ids=["phase", "phase-raw", "phase*blur", "mri*blur"],
)
def test_closed_form_pullbacks_are_autograds(op: ops.Operator) -> None:
    """An operator's own ``vjp`` (phase retrieval's closed form, a composition's chain rule) gives the
    value and the ``J^T v`` that autograd through ``A`` gives (``Re(J^H v)`` for complex k-space)."""
    x, v = _signal(op), _measurement(op, seed=2)
    value, pullback = op.vjp(x)
    reference_value, reference_pullback = ops.Operator.vjp(op, x)
    _close(value, reference_value)
    _close(pullback(v), reference_pullback(v))
    assert not value.requires_grad and not pullback(v).requires_grad


def test_phase_retrieval_pullback_is_zero_where_the_spectrum_is() -> None:
    """A black image (``u = 0``) has ``z = 0`` at every frequency: the pullback is 0 there, as autograd's
    subgradient of ``|z|`` is, not 0 / 0."""
    op = ops.PhaseRetrieval((1, 5, 4))
    x, v = -torch.ones(2, 1, 5, 4), _measurement(op, n=2)
    value, pullback = op.vjp(x)
    assert torch.equal(value, torch.zeros_like(value))
    assert torch.equal(pullback(v), torch.zeros_like(x))
    _close(pullback(v), ops.Operator.vjp(op, x)[1](v))


def test_float32_operators_keep_the_dtype() -> None:
    """Built and used in float32, every operator returns float32 (complex64 for k-space)."""
    torch.set_default_dtype(torch.float32)
    try:
        for name in ops.OPERATORS:
            op = ops.get_operator(name, (1, 8, 8))
            y = op.measure(torch.zeros(2, 1, 8, 8))
            assert y.dtype == (torch.complex64 if op.complex_measurement else torch.float32), name
            if op.linear:
                assert op.pinv(y).dtype == torch.float32, name
    finally:
        torch.set_default_dtype(torch.float64)


# --- noise --------------------------------------------------------------------------------------------------


def test_gaussian_noise_statistics_and_likelihood() -> None:
    """Empirical std = sigma_y (each of re and im for complex); log-likelihood = sum of normal densities."""
    noise, g = ops.GaussianNoise(0.3), torch.Generator().manual_seed(0)
    mean = torch.zeros(4, 50_000)
    w = noise.sample(mean, g) - mean
    assert abs(float(w.std()) - 0.3) < 0.003
    wc = noise.sample(torch.zeros(4, 50_000, dtype=torch.complex128), g)
    assert abs(float(wc.real.std()) - 0.3) < 0.003 and abs(float(wc.imag.std()) - 0.3) < 0.003
    y, m = torch.randn(3, 7), torch.randn(3, 7)
    expected = torch.distributions.Normal(m, 0.3).log_prob(y).sum(1)
    _close(noise.log_likelihood(y, m), expected)


def test_poisson_noise_statistics_and_likelihood() -> None:
    """E[y] = A(x) and Var[y] = 2 (A(x) + 1) / rate; the likelihood is that of the photon counts."""
    noise, g = ops.PoissonNoise(rate=50.0), torch.Generator().manual_seed(0)
    mean = torch.full((2, 100_000), 0.2)
    y = noise.sample(mean, g)
    assert abs(float(y.mean()) - 0.2) < 0.005
    assert abs(float(y.var()) - 2 * 1.2 / 50) / (2 * 1.2 / 50) < 0.02
    y, m = y[:, :5], torch.tensor([[0.1, -1.0, 0.5, 1.0, -0.5]]).expand(2, 5)
    counts = torch.round(50 * (y + 1) / 2)
    expected = torch.distributions.Poisson(50 * (m + 1) / 2).log_prob(counts).sum(1)
    _close(noise.log_likelihood(y, m), expected)


def test_measure_is_reproducible_with_a_seeded_generator() -> None:
    """Same seed, same y; another seed, another y; sigma_y = 0 measures exactly A(x)."""
    op = ops.get_operator("mri4", (1, 8, 8), sigma_y=0.1)
    x = _signal(op)
    y1 = op.measure(x, torch.Generator().manual_seed(3))
    assert torch.equal(y1, op.measure(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(y1, op.measure(x, torch.Generator().manual_seed(4)))
    exact = ops.get_operator("sr2", (1, 8, 8), sigma_y=0.0)
    assert torch.equal(exact.measure(x, torch.Generator()), exact(x))
    assert op.log_likelihood(y1, x).shape == (3,)


@pytest.mark.parametrize("name", ["inpaint-box", "sr4", "cs10", "mri4", "phase"])
def test_a_digit_is_measured_alike_whatever_the_number_of_digits(name: str) -> None:
    """``posteria solve --test-digits 1`` and ``--test-digits 2`` give digit 0 the same y."""
    from posteria.restore import measure

    op = ops.get_operator(name, (1, 8, 8), sigma_y=0.1, generator=torch.Generator().manual_seed(0))
    x = _signal(op)
    assert torch.equal(measure(op, x[:1], seed=5), measure(op, x, seed=5)[:1])
    assert not torch.equal(measure(op, x, seed=5), measure(op, x, seed=6))


# --- registry and bad input ---------------------------------------------------------------------------------


def test_registry_builds_every_name_deterministically() -> None:
    """Each name builds for (3, 16, 16); without a generator the random parts are the same on every call."""
    for name in ops.OPERATORS:
        a, b = ops.get_operator(name, (3, 16, 16)), ops.get_operator(name, (3, 16, 16))
        assert a.name == name and a.sigma_y == 0.05
        x = _signal(a)
        assert a(x).shape == (3, *a.measurement_shape)
        assert torch.equal(a(x), b(x)), name


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 48)])
def test_named_mri_patterns_measure_a_quarter_of_kspace(shape: tuple[int, ...]) -> None:
    """mri4, mri4-radial, -spiral, -random: 4x acceleration (25-29% of k-space) at any image size."""
    for name in ("mri4", "mri4-radial", "mri4-spiral", "mri4-random"):
        fraction = ops.get_operator(name, shape).mask.double().mean().item()
        assert 0.25 <= fraction < 0.29, (name, fraction)


def test_user_mask_builds_an_inpainting_operator_and_goes_with_no_other() -> None:
    mask = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) > 0.5
    op = ops.get_operator("inpaint-mask", (1, 8, 8), sigma_y=0.1, mask=mask)
    assert isinstance(op, ops.Mask) and torch.equal(op.mask[0], mask) and op.sigma_y == 0.1
    _one_line_error(lambda: ops.get_operator("inpaint-mask", (1, 8, 8)), "needs a mask of observed pixels")
    _one_line_error(
        lambda: ops.get_operator("sr2", (1, 8, 8), mask=mask),
        "for operator 'inpaint-mask' or 'mri-mask' only",
    )
    _one_line_error(
        lambda: ops.get_operator("inpaint-mask", (1, 8, 8), mask=mask[:4]), "mask must have shape"
    )


def test_registry_noise_replaces_the_gaussian() -> None:
    op = ops.get_operator("sr2", (1, 8, 8), noise=ops.PoissonNoise(20.0))
    assert isinstance(op.noise, ops.PoissonNoise) and op.noise.rate == 20.0
    _one_line_error(lambda: ops.get_operator("sr2", (1, 8, 8), noise=0.1), "noise must be a NoiseModel")
    for name in ("cs25", "mri4", "phase"):  # no pixel values in [-1, 1] to count photons of
        _one_line_error(
            lambda name=name: ops.get_operator(name, (1, 8, 8), noise=ops.PoissonNoise(20.0)),
            f"operator '{name}' does not measure pixels",
        )


def _one_line_error(fn: Callable[[], object], match: str) -> None:
    with pytest.raises(PosteriaError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def test_bad_input_raises_one_line_naming_the_argument() -> None:
    """Wrong shapes, wrong masks, negative sigma_y, NaN and unknown names give one-line PosteriaErrors."""
    op = ops.Mask.box((1, 8, 8), 4)
    y = op(torch.zeros(2, 1, 8, 8))
    _one_line_error(lambda: op.check_measurement(torch.zeros(2, 1, 8, 8)), r"y must have shape \(B, 48\)")
    _one_line_error(lambda: op.adjoint(torch.zeros(2, 47)), r"y must have shape \(B, 48\), got \(2, 47\)")
    _one_line_error(lambda: op.pinv(torch.zeros(48)), r"y must have shape")
    _one_line_error(lambda: op(torch.zeros(2, 8, 8)), r"x must have shape \(B, 1, 8, 8\)")
    _one_line_error(lambda: op.check_measurement(torch.full_like(y, math.nan)), "y contains NaN")
    _one_line_error(lambda: op.measure(torch.full((1, 1, 8, 8), math.inf)), "x contains NaN")
    _one_line_error(lambda: ops.Mask(torch.ones(7, 8), (1, 8, 8)), r"mask must have shape \(1, 8, 8\) or")
    _one_line_error(lambda: ops.Mask(torch.full((8, 8), 0.5)), "mask must hold only 0 and 1")
    _one_line_error(
        lambda: ops.SubsampledFourier(torch.ones(8, 7), (1, 8, 8)),
        r"mask must have the image.s \(H, W\) = \(8, 8\)",
    )
    _one_line_error(lambda: ops.Identity((3,), sigma_y=-0.1), "sigma_y must be")
    _one_line_error(lambda: ops.GaussianNoise(math.nan), "sigma_y must be")
    _one_line_error(lambda: ops.get_operator("sr2", (1, 8, 8), sigma_y=-1.0), "sigma_y must be")
    _one_line_error(lambda: ops.PoissonNoise(0.0), "rate must be")
    _one_line_error(lambda: ops.get_operator("deblur", (1, 8, 8)), "unknown operator 'deblur'.*inpaint-box")
    _one_line_error(lambda: ops.Downsample((1, 7, 8), 2), "factor must")
    _one_line_error(lambda: ops.Blur(torch.ones(9, 3), (1, 8, 8)), "kernel must")
    _one_line_error(lambda: ops.MatrixOperator(torch.ones(3, 4), shape=(5,)), "shape")
    _one_line_error(lambda: ops.Identity((3,), sigma_y=0.1, noise=ops.PoissonNoise(5.0)), "sigma_y or noise")
    mri = ops.get_operator("mri4", (1, 8, 8))
    _one_line_error(lambda: mri.check_measurement(mri(torch.zeros(1, 1, 8, 8)).real), "y must be complex")
    _one_line_error(
        lambda: ops.get_operator("mri4", (1, 8, 8), 0.0, None).noise.log_likelihood(y, y), "sigma_y > 0"
    )
    _one_line_error(lambda: ops.PoissonNoise(5.0).sample(mri(torch.zeros(1, 1, 8, 8))), "real measurement")


def test_bad_operator_arguments_are_one_line() -> None:
    """Arguments that used to pass silently (a mask keeping nothing, a NaN kernel, a box off the image)
    or end in a Python error (a fractional box size, a negative shape, a list for y)."""
    _one_line_error(lambda: ops.SubsampledFourier(torch.zeros(8, 8), (1, 8, 8)), "keep at least one")
    _one_line_error(lambda: ops.SubsampledFourier(torch.full((8, 8), 0.5), (1, 8, 8)), "hold 0 / 1")
    _one_line_error(lambda: ops.Blur(torch.full((3, 3), math.nan), (1, 8, 8)), "finite and not all zero")
    _one_line_error(lambda: ops.Blur(torch.zeros(3, 3), (1, 8, 8)), "finite and not all zero")
    _one_line_error(lambda: ops.Mask.box((1, 8, 8), 2, center=(20, 3)), "center must lie in the 8x8")
    _one_line_error(lambda: ops.Mask.box((1, 8, 8), 2.5), "size must be a positive integer")
    _one_line_error(lambda: ops.get_operator("denoise", (1, -8, 8)), "event_shape entry must be a positive")
    op = ops.get_operator("sr2", (1, 8, 8))
    _one_line_error(lambda: op.check_measurement([[1.0]]), "y must be a torch.Tensor of shape")


def test_hermitian_coordinates_are_orthonormal_and_their_cached_weights_serve_autograd() -> None:
    """``hermitian_coords(F x)`` is an orthogonal map of real images (Parseval) with inverse
    ``hermitian_spectrum``; weights first built in inference mode still serve a later backward pass."""
    coordinate_weights.cache_clear()
    with torch.inference_mode():
        hermitian_spectrum(torch.randn(2, 5, 6))
    x = torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True)
    z = hermitian_coords(fft2c(x))
    assert torch.allclose(z.norm(), x.norm()) and torch.allclose(
        torch.fft.ifft2(hermitian_spectrum(z), norm="ortho").real, x
    )
    (grad,) = torch.autograd.grad(hermitian_spectrum(z.float()).abs().square().sum(), x)
    assert torch.allclose(grad, 2 * x.detach(), atol=1e-5)


def test_user_kspace_mask_and_matrix_build_their_operators_and_need_their_array() -> None:
    measured = torch.zeros(8, 8, dtype=torch.bool)
    measured[:, 3:6] = True  # three central columns of k-space
    op = ops.get_operator("mri-mask", (1, 8, 8), sigma_y=0.1, mask=measured)
    assert (
        isinstance(op, ops.SubsampledFourier) and op.measurement_shape == (1, 24) and op.complex_measurement
    )
    A = torch.randn(5, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = ops.get_operator("matrix", (1, 8, 8), sigma_y=0.1, matrix=A)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(op(x), x.flatten(1) @ A.T)
    _one_line_error(lambda: ops.get_operator("mri-mask", (1, 8, 8)), "needs a mask of measured frequencies")
    _one_line_error(
        lambda: ops.get_operator("matrix", (1, 8, 8)), r"needs a measurement matrix \(--matrix FILE\)"
    )
    _one_line_error(
        lambda: ops.get_operator("matrix", (1, 8, 8), matrix=torch.ones(5, 63)),
        "A has 63 columns; expected one per entry",
    )
    _one_line_error(
        lambda: ops.get_operator("cs25", (1, 8, 8), matrix=A), "a matrix is for operator 'matrix' only"
    )


# --- audit fixes: each of these passed silently or ended in a raw Python error ---------------------------


def test_an_integer_or_boolean_matrix_gets_the_svd_of_its_values() -> None:
    """An int matrix used to keep its int dtype, so its float64 SVD was truncated (s = [5, 0, 0])."""
    A = torch.tensor([[1, 2, 0], [3, 4, 1]])
    op = ops.MatrixOperator(A)
    assert op.matrix.dtype == torch.get_default_dtype()
    _close(op.svd.s[:2], torch.linalg.svdvals(A.double()))
    y = torch.tensor([[1.0, 2.0]])
    _close(op.pinv(y), (torch.linalg.pinv(A.double()) @ y[0])[None])
    _close(ops.MatrixOperator(A.bool()).svd.s[:2], torch.linalg.svdvals(A.bool().double()))
    _one_line_error(lambda: ops.MatrixOperator(A * 1j), "A must be a real matrix")


def test_a_blur_uses_the_kernel_it_loads() -> None:
    """The spectrum is not saved: it used to stay that of the kernel built with, whatever was loaded."""
    shape, x = (1, 8, 8), _signal(ops.Identity((1, 8, 8)))
    flat_, upright = ops.Blur.motion(shape, 5, angle=0.0), ops.Blur.motion(shape, 5, angle=90.0)
    flat_.load_state_dict(upright.state_dict())
    _close(flat_(x), upright(x))
    down = ops.Downsample(shape, 2)
    outer = ops.Composition(down, ops.Blur.motion(shape, 5, angle=0.0))  # loaded as a submodule too
    outer.load_state_dict(ops.Composition(down, upright).state_dict())
    _close(outer(x), down(upright(x)))


def test_fractional_sizes_are_refused_not_truncated() -> None:
    shape = (1, 10, 10)
    _one_line_error(lambda: ops.Downsample(shape, 2.5), "factor must be a positive integer, got 2.5")
    _one_line_error(lambda: ops.RandomProjection(2.5, shape), "m must be a positive integer, got 2.5")
    _one_line_error(lambda: ops.Blur.gaussian(shape, size=2.5), "size must be a positive integer")
    _one_line_error(lambda: ops.Blur.motion(shape, 2.5), "size must be a positive integer")
    _one_line_error(lambda: ops.SubsampledFourier.radial(shape, 2.5), "n_spokes must be a positive integer")


def test_a_blur_kernel_must_be_real_and_booleans_count_as_ones() -> None:
    """A complex kernel lost its imaginary part with a warning; a boolean one ended in NotImplementedError."""
    shape, x = (1, 6, 6), _signal(ops.Identity((1, 6, 6)))
    _one_line_error(lambda: ops.Blur(torch.ones(3, 3) * (1 + 1j), shape), "kernel must be real")
    ones = ops.Blur(torch.ones(3, 3), shape)
    _close(ops.Blur(torch.ones(3, 3, dtype=torch.bool), shape)(x), ones(x))
    _close(ops.Blur(torch.ones(3, 3, dtype=torch.int64), shape)(x), ones(x))


def test_noise_arguments_are_checked_when_the_operator_is_built() -> None:
    """noise=0.1 used to fail at the first measure; None a raw TypeError; the string "0.1" passed."""
    shape = (1, 4, 4)
    _one_line_error(lambda: ops.Identity(shape, noise=0.1), "noise must be a NoiseModel")
    _one_line_error(lambda: ops.Identity(shape, sigma_y=None), "sigma_y must be a finite number")
    _one_line_error(lambda: ops.Identity(shape, sigma_y="0.1"), "sigma_y must be a finite number")
    _one_line_error(lambda: ops.PoissonNoise(None), "rate must be a finite number")
    _one_line_error(lambda: ops.PoissonNoise("5"), "rate must be a finite number")


def test_poisson_noise_of_a_sample_does_not_depend_on_the_other_samples() -> None:
    """torch.poisson draws as many numbers as the rates ask: sample 0's values moved sample 1's noise."""
    op = ops.Identity((1, 4, 4), noise=ops.PoissonNoise(20.0))
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x2 = x.clone()
    x2[0] = 0.9
    y = op.measure(x, torch.Generator().manual_seed(1))
    assert torch.equal(y[1], op.measure(x2, torch.Generator().manual_seed(1))[1])
    assert torch.equal(y, op.measure(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(y, op.measure(x, torch.Generator().manual_seed(2)))


def test_a_measurement_must_match_its_signal() -> None:
    """Wrong y used to end in a RuntimeError of a subtraction or an index; a batch-1 y was broadcast."""
    box, x = ops.Mask.box((1, 8, 8), 4, sigma_y=0.1), torch.zeros(2, 1, 8, 8)
    _one_line_error(lambda: box.log_likelihood(torch.zeros(2, 47), x), r"y must have shape \(2, 48\)")
    _one_line_error(
        lambda: box.log_likelihood(torch.zeros(1, 48), x), r"y must have shape \(2, 48\), got \(1"
    )
    _one_line_error(lambda: box.projection(x, torch.zeros(2, 47)), r"y must have shape \(2, 48\)")
    _one_line_error(lambda: box.to_image(torch.zeros(2, 47)), r"y must have shape \(B, 48\)")
    _one_line_error(lambda: box.pinv_cg(torch.zeros(2, 47)), r"y must have shape \(B, 48\)")
    mri = ops.get_operator("mri4", (1, 8, 8))
    _one_line_error(lambda: mri.to_kspace(torch.zeros(2, 3, dtype=torch.complex128)), "y must have shape")


def test_constructors_check_their_shapes_and_arguments() -> None:
    """Checks that lived only in the registry, or nowhere: a negative or fractional shape built an
    operator; an infinite oversampling, a fractional box centre, a number for an operator or a generator
    ended in a Python error."""
    shape = (1, 8, 8)
    _one_line_error(lambda: ops.Downsample((1, -8, 8), 2), "shape entry must be a positive integer, got -8")
    _one_line_error(lambda: ops.PhaseRetrieval((1, -8, 8)), "shape entry must be a positive integer, got -8")
    _one_line_error(lambda: ops.Identity((1, 8.7, 8)), "shape entry must be a positive integer, got 8.7")
    _one_line_error(lambda: ops.PhaseRetrieval(shape, oversampling=math.inf), "oversampling must be a finite")
    _one_line_error(lambda: ops.Mask.box(shape, 2, center=(2.5, 3)), r"center must lie in the 8x8 image")
    _one_line_error(lambda: ops.Composition(3, ops.Identity(shape)), "outer must be an Operator, got int")
    _one_line_error(lambda: ops.get_operator("sr2", 28), "event_shape must be a tuple of positive integers")
    op = ops.Identity(shape, sigma_y=0.1)
    _one_line_error(lambda: op.measure(torch.zeros(1, *shape), generator=3), "generator must be a torch.Gen")


def test_every_call_of_a_refuses_an_empty_batch_and_a_complex_signal() -> None:
    """B = 0 passed the shape check and failed in reshapes and FFTs; A(x) took complex x (measure did not)."""
    for name in ("sr2", "mri4", "phase"):
        op = ops.get_operator(name, (1, 8, 8))
        _one_line_error(
            lambda op=op: op(torch.zeros(0, 1, 8, 8)), "x must hold at least one signal, got a batch of 0"
        )
        _one_line_error(
            lambda op=op: op(torch.zeros(1, 1, 8, 8, dtype=torch.complex128)), "x must be real, got"
        )
    box = ops.Mask.box((1, 8, 8), 4)
    _one_line_error(lambda: box.adjoint(torch.zeros(0, 48)), "y must hold at least one measurement")


def test_an_image_too_small_for_the_named_box_says_so() -> None:
    """It used to say "size must be a positive integer, got 0", of a size the user never gave."""
    _one_line_error(lambda: ops.get_operator("inpaint-box", (1, 1, 8)), r"image \(1, 1, 8\) is too small")
