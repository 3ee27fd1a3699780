"""Training: exact resume, mode recovery on the 8-Gaussian ring, the loss algebra of the four weightings,
configs, atomic checkpoints and the export_prior / load_prior round trip."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import posteria as pa
from posteria.data import load_dataset, ring_of_gaussians
from posteria.denoisers.parameterisation import EDMDenoiser, EpsilonDenoiser, VDenoiser, X0Denoiser
from posteria.devices import resolve_device
from posteria.errors import PosteriaError
from posteria.nn import MLP, MLPConfig
from posteria.noise import VE, VPLinear
from posteria.priors import export_prior, load_prior, prior_from_card, read_card
from posteria.tensors import expand_like
from posteria.train import checkpoint as ckpt
from posteria.train.config import TrainConfig, load_config
from posteria.train.loop import Trainer
from posteria.train.losses import DenoisingLoss, sample_times

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp_config(out: Path, **overrides) -> TrainConfig:
    """A tiny MLP on the 2-D Gaussian ring, checkpointing only at the end of a run."""
    values = dict(
        data="gaussian_mixture_2d",
        arch="mlp",
        backbone={"features": 2, "hidden": 32, "layers": 2},
        schedule="vp",
        batch_size=64,
        warmup=5,
        checkpoint_every=1000,
        out=str(out),
    )
    return TrainConfig(**(values | overrides))


def new_trainer(config: TrainConfig, data: torch.Tensor, init_seed: int = 0) -> Trainer:
    # The initial weights come from torch's global generator (see test_initial_weights_follow_config_seed).
    torch.manual_seed(init_seed)
    return Trainer(config, data)


@pytest.fixture(scope="module")
def ring_data() -> torch.Tensor:
    return load_dataset("gaussian_mixture_2d", "train")[0]


# ---------------------------------------------------------------------------------------------- resume


def assert_same_state(a: Trainer, b: Trainer) -> None:
    """Model, EMA and optimizer state bit-identical."""
    for name, module_a, module_b in (
        ("model", a.denoiser, b.denoiser),
        ("ema", a.ema.model, b.ema.model),
    ):
        state_a, state_b = module_a.state_dict(), module_b.state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), f"{name}.{key} differs"
    opt_a, opt_b = a.optimizer.state_dict(), b.optimizer.state_dict()
    # JSON turns the betas tuple into a list; AdamW reads both the same way.
    assert json.loads(json.dumps(opt_a["param_groups"])) == json.loads(json.dumps(opt_b["param_groups"]))
    assert opt_a["state"].keys() == opt_b["state"].keys() and len(opt_a["state"]) > 0
    for index, state in opt_a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, opt_b["state"][index][key]), f"optimizer {index}.{key} differs"


@pytest.mark.parametrize("parameterisation", ["edm", "epsilon"])
def test_resume_is_exact(tmp_path, ring_data, parameterisation):
    """20 steps straight == 10 steps, save, a new Trainer resumed from the folder, 10 more."""
    kw = {"parameterisation": parameterisation, "weighting": parameterisation, "steps": 20}
    straight = new_trainer(mlp_config(tmp_path / "straight", **kw), ring_data).run(progress=False)

    config = mlp_config(tmp_path / "split", **kw)
    first = new_trainer(config, ring_data).run(until=10, progress=False)
    assert first.step == 10 and (tmp_path / "split" / "checkpoint" / "state.json").is_file()
    resumed = new_trainer(config, ring_data, init_seed=123)  # different init: everything must come from disk
    resumed.resume(tmp_path / "split" / "checkpoint")
    assert resumed.step == 10
    assert_same_state(first, resumed)
    resumed.run(progress=False)
    assert resumed.step == straight.step == 20
    assert_same_state(straight, resumed)
    # Not vacuous: training moved the weights away from the (shared) initialisation.
    init = new_trainer(config, ring_data)
    assert not torch.equal(init.denoiser.backbone.inp.weight, straight.denoiser.backbone.inp.weight)


def test_resume_rejects_a_different_architecture(tmp_path, ring_data):
    config = mlp_config(tmp_path, steps=2)
    new_trainer(config, ring_data).run(progress=False)
    other = mlp_config(tmp_path, steps=2, backbone={"features": 2, "hidden": 16, "layers": 2})
    with pytest.raises(PosteriaError, match="different backbone"):
        new_trainer(other, ring_data).resume(tmp_path / "checkpoint")


def test_device_names(tmp_path, ring_data):
    """``auto`` trains where torch sees a GPU, else on the CPU; a device that is not there, or not a
    device, is one line when the run is set up (not at its first step). (Without a GPU this cannot
    see whether the data, model and random numbers meet on it: that is for a machine with one.)"""
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device("cpu") == torch.device("cpu")
    assert new_trainer(mlp_config(tmp_path), ring_data).denoiser.reference.device.type == expected
    for bad in ("gpu", "mps", "", 3):
        with pytest.raises(PosteriaError, match="device must be one of auto, cpu, cuda, cuda:N"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(PosteriaError, match="'cuda' is not available"):
            new_trainer(mlp_config(tmp_path, device="cuda"), ring_data)


def test_initial_weights_follow_config_seed(tmp_path, ring_data):
    """Two Trainers built from the same config start from the same weights, whatever ran before."""
    config = mlp_config(tmp_path)
    a = Trainer(config, ring_data)
    torch.randn(10)  # unrelated use of the global generator
    b = Trainer(config, ring_data)
    assert torch.equal(a.denoiser.backbone.inp.weight, b.denoiser.backbone.inp.weight)


# ----------------------------------------------------------------------------------------- mode recovery


RING = ring_of_gaussians()  # 8 modes on a circle of radius 1.5, std 0.15
TRUE_RMS = 0.15 * math.sqrt(2)  # RMS distance of a 2-D N(m, 0.15^2 I) draw to m


def ring_fit(denoiser, n: int = 2000, seed: int = 1) -> tuple[torch.Tensor, float]:
    """Mode weights (8,) of ``n`` DDIM-50 samples, and their RMS distance to the nearest mode."""
    x = pa.sample(denoiser, "ddim", 50, n, gen(seed)).to(F64)
    weights = torch.bincount(RING.assign(x), minlength=RING.n_components).to(F64) / n
    nearest = torch.cdist(x, RING.means).min(dim=1).values
    return weights, float(nearest.square().mean().sqrt())


def recovers_modes(weights: torch.Tensor, rms: float) -> bool:
    """Every mode holds 1/8 +- 1/16 of the samples, and the spread around the modes is within 30% of the
    truth (with 2000 samples the weights' standard error is 0.007)."""
    return float((weights - 1 / 8).abs().max()) < 1 / 16 and abs(rms / TRUE_RMS - 1) < 0.3


def test_training_recovers_the_modes_of_the_ring(tmp_path, ring_data):
    """An MLP trained 500 steps (about 10 s on one busy core) samples all 8 modes at the right spread,
    and the same check fails for the untrained network."""
    config = mlp_config(
        tmp_path,
        backbone={"features": 2, "hidden": 128, "layers": 3},
        parameterisation="edm",
        weighting="edm",
        steps=500,
        batch_size=256,
        lr=5e-3,
        warmup=20,
        ema_decay=0.9,
        checkpoint_every=10_000,
    )
    trainer = new_trainer(config, ring_data)
    untrained = ring_fit(trainer.ema.model)
    assert not recovers_modes(*untrained), f"the untrained network passed: {untrained}"
    trainer.run(progress=False)
    weights, rms = ring_fit(trainer.ema.model)
    assert recovers_modes(weights, rms), f"mode weights {weights.tolist()}, rms {rms:.3f} vs {TRUE_RMS:.3f}"


# ------------------------------------------------------------------------------------------ loss algebra


class Recorder(nn.Module):
    """Wraps a backbone and keeps its last raw output (eps_net, x_net, v_net or F_net)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.out = net, None

    def forward(self, x, c_noise, **cond):
        self.out = self.net(x, c_noise, **cond)
        return self.out


def classical_loss(weighting: str, den, x, t, eps) -> torch.Tensor:
    """The textbook loss of each parameterisation, on the network's raw output for the given draws."""
    alpha, sigma = (expand_like(c.to(x), x) for c in den.schedule(t))
    x_t = alpha * x + sigma * eps
    den.denoise(x_t, t)
    out = den.backbone.out
    if weighting == "epsilon":  # Ho et al. 2020
        target = eps
    elif weighting == "x0":
        target = x
    elif weighting == "v":  # Salimans & Ho 2022
        target = alpha * eps - sigma * x
    else:  # Karras et al. 2022, eq. 8: F_target = (x - c_skip y) / c_out on y = x_t / alpha, weight 1
        r, sd = sigma / alpha, den.sigma_data
        c_skip, c_out = sd**2 / (r**2 + sd**2), r * sd / torch.sqrt(r**2 + sd**2)
        target = (x - c_skip * x_t / alpha) / c_out
    return (out - target).square().mean()


PAIRS = {"epsilon": EpsilonDenoiser, "x0": X0Denoiser, "v": VDenoiser, "edm": EDMDenoiser}


@pytest.mark.parametrize("time_sampling", ["uniform", "lognormal"])
@pytest.mark.parametrize("schedule", [VPLinear(), VE()], ids=["vp", "ve"])
@pytest.mark.parametrize("weighting", list(PAIRS))
def test_weighted_loss_equals_the_classical_loss(weighting, schedule, time_sampling):
    torch.manual_seed(0)
    net = Recorder(MLP(MLPConfig(features=6, hidden=16, layers=1, emb_dim=8)).to(F64))
    den = PAIRS[weighting](net, schedule, event_shape=(6,), sigma_data=0.7)
    x = torch.randn(32, 6, generator=gen(1), dtype=F64)
    loss = DenoisingLoss(weighting, time_sampling)(den, x, gen(7))
    # The same draws, in the same order: times, then noise.
    g = gen(7)
    t = sample_times(schedule, x.shape[0], time_sampling, g).to(F64)
    eps = torch.randn(x.shape, generator=g, dtype=F64)
    expected = classical_loss(weighting, den, x, t, eps)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0)


