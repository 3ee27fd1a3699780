"""The training loop: AdamW with warm-up, gradient clipping, EMA, checkpoints and exact resume.

Randomness is drawn per step from a generator seeded by ``(seed, step)``, so a run resumed from a
checkpoint at step k continues exactly as if it had never stopped.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from posteria.denoisers.parameterisation import ParameterisedDenoiser, parameterise
from posteria.devices import resolve_device
from posteria.errors import PosteriaError
from posteria.nn import build_backbone
from posteria.noise import get_schedule
from posteria.train.checkpoint import load_checkpoint, read_state, save_checkpoint
from posteria.train.config import TrainConfig
from posteria.train.ema import EMA
from posteria.train.losses import DenoisingLoss

# Large odd stride between the seeds of consecutive steps.
_STEP_STRIDE = 1_000_003


def build_denoiser(config: TrainConfig, event_shape: tuple[int, ...]) -> ParameterisedDenoiser:
    """The untrained denoiser a config describes: backbone + parameterisation + schedule."""
    backbone = build_backbone(config.arch, config.backbone)
    schedule = get_schedule(config.schedule)
    return parameterise(
        config.parameterisation, backbone, schedule, event_shape=event_shape, sigma_data=config.sigma_data
    )


def learning_rate(config: TrainConfig, step: int) -> float:
    """``lr`` at ``step``: a linear warm-up over ``warmup`` steps, then constant or, for ``lr_decay =
    "cosine"``, times ``(1 + cos(pi step / steps)) / 2``, which reaches zero at ``steps``."""
    lr = config.lr * min(1.0, (step + 1) / max(config.warmup, 1))
    if config.lr_decay == "cosine":
        lr *= (1 + math.cos(math.pi * min(step / config.steps, 1.0))) / 2
    return lr


def load_prior_weights(denoiser: ParameterisedDenoiser, config: TrainConfig) -> dict[str, object]:
    """Copy the weights of the prior ``config.init`` into ``denoiser``; one line if the prior was built
    differently. Returns what a card records of it: its name, training steps and wall time."""
    from posteria.priors import load_prior

    prior = load_prior(config.init)
    keys = ("arch", "backbone", "schedule", "parameterisation", "sigma_data")
    mismatched = [k for k in keys if prior.card.get(k) != getattr(config, k)]
    if mismatched or tuple(prior.card["event_shape"]) != denoiser.event_shape:
        what = ", ".join(mismatched) or "event shape"
        raise PosteriaError(f"init prior {config.init!r} was trained with a different {what}")
    denoiser.backbone.load_state_dict(prior.backbone.state_dict())
    return {k: prior.card.get(k, 0) for k in ("train_steps", "wall_time_s")} | {"prior": config.init}


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator that draws everything random at ``step``."""
    return torch.Generator().manual_seed(seed * _STEP_STRIDE + step)


