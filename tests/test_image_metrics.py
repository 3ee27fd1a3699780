"""PSNR, SSIM and data consistency against their definitions."""

import math

import pytest
import torch

from posteria.metrics.image import consistency, psnr, ssim
from posteria.operators import Identity, get_operator
from posteria.operators.phase import PhaseRetrieval
from posteria.operators.registration import translate_each


def test_psnr_of_a_known_error():
    x = torch.zeros(2, 1, 8, 8)
    noisy = x + 0.2  # 0.1 on the [0, 1] scale: MSE 0.01, PSNR 20 dB
    torch.testing.assert_close(psnr(noisy, x), torch.full((2,), 20.0))


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g) * 2 - 1
    torch.testing.assert_close(ssim(x, x), torch.ones(3))
    noisy = x + 0.3 * torch.randn(x.shape, generator=g)
    assert (ssim(noisy, x) < 0.95).all()


def test_ssim_matches_the_global_formula_for_constant_windows():
    """For a window as large as the image, SSIM reduces to the global formula on the Gaussian-weighted
    statistics; with constant images it is (2 m_a m_b + C1) / (m_a^2 + m_b^2 + C1)."""
    a = torch.full((1, 1, 11, 11), 0.0, dtype=torch.float64)  # 0.5 on [0, 1]
    b = torch.full((1, 1, 11, 11), 0.5, dtype=torch.float64)  # 0.75 on [0, 1]
    ma, mb, c1 = 0.5, 0.75, 0.01**2
    expected = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
    assert float(ssim(a, b)) == pytest.approx(expected, rel=1e-10)


def test_consistency_is_one_for_the_noise_level():
    g = torch.Generator().manual_seed(1)
    op = Identity((1, 16, 16), sigma_y=0.1)
    x = torch.rand(64, 1, 16, 16, generator=g) * 2 - 1
    y = op.measure(x, g)
    assert float(consistency(op, x, y).mean()) == pytest.approx(1.0, abs=0.02)
    assert math.isclose(float(consistency(op, x, op(x)).max()), 0.0, abs_tol=1e-6)


@pytest.mark.parametrize("operator", ["mri4", "poisson"])
def test_consistency_is_one_for_complex_and_poisson_noise(operator):
    """Complex k-space counts real and imaginary parts; Poisson scales by its own std at A x."""
    from posteria.operators import get_operator
    from posteria.operators.mask import Mask
    from posteria.operators.noise_models import PoissonNoise

    g = torch.Generator().manual_seed(2)
    if operator == "poisson":
        op = Mask.box((1, 16, 16), 4, noise=PoissonNoise(200))
    else:
        op = get_operator(operator, (1, 16, 16), sigma_y=0.1, generator=g)
    x = torch.rand(64, 1, 16, 16, generator=g) * 1.6 - 0.8  # intensities well above one count
    assert float(consistency(op, x, op.measure(x, g)).mean()) == pytest.approx(1.0, abs=0.03)


def test_consistency_without_noise_is_one_line():
    from posteria.errors import PosteriaError

    op = Identity((1, 4, 4), sigma_y=0.0)
    with pytest.raises(PosteriaError, match="needs measurement noise"):
        consistency(op, torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def translate(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """The reference for ``translate_each``: every image of ``x`` (..., H, W) moved down by ``dy`` and right
    by ``dx``, by slicing."""
    out = torch.full_like(x, fill)
    H, W = x.shape[-2:]
    if abs(dy) < H and abs(dx) < W:
        target = (..., slice(max(dy, 0), H + min(dy, 0)), slice(max(dx, 0), W + min(dx, 0)))
        out[target] = x[..., max(-dy, 0) : H + min(-dy, 0), max(-dx, 0) : W + min(-dx, 0)]
    return out


def test_translate_each_moves_every_image_by_its_own_shift():
    """Shifts in and beyond the frame, on (B, H, W) and (B, C, H, W) images, against slicing."""
    g = torch.Generator().manual_seed(5)
    shifts = torch.tensor([[0, 0], [2, -3], [-4, 5], [6, 1], [-1, -7]])
    for shape in ((5, 6, 7), (5, 3, 6, 7)):
        x = torch.randn(*shape, generator=g)
        expected = torch.stack([translate(x[i], dy, dx, -1.0) for i, (dy, dx) in enumerate(shifts.tolist())])
        assert torch.equal(translate_each(x, shifts, -1.0), expected)


def test_registration_maps_every_shift_as_translating_one_at_a_time_does():
    """The FFT maps against brute force over every shift of a (2, 2, 5, 7) pair: the kept energy, the
    cross-correlation, and the nearest shift among those cropping little enough."""
    from posteria.operators.registration import best_translation, cross_correlation, kept_energy

    g = torch.Generator().manual_seed(3)
    a, b = (
        torch.randn(2, 2, 5, 7, generator=g, dtype=torch.float64),
        torch.randn(2, 2, 5, 7, generator=g).double(),
    )
    shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-6, 7)]
    moved = torch.stack([translate(a, dy, dx, 0.0) for dy, dx in shifts], dim=1)  # (2, 117, 2, 5, 7)
    kept = moved.square().flatten(2).sum(2).reshape(2, 9, 13)
    torch.testing.assert_close(kept_energy(a), kept)
    correlation = (moved * b[:, None]).flatten(2).sum(2).reshape(2, 9, 13)
    torch.testing.assert_close(cross_correlation(a, b), correlation)
    allowed = torch.tensor([1.0, 8.0], dtype=torch.float64)
    distance, found = best_translation(a, b, allowed)
    brute = (moved - b[:, None]).square().flatten(2).sum(2)
    cropped = a.square().flatten(1).sum(1)[:, None] - moved.square().flatten(2).sum(2)
    brute = brute.masked_fill(cropped > allowed[:, None], torch.inf)
    torch.testing.assert_close(distance, brute.min(1).values)
    assert [tuple(d) for d in found.tolist()] == [shifts[k] for k in brute.argmin(1).tolist()]