def test_loss_rejects_unknown_names():
    with pytest.raises(PosteriaError, match="loss weighting 'snr'"):
        DenoisingLoss("snr")
    with pytest.raises(PosteriaError, match="time sampling 'beta'"):
        DenoisingLoss("edm", "beta")


# ------------------------------------------------------------------------------------------------ config


TOML = """
data = "digits"
steps = 7
lr = 3e-4
[backbone]
channels = 8
multipliers = [1, 2]
"""


def test_config_reads_toml_and_json(tmp_path):
    (tmp_path / "c.toml").write_text(TOML)
    from_toml = load_config(tmp_path / "c.toml")
    assert (from_toml.data, from_toml.steps, from_toml.lr) == ("digits", 7, 3e-4)
    assert from_toml.backbone == {"channels": 8, "multipliers": [1, 2]}
    assert from_toml.batch_size == TrainConfig().batch_size  # unset keys keep their defaults
    (tmp_path / "c.json").write_text(json.dumps(from_toml.to_dict()))
    assert load_config(tmp_path / "c.json") == from_toml
    assert load_config() == TrainConfig()


def test_config_overrides_parse_into_the_field_types(tmp_path):
    (tmp_path / "c.toml").write_text(TOML)
    cfg = load_config(
        tmp_path / "c.toml",
        ["steps=12", "lr=0.01", "sigma_data=1", 'backbone={"hidden": 4, "layers": 1}', "out=a=b"],
    )
    assert cfg.steps == 12 and isinstance(cfg.steps, int)
    assert cfg.lr == 0.01 and isinstance(cfg.sigma_data, float) and cfg.sigma_data == 1.0
    assert cfg.backbone == {"hidden": 4, "layers": 1}  # replaces the file's table
    assert cfg.out == "a=b"  # split at the first "=" only
    assert cfg.data == "digits"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stepz=3"], "override 'stepz=3': expected key=value with key one of"),
        (["steps"], "override 'steps': expected key=value"),
        (["steps=abc"], "override steps='abc': expected a int"),
        (["steps=1.5"], "override steps='1.5': expected a int"),
        (["lr=fast"], "override lr='fast': expected a float"),
        (["backbone={hidden: 4"], "override backbone='{hidden: 4': expected a dict"),
    ],
)
def test_config_rejects_bad_overrides(overrides, message):
    with pytest.raises(PosteriaError, match=message.replace("(", r"\(")):
        load_config(None, overrides)


