"""Where work runs: ``auto`` (the CUDA GPU if torch sees one, else the CPU), ``cpu``, ``cuda``, ``cuda:N``."""

from __future__ import annotations

import torch

from posteria.errors import PosteriaError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` stands for; one line if it is not one of :data:`DEVICES` or is not
    available here (a CUDA device on a machine where torch sees no GPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name) if isinstance(name, str) else None
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise PosteriaError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PosteriaError(f"device {name!r} is not available: torch sees no CUDA GPU (use cpu or auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise PosteriaError(
            f"device {name!r} is not available: torch sees {torch.cuda.device_count()} GPU(s)"
        )
    return device
