"""Training configuration: a dataclass read from TOML or JSON, with ``key=value`` overrides."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from posteria.errors import PosteriaError, check_choice, check_positive

#: Learning-rate schedules after the warm-up: constant, or a cosine from ``lr`` to zero at ``steps``.
LR_DECAYS = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in every checkpoint and prior card.

    ``init`` names a prior (shipped name or folder) whose weights start the network and its EMA, to train
    further (with a fresh optimizer); empty starts from a random initialisation of ``seed``.
    """

    data: str = "mnist"
    split: str = "train"
    arch: str = "unet"
    backbone: dict = field(default_factory=dict)
    schedule: str = "vp"
    parameterisation: str = "edm"
    weighting: str = "edm"
    time_sampling: str = "lognormal"
    sigma_data: float = 0.5
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 200
    lr_decay: str = "constant"
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.0
    checkpoint_every: int = 500
    seed: int = 0
    init: str = ""
    out: str = "runs/train"
    #: Where to train (:func:`posteria.devices.resolve_device`). Random numbers are drawn on the CPU
    #: whatever the device, so a GPU run sees the same batches, times and noise as a CPU run.
    device: str = "auto"

    def __post_init__(self) -> None:
        for f in fields(self):
            kind = dict if f.name == "backbone" else type(f.default)
            _check_type(f.name, getattr(self, f.name), kind)
            if kind is float:
                setattr(self, f.name, float(getattr(self, f.name)))
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise PosteriaError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("lr", "grad_clip", "sigma_data"):
            check_positive(name, getattr(self, name))
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("warmup", self.warmup, allow_zero=True)
        check_choice("lr_decay", self.lr_decay, LR_DECAYS)
        for name in ("ema_decay", "label_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise PosteriaError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_type(name: str, value: object, kind: type) -> None:
    """Raise unless ``value`` fits a field of type ``kind`` (ints pass for floats, bools not for numbers)."""
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    ok = ok or (kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise PosteriaError(f"config key {name} must be a {kind.__name__}, got {value!r}")


def _parse_value(name: str, text: str, kind: type):
    """Parse a ``key=value`` override into the field's type (dicts as JSON)."""
    try:
        if kind is dict:
            return json.loads(text)
        if kind is bool:
            return text.lower() in ("1", "true", "yes")
        return float(text) if kind is float else kind(text)
    except (ValueError, json.JSONDecodeError) as e:
        raise PosteriaError(f"override {name}={text!r}: expected a {kind.__name__}") from e


def _read_file(path: Path) -> dict:
    """Parse a TOML or JSON config file into a dict."""
    if not path.is_file():
        raise PosteriaError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise PosteriaError(f"config file {path} is not valid {path.suffix[1:] or 'TOML'}: {e}") from e


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a TOML/JSON config (or the defaults) and apply ``key=value`` overrides."""
    values = _read_file(Path(path)) if path is not None else {}
    types = {f.name: dict if f.name == "backbone" else type(f.default) for f in fields(TrainConfig)}
    unknown = set(values) - set(types)
    if unknown:
        raise PosteriaError(f"unknown config keys: {', '.join(sorted(unknown))}")
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or key not in types:
            raise PosteriaError(f"override {item!r}: expected key=value with key one of {', '.join(types)}")
        values[key] = _parse_value(key, text, types[key])
    return TrainConfig(**values)