def test_config_rejects_bad_files(tmp_path):
    with pytest.raises(PosteriaError, match="config file .*missing.toml does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("steps = = 3\n")
    with pytest.raises(PosteriaError, match="bad.toml is not valid toml"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "bad.json").write_text('{"steps": 3,}')
    with pytest.raises(PosteriaError, match="bad.json is not valid json"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "unknown.toml").write_text('steps = 3\nlearning_rate = 0.1\nfoo = "x"\n')
    with pytest.raises(PosteriaError, match="unknown config keys: foo, learning_rate"):
        load_config(tmp_path / "unknown.toml")


def test_config_rejects_file_values_of_the_wrong_type(tmp_path):
    (tmp_path / "c.toml").write_text('steps = "many"\n')
    with pytest.raises(PosteriaError, match="steps"):
        load_config(tmp_path / "c.toml")


# ------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_writes_leave_no_temporary_files(tmp_path, ring_data):
    trainer = new_trainer(mlp_config(tmp_path, steps=2), ring_data).run(progress=False)
    folder = tmp_path / "checkpoint"
    trainer.save(folder)  # overwrite in place
    assert sorted(os.listdir(folder)) == ["optimizer.safetensors", "state.json", "weights.safetensors"]
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 2 and state["config"] == trainer.config.to_dict()


def test_a_folder_without_state_json_is_rejected(tmp_path, ring_data):
    trainer = new_trainer(mlp_config(tmp_path, steps=1), ring_data).run(progress=False)
    folder = tmp_path / "checkpoint"
    (folder / "state.json").unlink()
    with pytest.raises(PosteriaError, match="has no readable state.json"):
        ckpt.load_checkpoint(folder, trainer.denoiser, trainer.ema, trainer.optimizer)
    with pytest.raises(PosteriaError, match="has no readable state.json"):
        trainer.resume(folder)
    with pytest.raises(PosteriaError, match="has no readable state.json"):
        ckpt.read_state(tmp_path / "nowhere")


def test_an_interrupted_first_save_leaves_no_state_json(tmp_path, ring_data, monkeypatch):
    """A crash after the weights are written leaves no checkpoint folder and no staging files behind:
    resuming is refused rather than half-loaded."""
    trainer = new_trainer(mlp_config(tmp_path, steps=1), ring_data)
    trainer.train_step()

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(ckpt, "optimizer_tensors", crash)
    with pytest.raises(RuntimeError, match="killed"):
        trainer.save(tmp_path / "checkpoint")
    assert not (tmp_path / "checkpoint").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".checkpoint")] == []
    with pytest.raises(PosteriaError, match="state.json"):
        trainer.resume(tmp_path / "checkpoint")


