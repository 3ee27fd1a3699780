"""Backbones: they map ``(x, c_noise, labels)`` to a tensor shaped like ``x`` and know no schedule."""

import torch
from torch import nn

from posteria.errors import check_choice
from posteria.nn.classifier import ClassifierConfig, DigitClassifier
from posteria.nn.mlp import MLP, MLPConfig
from posteria.nn.unet import UNet, UNetConfig

BACKBONES = {"unet": (UNet, UNetConfig), "mlp": (MLP, MLPConfig)}


def build_backbone(arch: str, config: dict) -> nn.Module:
    """Instantiate backbone ``arch`` ("unet" or "mlp") from a config dict, in channels-last layout."""
    model_cls, config_cls = BACKBONES[check_choice("architecture", arch, list(BACKBONES))]
    return channels_last(model_cls(config_cls.from_dict(config)))


def channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D (convolution) weights in channels-last layout, in place; returned.

    Why: oneDNN's convolutions run faster on it (the shipped UNet's forward 1.40-1.47x and forward +
    backward 1.31-1.39x faster at batch 16-64 on one CPU thread; ``posteria bench speed`` measures both
    layouts, BENCHMARKS.md has the numbers), and a convolution with channels-last weights computes in
    that layout whatever its input's, so callers change nothing. Outputs agree with the contiguous layout
    to float32 rounding. A no-op for modules without 4-D weights (the MLP). Saving makes weights
    contiguous again.
    """
    return model.to(memory_format=torch.channels_last)


__all__ = [
    "MLP",
    "BACKBONES",
    "ClassifierConfig",
    "DigitClassifier",
    "MLPConfig",
    "UNet",
    "UNetConfig",
    "channels_last",
]
