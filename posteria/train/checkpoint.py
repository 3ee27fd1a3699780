"""Checkpoints: safetensors weights (model, EMA, optimizer state) plus a JSON state, written atomically.

Layout of a checkpoint folder::

    weights.safetensors     model.* and ema.* tensors
    optimizer.safetensors   AdamW moments as "<param index>.<name>"
    state.json              step, config, optimizer hyper-parameters

Every file is written to a temporary name and renamed into place, and ``state.json`` is written last,
so a folder with a ``state.json`` is always complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from posteria.errors import PosteriaError
from posteria.io import atomic_write_bytes, atomic_write_text


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None):
    """Write a safetensors file atomically (tensors made contiguous and detached)."""
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def save_json(obj: dict, path: Path) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors and JSON-able hyper-parameters."""
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()}
    return tensors, {"param_groups": state["param_groups"]}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    folder: Path, model, ema, optimizer, step: int, config: dict, meta: dict | None = None
) -> Path:
    """Save model, EMA and optimizer state at ``step`` into ``folder`` (created if needed); ``meta``
    (the command, the accumulated wall time) goes into state.json unchanged."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {f"model.{k}": v for k, v in model.state_dict().items()}
    weights |= {f"ema.{k}": v for k, v in ema.model.state_dict().items()}
    save_tensors(weights, folder / "weights.safetensors")
    opt_tensors, opt_meta = optimizer_tensors(optimizer)
    save_tensors(opt_tensors, folder / "optimizer.safetensors")
    state = {"step": step, "config": config, "optimizer": opt_meta, "meta": meta or {}}
    save_json(state, folder / "state.json")
    return folder


def read_state(folder: Path) -> dict:
    """The JSON state of a checkpoint folder; PosteriaError if it is missing or unreadable."""
    path = Path(folder) / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PosteriaError(f"checkpoint {folder} has no readable state.json ({e.__class__.__name__})") from e


def load_checkpoint(folder: Path, model, ema, optimizer) -> int:
    """Restore model, EMA and optimizer from ``folder``; returns the step to continue from."""
    state = read_state(folder)
    weights = load_file(Path(folder) / "weights.safetensors")
    model.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
    ema.model.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("ema.")})
    load_optimizer(optimizer, load_file(Path(folder) / "optimizer.safetensors"), state["optimizer"])
    return int(state["step"])
