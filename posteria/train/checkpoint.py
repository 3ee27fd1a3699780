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
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from posteria.errors import PosteriaError
from posteria.io import atomic_write_bytes, atomic_write_text


def save_tensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write a safetensors file atomically (tensors detached, on the CPU and contiguous)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def save_json(obj: dict, path: Path) -> None:
    """Write JSON atomically; NaN and infinite numbers, which JSON lacks, are written as null."""
    atomic_write_text(path, json.dumps(_strict(obj), indent=2, allow_nan=False) + "\n")


def _strict(value: object) -> object:
    """``value`` with every non-finite float (nested in dicts and lists) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors and JSON-able hyper-parameters."""
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()}
    return tensors, {"param_groups": state["param_groups"]}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_tensors` (JSON turned tuples such as AdamW's betas into lists)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    folder: Path, model, ema, optimizer, step: int, config: dict, meta: dict | None = None
) -> Path:
    """Save model, EMA and optimizer state at ``step`` into ``folder``; ``meta`` (the command, the
    accumulated wall time) goes into state.json unchanged.

    The three files are written into a sibling staging folder that then replaces ``folder`` by two
    renames, so ``folder``, whenever it exists, holds one consistent checkpoint, never a mix of two.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.new-"))
    try:
        weights = {f"model.{k}": v for k, v in model.state_dict().items()}
        weights |= {f"ema.{k}": v for k, v in ema.model.state_dict().items()}
        save_tensors(weights, staging / "weights.safetensors")
        opt_tensors, opt_meta = optimizer_tensors(optimizer)
        save_tensors(opt_tensors, staging / "optimizer.safetensors")
        state = {"step": step, "config": config, "optimizer": opt_meta, "meta": meta or {}}
        save_json(state, staging / "state.json")
        _swap_in(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _swap_in(staging: Path, folder: Path) -> None:
    """Replace ``folder`` by ``staging``: move the old one aside, move the new one in, delete the old."""
    old = folder.parent / f".{folder.name}.old-{staging.name.rsplit('-', 1)[-1]}"
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


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
