"""PSNR, SSIM and data consistency against their definitions."""

import math

import pytest
import torch

from posteria.metrics.image import consistency, psnr, ssim
from posteria.operators import Identity


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


def blob(batch: int, margin: int, generator: torch.Generator, size: int = 16) -> torch.Tensor:
    """Random shapes on a black background (-1) with a margin, like digits: (B, 1, size, size)."""
    x = torch.full((batch, 1, size, size), -1.0, dtype=torch.float64)
    inner = size - 2 * margin
    x[..., margin:-margin, margin:-margin] = torch.rand(batch, 1, inner, inner, generator=generator).double()
    return x


def test_phase_retrieval_equivalents_measure_as_the_image_does():
    """|F pad(u)| is blind to the 180-degree rotation and to translations that keep the image in frame;
    ``equivalents`` yields those and ones that push content out (which measure differently)."""
    from posteria.operators.phase import PhaseRetrieval, translate

    x = blob(2, margin=2, generator=torch.Generator().manual_seed(0))
    op = PhaseRetrieval((1, 16, 16), sigma_y=0.05)
    exact = [translate(v, dy, dx, -1.0) for v in (x, x.flip((-2, -1))) for dy, dx in ((0, 0), (2, -1))]
    for v in exact:
        torch.testing.assert_close(op(v), op(x), rtol=0, atol=1e-12)
    candidates = list(op.equivalents(x))
    assert len(candidates) == 2 * 9 * 9  # a quarter of 16: shifts -4..4
    assert any(torch.equal(c, exact[3]) for c in candidates)
    moved = torch.tensor([float((op(c) - op(x)).norm()) for c in candidates])
    assert int((moved < 1e-10).sum()) == 2 * 5 * 5 and float(moved.max()) > 1.0  # shifts -2..2 keep it


def test_aligned_scores_phase_retrieval_up_to_its_ambiguities_and_nothing_more():
    """A rotated, shifted truth scores as the truth itself; an image whose equivalents all measure
    differently (grey everywhere) is left as it is; a linear operator never moves a sample."""
    from posteria.metrics.image import aligned, aligned_samples
    from posteria.operators import get_operator
    from posteria.operators.phase import PhaseRetrieval, translate

    truth = blob(3, margin=4, generator=torch.Generator().manual_seed(1))
    op = PhaseRetrieval((1, 16, 16), sigma_y=0.05)
    assert op.ambiguities == "180-degree rotation and translation"
    twisted = translate(truth.flip((-2, -1)), -2, 1, -1.0)
    assert float(psnr(twisted, truth).max()) < 20
    torch.testing.assert_close(aligned(op, twisted, truth), truth)
    grey = torch.zeros_like(truth)  # every translation brings in background: another measurement
    assert torch.equal(aligned(op, grey, truth), grey)
    samples = torch.stack([twisted, truth], dim=1)  # (3, 2, 1, 16, 16)
    torch.testing.assert_close(aligned_samples(op, samples, truth), torch.stack([truth, truth], dim=1))
    linear = get_operator("inpaint-box", (1, 16, 16), sigma_y=0.05)
    assert linear.ambiguities is None and torch.equal(aligned(linear, twisted, truth), twisted)


def test_restore_registers_phase_retrieval_samples_to_the_truth_or_the_first_sample(monkeypatch):
    """``restore`` on phase retrieval, with a sampler that draws the truth, its rotation and a translation:
    with the truth all three become the truth; without, each becomes its equivalent nearest to the
    measurement's first sample (here the rotation); a linear operator's samples are untouched."""
    from types import SimpleNamespace

    import posteria.restore as restoring
    from posteria.operators import get_operator
    from posteria.operators.phase import translate
    from posteria.posterior.base import BatchedRun

    truth = blob(2, margin=4, generator=torch.Generator().manual_seed(2))
    rotated = truth.flip((-2, -1))
    drawn = torch.stack([rotated, truth, translate(truth, 2, -3, -1.0)], dim=1)  # (2, 3, 1, 16, 16)
    runner = SimpleNamespace(nfe=5, vjps=0)
    monkeypatch.setattr(restoring, "solve_in_batches", lambda *args, **kw: BatchedRun(drawn, [runner], 1.0))
    op = get_operator("phase", (1, 16, 16), sigma_y=0.05)
    y = op(truth)
    with_truth = restoring.restore(None, op, y, "daps", truth=truth)
    torch.testing.assert_close(with_truth.samples, truth[:, None].expand_as(drawn), rtol=0, atol=0)
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
        and torch.equal(plain.samples, drawn)
        and "up_to" not in plain.metrics(box)
    )
