"""Backbones: they map ``(x, c_noise, labels)`` to a tensor shaped like ``x`` and know no schedule."""

from torch import nn

from posteria.errors import check_choice
from posteria.nn.classifier import ClassifierConfig, DigitClassifier
from posteria.nn.mlp import MLP, MLPConfig
from posteria.nn.unet import UNet, UNetConfig

BACKBONES = {"unet": (UNet, UNetConfig), "mlp": (MLP, MLPConfig)}


def build_backbone(arch: str, config: dict) -> nn.Module:
    """Instantiate backbone ``arch`` ("unet" or "mlp") from a config dict."""
    model_cls, config_cls = BACKBONES[check_choice("architecture", arch, list(BACKBONES))]
    return model_cls(config_cls.from_dict(config))


__all__ = ["MLP", "BACKBONES", "ClassifierConfig", "DigitClassifier", "MLPConfig", "UNet", "UNetConfig"]
