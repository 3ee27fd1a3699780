"""Offline sample quality: Frechet distance on the shipped classifier's features ("FD"), and confidence.

LPIPS and Inception-FID need downloaded networks; posteria instead embeds images with its own digit
classifier (penultimate layer, 128 features) and computes the Frechet distance between Gaussians
fitted to the two feature sets (Heusel et al. 2017):
``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``.
FD values are comparable only between runs with the same classifier and sample sizes.
"""

from __future__ import annotations

import numpy as np
import torch

from posteria.errors import PosteriaError
from posteria.nn import DigitClassifier


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a`` (N, F) and ``b`` (M, F)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise PosteriaError("the Frechet distance needs at least 2 samples in each set")
    a64, b64 = a.double().cpu().numpy(), b.double().cpu().numpy()
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    cov_a, cov_b = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cross))


class SampleQuality:
    """Scores image batches (B, 1, 28, 28) in model space against reference images with a classifier."""

    def __init__(self, classifier: DigitClassifier, batch_size: int = 500) -> None:
        self.classifier = classifier.eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, F), class probabilities (B, K)) of images ``x``."""
        feats = torch.cat([self.classifier.features(c) for c in x.split(self.batch_size)])
        return feats, torch.softmax(self.classifier.head(feats), dim=1)

    def score(self, samples: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        """FD to the reference, mean top-class confidence, and entropy of the predicted class histogram
        (``log 10 = 2.30`` when all ten digits are equally frequent)."""
        feats, probs = self.embed(samples.clamp(-1, 1))
        ref_feats, _ = self.embed(reference)
        hist = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double() / probs.shape[0]
        entropy = float(-(hist[hist > 0] * hist[hist > 0].log()).sum())
        return {
            "fd": frechet_distance(feats, ref_feats),
            "confidence": float(probs.max(1).values.mean()),
            "class_entropy": entropy,
        }


def digit_quality(samples: torch.Tensor, data: str = "mnist") -> dict[str, float] | None:
    """FD, confidence and class entropy of digit samples against the held-out test split of ``data``,
    scored by the shipped classifier; None if the samples are not 28x28 single-channel digits."""
    from posteria.data import load_dataset
    from posteria.priors import load_classifier

    if tuple(samples.shape[1:]) != (1, 28, 28):
        return None
    reference, _ = load_dataset(data, "test")
    return SampleQuality(load_classifier("mnist")).score(samples, reference)