def draw_batch(
    data: torch.Tensor, labels: torch.Tensor | None, config: TrainConfig, g: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A batch of training examples (with replacement) and, for a class-conditional backbone, labels
    of which a fraction ``label_dropout`` is replaced by -1 ("no class", for classifier-free guidance)."""
    index = torch.randint(0, data.shape[0], (config.batch_size,), generator=g).to(data.device)
    if labels is None or not config.backbone.get("num_classes"):
        return data[index], {}
    y = labels[index].clone()
    y[(torch.rand(y.shape, generator=g) < config.label_dropout).to(y.device)] = -1
    return data[index], {"labels": y}


class Trainer:
    """Holds the model, its EMA and the optimizer; :meth:`run` trains up to ``config.steps``."""

    def __init__(self, config: TrainConfig, data: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        if data.shape[0] == 0:
            raise PosteriaError("training data is empty")
        self.device = resolve_device(config.device)
        self.config, self.data = config, data.to(self.device)
        self.labels = None if labels is None else labels.to(self.device)
        with torch.random.fork_rng(devices=[]):  # initial weights follow config.seed, not global state
            torch.manual_seed(config.seed)
            self.denoiser = build_denoiser(config, tuple(data.shape[1:])).to(self.device)
        self.meta: dict[str, object] = {"wall_time_s": 0.0, "command": ""}
        self.ema = EMA(self.denoiser, config.ema_decay)
        self.optimizer = torch.optim.AdamW(
            self.denoiser.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.loss = DenoisingLoss(config.weighting, config.time_sampling)
        self.step = 0

    def start_from_prior(self) -> None:
        """Start from the weights of the prior ``config.init``, network and EMA, before any step (the
        optimizer starts afresh; :func:`fit` does this unless it resumes a checkpoint)."""
        self.meta["init"] = load_prior_weights(self.denoiser, self.config)
        self.ema = EMA(self.denoiser, self.config.ema_decay)

    def resume(self, folder: Path) -> None:
        """Continue from the checkpoint in ``folder``, which must come from the same model, start and
        learning-rate schedule (a cosine one also from the same ``steps``, where it ends)."""
        state = read_state(folder)
        saved = {"init": "", "lr_decay": "constant"} | state["config"]  # checkpoints older than those keys
        keys = ["arch", "backbone", "schedule", "parameterisation", "init", "lr_decay"]
        keys += ["steps"] if self.config.lr_decay == "cosine" else []
        mismatched = [k for k in keys if saved[k] != getattr(self.config, k)]
        if mismatched:
            raise PosteriaError(f"checkpoint {folder} was trained with a different {', '.join(mismatched)}")
        self.step = load_checkpoint(folder, self.denoiser, self.ema, self.optimizer)
        meta = state.get("meta", {})
        self.meta["wall_time_s"] = meta.get("wall_time_s", 0.0)
        if "init" in meta:  # as recorded when the run started, whatever that prior's folder holds now
            self.meta["init"] = meta["init"]

    def train_step(self) -> float:
        """One optimisation step; returns the loss."""
        cfg = self.config
        g = step_generator(cfg.seed, self.step)
        x, cond = draw_batch(self.data, self.labels, cfg, g)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, self.step)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))  # dropout, if any
            loss = self.loss(self.denoiser, x, g, **cond)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.denoiser.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.ema.update(self.denoiser, self.step)
        return float(loss.detach())

    def run(self, until: int | None = None, progress: bool = True) -> Trainer:
        """Train to step ``until`` (default ``config.steps``), checkpointing every ``checkpoint_every``
        steps and at the end; the progress bar shows the loss and training images per second."""
        cfg = self.config
        until = cfg.steps if until is None else until
        bar = tqdm(total=until, initial=self.step, disable=not progress, desc="train", unit="step")
        start = last_save = time.perf_counter()
        first = self.step
        while self.step < until:
            loss = self.train_step()
            now = time.perf_counter()
            bar.set_postfix(
                loss=f"{loss:.4f}", img_s=f"{(self.step - first) * cfg.batch_size / (now - start):.0f}"
            )
            bar.update(1)
            if self.step % cfg.checkpoint_every == 0 or self.step == until:
                self.meta["wall_time_s"] += now - last_save
                last_save = now
                self.save(Path(cfg.out) / "checkpoint")
        bar.close()
        return self

    def save(self, folder: Path) -> Path:
        """Checkpoint the model, EMA, optimizer, config and meta (command, wall time) to ``folder``."""
        config = self.config.to_dict()
        return save_checkpoint(folder, self.denoiser, self.ema, self.optimizer, self.step, config, self.meta)


def fit(config: TrainConfig, resume: bool = True, progress: bool = True, command: str = "") -> Trainer:
    """Train the model ``config`` describes on its data set, resuming from ``config.out`` if possible;
    ``command`` (the command line that started the run) is recorded in the checkpoints."""
    from posteria.data import load_dataset

    data, labels = load_dataset(config.data, config.split)
    trainer = Trainer(config, data, labels)
    trainer.meta["command"] = command
    checkpoint = Path(config.out) / "checkpoint"
    if resume and (checkpoint / "state.json").is_file():
        trainer.resume(checkpoint)
    elif config.init:
        trainer.start_from_prior()
    return trainer.run(progress=progress)
