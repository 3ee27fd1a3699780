"""Schedules and time grids: monotonicity, closed forms, DDPM's discrete schedule, derivatives, grids."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posteria.errors import PosteriaError
from posteria.noise import EDM, GRIDS, VE, Schedule, VPCosine, VPLinear, get_schedule, time_grid

F64 = torch.float64
SCHEDULES = [VPLinear(), VPCosine(), VE(), EDM(), VE(sigma_max=1.0)]
ids = pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
DENSE = torch.linspace(0, 1, 2001, dtype=F64)


def exact(schedule: Schedule, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha_t, sigma_t)`` in the dtype of ``t`` (``alpha_sigma`` itself; see the float64 test below)."""
    return schedule.alpha_sigma(t)


@ids
def test_alpha_decreases_and_ratio_increases(schedule):
    alpha, sigma = exact(schedule, DENSE)
    assert (alpha.diff() <= 0).all() and (alpha > 0).all() and (sigma >= 0).all()
    assert sigma[0] == 0 and float(alpha[0]) == pytest.approx(1.0)
    assert ((sigma / alpha).diff() > 0).all()


@ids
@settings(max_examples=30, deadline=None)
@given(a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_ratio_is_monotone_on_random_pairs(schedule, a, b):
    lo, hi = sorted((a, b))
    r = schedule.ratio(torch.tensor([lo, hi], dtype=F64))
    assert r[0] <= r[1]


@pytest.mark.parametrize("schedule", [VPLinear(), VPCosine()], ids=repr)
def test_variance_preserving(schedule):
    alpha, sigma = exact(schedule, DENSE)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(DENSE), rtol=0, atol=1e-12)


def test_ve_and_edm_have_unit_alpha_and_linear_sigma():
    for schedule in (VE(sigma_max=80.0), EDM(sigma_max=80.0)):
        alpha, sigma = exact(schedule, DENSE)
        assert (alpha == 1).all()
        torch.testing.assert_close(sigma, 80.0 * DENSE)


def test_vp_linear_matches_ddpm_discrete_schedule():
    """Continuous VPLinear at t = i / 1000 against DDPM's prod_{j<=i} (1 - beta_j), betas linspace(1e-4,
    0.02, 1000). Measured: max |alpha_bar - prod| = 8.1e-4 (at i = 141); the relative gap grows to 7% at
    i = 1000 where alpha_bar is 4e-5 (the dropped beta^2 / 2 term of log(1 - beta)); sigma at i = 1 is
    0.01049 against DDPM's 0.01 (the continuous beta(t) is integrated from 0 rather than sampled)."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    alpha, _ = exact(VPLinear(), torch.arange(1, 1001, dtype=F64) / 1000)
    gap = (alpha**2 - alpha_bar).abs()
    assert float(gap.max()) < 1e-3
    assert float((alpha[:500] ** 2 / alpha_bar[:500] - 1).abs().max()) < 7e-3


TIMES = st.lists(st.floats(0.02, 0.98), min_size=1, max_size=16)


@ids
@settings(max_examples=10, deadline=None)
@given(t=TIMES)
def test_derivatives_match_finite_differences(schedule, t):
    h = 1e-6
    tt = torch.tensor(t, dtype=F64)
    alpha, sigma, dalpha, dsigma = schedule.derivatives(tt)
    (a_plus, s_plus), (a_minus, s_minus) = exact(schedule, tt + h), exact(schedule, tt - h)
    torch.testing.assert_close((alpha, sigma), exact(schedule, tt))
    torch.testing.assert_close(dalpha, (a_plus - a_minus) / (2 * h), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dsigma, (s_plus - s_minus) / (2 * h), rtol=1e-6, atol=1e-7)


@ids
@settings(max_examples=10, deadline=None)
@given(t=TIMES)
def test_time_of_ratio_inverts_ratio(schedule, t):
    tt = torch.tensor(t, dtype=F64)
    r = schedule.ratio(tt).to(F64)
    torch.testing.assert_close(schedule.time_of_ratio(r), tt, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("schedule", [VPLinear(), VPLinear(0.0, 20.0), VPLinear(1.0, 1.0)], ids=repr)
def test_vp_linear_closed_form_time_of_ratio_is_the_bisection(schedule):
    """The closed form agrees with the base class's bisection, clamped alike outside ``[r_0, r_1]``."""
    r = torch.cat([torch.zeros(1, dtype=F64), torch.logspace(-4, 3, 200, dtype=F64)])
    torch.testing.assert_close(
        schedule.time_of_ratio(r), Schedule.time_of_ratio(schedule, r), atol=1e-13, rtol=0
    )
    ends = schedule.time_of_ratio(torch.tensor([0.0, 1e6, 1e200, math.inf, math.nan], dtype=F64))
    assert ends[:4].tolist() == [0.0, 1.0, 1.0, 1.0] and ends[4].isnan()


