"""Frechet distance against its closed form, and the classifier-based quality score."""

import numpy as np
import pytest
import torch

from posteria.errors import PosteriaError
from posteria.metrics.quality import SampleQuality, frechet_distance
from posteria.nn import ClassifierConfig, DigitClassifier


def gaussian_fd(mu_a, cov_a, mu_b, cov_b) -> float:
    """The closed form via scipy's general matrix square root (an independent route)."""
    from scipy.linalg import sqrtm

    cross = sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * cross))


def test_frechet_distance_matches_closed_form_on_large_samples():
    g = torch.Generator().manual_seed(0)
    d = 4
    A, B = (
        torch.randn(d, d, generator=g, dtype=torch.float64),
        torch.randn(d, d, generator=g, dtype=torch.float64),
    )
    mu_a, mu_b = torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    a = mu_a + torch.randn(200_000, d, generator=g, dtype=torch.float64) @ A.T
    b = mu_b + torch.randn(200_000, d, generator=g, dtype=torch.float64) @ B.T
    expected = gaussian_fd(mu_a.numpy(), (A @ A.T).numpy(), mu_b.numpy(), (B @ B.T).numpy())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_frechet_distance_of_a_set_to_itself_is_zero_and_symmetric():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(500, 8, generator=g), torch.randn(400, 8, generator=g) + 0.3
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)


def test_frechet_distance_needs_two_samples():
    with pytest.raises(PosteriaError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))


def test_sample_quality_reports_fd_confidence_and_entropy():
    torch.manual_seed(0)
    quality = SampleQuality(DigitClassifier(ClassifierConfig(channels=8, features=16)))
    x = torch.rand(40, 1, 28, 28) * 2 - 1
    scores = quality.score(x, x)
    assert scores["fd"] == pytest.approx(0.0, abs=1e-6)
    assert 0.1 <= scores["confidence"] <= 1.0
    assert 0.0 <= scores["class_entropy"] <= np.log(10) + 1e-9