def picture(margin: int, background: float = -1.0, shape: tuple[int, ...] = (1, 16, 16)) -> torch.Tensor:
    """Two random images (2, *shape), float64, on ``background`` with a margin of that many pixels."""
    truth = torch.full((2, *shape), background, dtype=torch.float64)
    inner = [n - 2 * margin for n in shape[-2:]]
    g = torch.Generator().manual_seed(4)
    truth[..., margin:-margin, margin:-margin] = torch.rand(2, *shape[:-2], *inner, generator=g).double()
    return truth


def test_phase_retrieval_is_blind_to_rotation_and_to_translations_within_the_frame():
    """|F pad(u)| keeps the 180-degree rotation and translations that keep the image in frame exactly, and
    changes by at most c ||cropped|| otherwise (the bound behind ``nearest_equivalent``)."""
    op, x = PhaseRetrieval((1, 16, 16), sigma_y=0.05), picture(margin=2)
    for v in (x.flip((-2, -1)), translate(x, 2, -1, -1.0), translate(x.flip((-2, -1)), -2, 2, -1.0)):
        torch.testing.assert_close(op(v), op(x), rtol=0, atol=1e-12)
    for dy, dx in ((4, 0), (-3, 5), (0, -6)):
        cropped = ((x + 1) / 2).square().sum((1, 2, 3)) - ((translate(x, dy, dx, -1.0) + 1) / 2).square().sum(
            (1, 2, 3)
        )
        change = (op(translate(x, dy, dx, -1.0)) - op(x)).flatten(1).norm(dim=1)
        assert bool((cropped > 0).all()) and bool((change <= cropped.sqrt() + 1e-12).all())


@pytest.mark.parametrize(
    ("unit_range", "shape", "move"),
    [(True, (1, 16, 16), (-2, 1)), (False, (1, 16, 16), (3, -2)), (True, (3, 12, 24), (1, -7))],
    ids=["unit-range", "signed", "colour-wide"],
)
def test_aligned_undoes_the_ambiguities_of_phase_retrieval_and_nothing_more(unit_range, shape, move):
    """A rotated (negated, without ``unit_range``), translated truth is registered back onto the truth,
    a 7-pixel move along the long side of a 12 x 24 image included; an image whose moves all crop content
    (grey everywhere) stays; a linear operator moves nothing."""
    from posteria.metrics.image import aligned, aligned_samples

    background = -1.0 if unit_range else 0.0
    op = PhaseRetrieval(shape, unit_range=unit_range, sigma_y=0.05)
    truth = picture(4 if shape[-1] == 16 else 2, background, shape)
    if shape[-1] == 24:  # content in columns 4-13 only: room to move 7 pixels along the long side
        truth[..., :, 2:] = truth[..., :, :-2].clone()
        truth[..., :, 14:] = background
    twisted = translate(truth.flip((-2, -1)) * (1 if unit_range else -1), *move, background)
    torch.testing.assert_close(op(twisted), op(truth), rtol=0, atol=1e-9)  # an exact equivalent
    assert float(psnr(twisted, truth).max()) < 25
    torch.testing.assert_close(aligned(op, twisted, truth), truth)
    grey = torch.full_like(truth, 0.3)
    assert torch.equal(aligned(op, grey, truth), grey)
    samples = torch.stack([twisted, truth], dim=1)
    torch.testing.assert_close(aligned_samples(op, samples, truth), torch.stack([truth, truth], dim=1))
    assert op.ambiguities == ("" if unit_range else "sign, ") + "180-degree rotation and translation"
    linear = get_operator("inpaint-box", shape, sigma_y=0.05)
    assert linear.ambiguities is None and torch.equal(aligned(linear, twisted, truth), twisted)


