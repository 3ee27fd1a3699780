"""Shipped priors, classifiers and regression networks: safetensors weights and a JSON card, no download.

A prior folder holds ``weights.safetensors`` (the EMA weights of the backbone) and ``card.json``::

    {"name", "kind": "prior", "arch", "backbone", "schedule", "parameterisation", "sigma_data",
     "event_shape", "data", "split", "train_steps", "wall_time_s", "command", "metrics", ...}

``load_prior("mnist")`` reads the folder shipped in ``posteria/assets/priors/mnist``; a path to any
folder of that layout works too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from posteria.classical.regression import MaskedRegressor
from posteria.data import load_dataset
from posteria.denoisers.parameterisation import ParameterisedDenoiser, parameterise
from posteria.errors import PosteriaError
from posteria.nn import ClassifierConfig, DigitClassifier, UNetConfig, build_backbone, channels_last
from posteria.noise import get_schedule
from posteria.train.checkpoint import read_state, save_json, save_tensors


def _assets(kind: str) -> Path:
    return Path(str(resources.files("posteria") / "assets" / kind))


def shipped(kind: str = "priors") -> list[str]:
    """Names of the shipped priors (``kind="priors"``) or classifiers (``kind="classifiers"``)."""
    folder = _assets(kind)
    return sorted(p.name for p in folder.iterdir() if (p / "card.json").is_file()) if folder.is_dir() else []


def _resolve(name_or_path: str | Path, kind: str) -> Path:
    """A shipped name or a folder path -> the folder; PosteriaError listing the names otherwise."""
    if str(name_or_path) in shipped(kind):
        return _assets(kind) / str(name_or_path)
    folder = Path(name_or_path)
    if (folder / "card.json").is_file() and (folder / "weights.safetensors").is_file():
        return folder
    names = ", ".join(shipped(kind)) or "none shipped"
    raise PosteriaError(
        f"unknown {kind[:-1]} {str(name_or_path)!r}; expected a shipped name ({names}) or a folder "
        "with card.json and weights.safetensors"
    )


def read_card(name_or_path: str | Path, kind: str = "priors") -> dict:
    """The JSON card of a shipped or saved prior/classifier."""
    return json.loads((_resolve(name_or_path, kind) / "card.json").read_text())


def prior_from_card(card: dict) -> ParameterisedDenoiser:
    """An untrained denoiser with the architecture a card describes."""
    backbone = build_backbone(card["arch"], card["backbone"])
    return parameterise(
        card["parameterisation"],
        backbone,
        get_schedule(card["schedule"]),
        event_shape=tuple(card["event_shape"]),
        sigma_data=card["sigma_data"],
    )


def load_prior(name_or_path: str | Path = "mnist") -> ParameterisedDenoiser:
    """A shipped prior by name (e.g. ``"mnist"``) or a prior folder, as a Denoiser in eval mode."""
    folder = _resolve(name_or_path, "priors")
    card = json.loads((folder / "card.json").read_text())
    denoiser = prior_from_card(card)
    denoiser.backbone.load_state_dict(load_file(folder / "weights.safetensors"))
    denoiser.card = card
    return denoiser.eval().requires_grad_(False)


def _load_network(name_or_path: str | Path, kind: str, build: Callable[[dict], nn.Module]) -> nn.Module:
    """The network ``build(card["config"])`` of a shipped ``kind`` folder with its weights, eval mode."""
    folder = _resolve(name_or_path, kind)
    card = json.loads((folder / "card.json").read_text())
    model = channels_last(build(card["config"]))
    model.load_state_dict(load_file(folder / "weights.safetensors"))
    model.card = card
    return model.eval().requires_grad_(False)


def load_classifier(name_or_path: str | Path = "mnist") -> DigitClassifier:
    """A shipped classifier by name or folder, in eval mode."""
    return _load_network(
        name_or_path, "classifiers", lambda c: DigitClassifier(ClassifierConfig.from_dict(c))
    )


def load_regressor(name_or_path: str | Path = "mnist") -> MaskedRegressor:
    """A shipped masked regression network (the ``regression`` baseline) by name or folder, eval mode."""
    if not isinstance(name_or_path, str | Path):
        raise PosteriaError(f"network must be a shipped name or a folder, got {name_or_path!r}")
    return _load_network(name_or_path, "regressors", lambda c: MaskedRegressor(UNetConfig.from_dict(c)))


def save_network(model: nn.Module, card: dict, out: Path) -> None:
    """Write ``model``'s weights (safetensors) and ``card`` (JSON) to the folder ``out``, atomically."""
    save_tensors(model.state_dict(), Path(out) / "weights.safetensors")
    save_json(card, Path(out) / "card.json")


def export_prior(checkpoint: Path, dest: Path, card: dict) -> Path:
    """Write the EMA backbone weights of a training checkpoint and a card (merged with ``card``); a run
    started from another prior (``init``) counts that prior's steps and wall time in the card's."""
    state = read_state(checkpoint)
    config = state["config"]
    weights = load_file(Path(checkpoint) / "weights.safetensors")
    prefix = "ema.backbone."
    backbone = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    if not backbone:
        raise PosteriaError(f"checkpoint {checkpoint} holds no EMA backbone weights")
    keys = ("arch", "backbone", "schedule", "parameterisation", "sigma_data", "data", "split")
    event_shape = list(load_dataset(config["data"], "test")[0].shape[1:])
    full_card = {
        "kind": "prior",
        "event_shape": event_shape,
        "train_steps": state["step"],
        "parameters": sum(v.numel() for v in backbone.values()),
        **{k: config[k] for k in keys},
        **card,
    }
    init = state.get("meta", {}).get("init")
    if init:  # trained further from another prior: count its steps and time too
        full_card["train_steps"] += init["train_steps"]
        full_card["wall_time_s"] = round(full_card.get("wall_time_s", 0.0) + init["wall_time_s"], 1)
        full_card["init"] = init
    Path(dest).mkdir(parents=True, exist_ok=True)
    save_tensors({k: v.to(torch.float32) for k, v in backbone.items()}, Path(dest) / "weights.safetensors")
    save_json(full_card, Path(dest) / "card.json")
    return Path(dest)