def test_schedule_call_keeps_float64():
    alpha, sigma = VPLinear()(torch.tensor([0.3], dtype=F64))
    assert alpha.dtype == F64 and sigma.dtype == F64


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3))
def test_schedule_keeps_the_shape_of_t(shape):
    t = torch.rand(shape, dtype=F64)
    for schedule in SCHEDULES:
        alpha, sigma = schedule(t)
        assert alpha.shape == sigma.shape == t.shape


def test_get_schedule_by_name_and_bad_name():
    assert isinstance(get_schedule("vp"), VPLinear) and isinstance(get_schedule("edm"), EDM)
    assert get_schedule("ve", sigma_max=1.0).sigma_max == 1.0
    with pytest.raises(PosteriaError, match="unknown schedule"):
        get_schedule("linear")


# ---------------------------------------------------------------- time grids


@pytest.mark.parametrize("spacing", GRIDS)
@pytest.mark.parametrize("schedule", [VPLinear(), VPCosine(), EDM()], ids=repr)
@pytest.mark.parametrize("steps", [2, 3, 18, 50])
def test_time_grid_shape_ends_and_order(schedule, spacing, steps):
    times = time_grid(schedule, steps, spacing)
    assert times.shape == (steps + 1,)
    assert times[0] == 1.0 and times[-1] == 0.0
    assert float(times[-2]) == pytest.approx(schedule.t_min, rel=1e-6)
    assert (times.diff() < 0).all()


def test_reverse_quadratic_grid_is_diffpirs_quad_skip():
    """DiffPIR's code visits DDPM timesteps ``T - 1 - floor(sqrt(i / (n - 1)) T)``: uniform in
    ``(1 - t)^2``."""
    times = time_grid(VPLinear(), 100, "reverse-quadratic", t_min=1e-3)[:-1].double()
    torch.testing.assert_close((1 - times) ** 2, torch.linspace(0, (1 - 1e-3) ** 2, 100, dtype=torch.float64))
    paper = [999 - int((i / 99) ** 0.5 * 1000) for i in range(99)]  # all but the last, which is shifted
    assert [round(float(t) * 1000) - 1 for t in times[:-1]] == pytest.approx(paper, abs=1)


@settings(max_examples=25, deadline=None)
@given(steps=st.integers(2, 200), t_min=st.floats(1e-4, 0.5), spacing=st.sampled_from(GRIDS))
def test_time_grid_random_steps_and_t_min(steps, t_min, spacing):
    times = time_grid(VPLinear(), steps, spacing, t_min=t_min)
    assert times.shape == (steps + 1,) and times[0] == 1.0 and times[-1] == 0.0
    assert float(times[-2]) == pytest.approx(t_min, rel=1e-6)
    assert (times.diff() < 0).all()


def test_uniform_grid_with_1000_steps_visits_ddpm_times_exactly():
    times = time_grid(VPLinear(), 1000, "uniform", t_min=1e-3)
    expected = (torch.arange(1000, 0, -1, dtype=F64) / 1000).to(times.dtype)
    assert torch.equal(times[:-1], expected)


def test_karras_grid_is_uniform_in_ratio_to_the_one_over_rho():
    schedule, rho = EDM(), 7.0
    r = schedule.ratio(time_grid(schedule, 18, "karras", rho=rho)[:-1].to(F64)) ** (1 / rho)
    torch.testing.assert_close(r.diff(), r.diff().mean().expand(17), rtol=1e-4, atol=0)


@pytest.mark.parametrize("schedule", [VPLinear(), VPCosine(), EDM()], ids=["vp", "cosine", "edm"])
def test_log_grid_is_geometric_in_the_ratio_from_end_to_end(schedule) -> None:
    """``log``: ``r_t`` falls by the same factor at every step, from ``r(1)`` to ``r(t_min)``; one step
    is ``[1, 0]``."""
    assert time_grid(schedule, 1, "log").tolist() == [1.0, 0.0]
    times = time_grid(schedule, 40, "log")
    r = schedule.ratio(times[:-1].to(F64)).log()
    torch.testing.assert_close(r.diff(), r.diff().mean().expand(39), rtol=1e-4, atol=0)
    ends = schedule.ratio(torch.tensor([1.0, schedule.t_min], dtype=F64)).log()
    torch.testing.assert_close(r[[0, -1]], ends, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 10, "spacing": "linear"}, "unknown time spacing"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"steps": -3}, "steps must be a positive integer"),
        ({"steps": 10, "t_min": 0.0}, "t_min must lie in"),
        ({"steps": 10, "t_min": 1.5}, "t_min must lie in"),
    ],
)
def test_time_grid_rejects_bad_arguments(kwargs, match):
    with pytest.raises(PosteriaError, match=match):
        time_grid(VPLinear(), **kwargs)
