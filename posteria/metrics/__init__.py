"""Metrics: offline sample quality (classifier Frechet distance)."""

from posteria.metrics.quality import SampleQuality, frechet_distance

__all__ = ["SampleQuality", "frechet_distance"]