def test_an_interrupted_overwrite_keeps_the_previous_checkpoint_consistent(tmp_path, ring_data, monkeypatch):
    """Killed between writing the new weights and the new state.json, the folder must still resume
    consistently (the old step with the old weights), not the old step with the new weights."""
    config = mlp_config(tmp_path, steps=1)
    trainer = new_trainer(config, ring_data).run(progress=False)
    saved = {k: v.clone() for k, v in trainer.denoiser.state_dict().items()}
    trainer.train_step()

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(ckpt, "optimizer_tensors", crash)
    with pytest.raises(RuntimeError):
        trainer.save(tmp_path / "checkpoint")
    monkeypatch.undo()
    resumed = new_trainer(config, ring_data)
    resumed.resume(tmp_path / "checkpoint")
    assert resumed.step == 1
    assert all(torch.equal(v, saved[k]) for k, v in resumed.denoiser.state_dict().items())


# ------------------------------------------------------------------------------------------ export/load


def test_export_and_load_prior_round_trip(tiny_prior):
    prior = load_prior(tiny_prior.folder)
    ema = tiny_prior.trainer.ema.model
    x_t = torch.randn(4, 1, 8, 8, generator=gen(3))
    t = torch.tensor([0.05, 0.3, 0.6, 0.95])
    with torch.no_grad():
        assert torch.equal(prior(x_t, t), ema(x_t, t))
        # Not vacuous: an untrained network of the same architecture gives other outputs.
        assert not torch.allclose(prior_from_card(prior.card)(x_t, t), prior(x_t, t))
    assert not prior.training and not any(p.requires_grad for p in prior.parameters())
    card = read_card(tiny_prior.folder)
    assert card == prior.card
    assert card["kind"] == "prior" and card["name"] == "tiny-digits"
    assert card["arch"] == "unet" and card["backbone"] == tiny_prior.config.backbone
    assert (card["schedule"], card["parameterisation"], card["data"]) == ("vp", "edm", "digits")
    assert card["event_shape"] == [1, 8, 8] and card["train_steps"] == 3
    x = pa.sample(prior, "ddim", 2, 2, gen(0))
    assert x.shape == (2, 1, 8, 8) and bool(torch.isfinite(x).all())


def test_export_rejects_a_folder_without_a_checkpoint(tmp_path):
    with pytest.raises(PosteriaError, match="state.json"):
        export_prior(tmp_path, tmp_path / "prior", {})