def test_restore_registers_phase_retrieval_samples_to_the_truth_or_the_first_sample(monkeypatch):
    """``restore`` on phase retrieval, with a sampler that draws the truth, its rotation and a translation:
    with the truth all three become the truth; without, each becomes its equivalent nearest to the
    measurement's first sample (here the rotation); a linear operator's samples are untouched."""
    from types import SimpleNamespace

    import posteria.restore as restoring
    from posteria.operators import get_operator
    from posteria.posterior.base import BatchedRun

    truth = picture(margin=4)
    rotated = truth.flip((-2, -1))
    drawn = torch.stack([rotated, truth, translate(truth, 2, -3, -1.0)], dim=1)  # (2, 3, 1, 16, 16)
    runner = SimpleNamespace(nfe=5, vjps=0)
    monkeypatch.setattr(restoring, "solve_in_batches", lambda *args, **kw: BatchedRun(drawn, [runner], 1.0))
    op = get_operator("phase", (1, 16, 16), sigma_y=0.05)
    y = op(truth)
    with_truth = restoring.restore(None, op, y, "daps", truth=truth)
    torch.testing.assert_close(with_truth.samples, truth[:, None].expand_as(drawn), rtol=0, atol=0)
    assert torch.equal(with_truth.drawn, drawn)  # kept for the data consistency, which is the sampler's
    metrics = with_truth.metrics(op)
    assert metrics["up_to"] == "180-degree rotation and translation" and metrics["registered_to"] == "truth"
    assert metrics["psnr_sample"] >= 100 and abs(metrics["consistency"] - 0.0) < 1e-6
    without = restoring.restore(None, op, y, "daps")
    torch.testing.assert_close(without.samples, rotated[:, None].expand_as(drawn), rtol=0, atol=0)
    assert without.registered_to == "first sample"
    box = get_operator("inpaint-box", (1, 16, 16), sigma_y=0.05)
    plain = restoring.restore(None, box, box(truth), "ddrm", truth=truth)
    assert (
        plain.registered_to is None
        and plain.drawn is None
        and torch.equal(plain.samples, drawn)
        and "up_to" not in plain.metrics(box)
    )


def test_a_translation_is_taken_exactly_when_its_crop_is_within_the_tolerance():
    """A faint top row (0.02 above background) cropped by moving the digit up 5 rows: the move is taken
    at a tolerance of 1.01 x what it crops (in intensity, ``u = (x + 1) / 2``) and refused at 0.99 x (for
    a move of the rotation that crops only background); a tiny tolerance keeps ``x`` however near the
    reference's moves are."""
    x = picture(margin=6)
    x[..., 0, :] = -1.0 + 0.02
    op = PhaseRetrieval((1, 16, 16), sigma_y=0.05)
    reference = translate(x, -5, 0, -1.0)
    cropped = ((x[..., 0, :] + 1) / 2).flatten(1).norm(dim=1)
    torch.testing.assert_close(op.nearest_equivalent(x, reference, 1.01 * cropped), reference)
    refused = op.nearest_equivalent(x, reference, 0.99 * cropped)
    assert not torch.equal(refused, reference)
    assert bool(((op(refused) - op(x)).flatten(1).norm(dim=1) <= 1e-12).all())  # rotated, moved: exact
    assert torch.equal(op.nearest_equivalent(x, torch.full_like(x, -1.0), torch.full((2,), 1e-9)), x)


def test_registration_takes_images_without_a_channel_axis_and_breaks_ties_to_no_move():
    """(B, H, W) signals register like (B, 1, H, W) ones; with the reference halfway between ``x`` and its
    rotation (an exact tie), ``x`` itself is kept."""
    from posteria.metrics.image import aligned

    truth = picture(margin=4)
    flat_op, op = PhaseRetrieval((16, 16), sigma_y=0.05), PhaseRetrieval((1, 16, 16), sigma_y=0.05)
    twisted = translate(truth.flip((-2, -1)), 1, -2, -1.0)
    torch.testing.assert_close(aligned(flat_op, twisted[:, 0], truth[:, 0]), truth[:, 0])
    halfway = (truth + truth.flip((-2, -1))) / 2
    assert torch.equal(aligned(op, truth, halfway), truth)