def test_load_prior_rejects_unknown_names_and_folders(tmp_path):
    with pytest.raises(PosteriaError, match="unknown prior 'no-such-prior'"):
        load_prior("no-such-prior")
    with pytest.raises(PosteriaError, match="folder with card.json and weights.safetensors"):
        load_prior(tmp_path)


# ------------------------------------------------------------------------------------ further training


def test_cosine_decay_warms_up_then_falls_to_zero_at_the_last_step():
    from posteria.train.loop import learning_rate

    constant = TrainConfig(steps=1000, lr=1e-3, warmup=100)
    cosine = TrainConfig(steps=1000, lr=1e-3, warmup=100, lr_decay="cosine")
    assert learning_rate(constant, 0) == pytest.approx(1e-5) and learning_rate(constant, 999) == 1e-3
    assert learning_rate(cosine, 0) == pytest.approx(1e-5 * (1 + math.cos(0)) / 2)
    assert learning_rate(cosine, 500) == pytest.approx(5e-4) and learning_rate(cosine, 1000) == 0.0
    rates = [learning_rate(cosine, s) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    with pytest.raises(PosteriaError, match="unknown lr_decay 'linear'; expected one of: constant, cosine"):
        TrainConfig(lr_decay="linear")


def further(tiny_prior, out: Path, **overrides) -> TrainConfig:
    """The tiny prior's config, started from the tiny prior itself."""
    values = tiny_prior.config.to_dict() | {"init": str(tiny_prior.folder), "steps": 2, "out": str(out)}
    return TrainConfig(**(values | overrides))


def test_training_from_a_prior_starts_at_its_weights_and_counts_its_steps(tmp_path, tiny_prior):
    prior = load_prior(tiny_prior.folder)
    trainer = Trainer(further(tiny_prior, tmp_path / "run", seed=5), load_dataset("digits", "train")[0])
    trainer.start_from_prior()
    for ours in (trainer.denoiser.backbone, trainer.ema.model.backbone):
        assert all(torch.equal(v, prior.backbone.state_dict()[k]) for k, v in ours.state_dict().items())
    assert trainer.meta["init"] == {"train_steps": 3, "wall_time_s": prior.card.get("wall_time_s", 0),
                                    "prior": str(tiny_prior.folder)}  # fmt: skip
    trainer.run(progress=False)
    card = json.loads(
        (export_prior(tmp_path / "run" / "checkpoint", tmp_path / "p", {}) / "card.json").read_text()
    )
    assert card["train_steps"] == 3 + 2 and card["init"]["prior"] == str(tiny_prior.folder)


def test_training_from_a_prior_of_another_architecture_is_one_line(tmp_path, tiny_prior):
    data = load_dataset("digits", "train")[0]
    wider = tiny_prior.config.backbone | {"channels": 2 * tiny_prior.config.backbone["channels"]}
    with pytest.raises(PosteriaError, match="init prior .* was trained with a different backbone$"):
        Trainer(further(tiny_prior, tmp_path, backbone=wider), data).start_from_prior()
    with pytest.raises(PosteriaError, match="unknown prior 'nowhere'"):
        Trainer(further(tiny_prior, tmp_path, init="nowhere"), data).start_from_prior()


def test_a_run_from_a_prior_resumes_without_it_and_counts_its_steps_once(tmp_path, tiny_prior):
    """The checkpoint records the starting prior: resuming needs neither its folder nor its card."""
    import shutil

    init = shutil.copytree(tiny_prior.folder, tmp_path / "init")
    config = further(tiny_prior, tmp_path / "run", init=str(init), lr_decay="cosine", steps=3)
    data = load_dataset("digits", "train")[0]
    first = Trainer(config, data)
    first.start_from_prior()
    first.run(until=1, progress=False)
    shutil.rmtree(init)
    second = Trainer(config, data)
    second.resume(tmp_path / "run" / "checkpoint")
    second.run(progress=False)
    card = json.loads(
        (export_prior(tmp_path / "run" / "checkpoint", tmp_path / "p", {}) / "card.json").read_text()
    )
    assert second.meta["init"]["train_steps"] == 3 and card["train_steps"] == 3 + 3
    with pytest.raises(PosteriaError, match="was trained with a different steps$"):
        Trainer(further(tiny_prior, tmp_path, init=str(init), lr_decay="cosine", steps=4), data).resume(
            tmp_path / "run" / "checkpoint"
        )
