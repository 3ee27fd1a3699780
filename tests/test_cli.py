"""The command line: help, train and resume, sample, and bad input as one ``error:`` line (exit code 2)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from posteria.cli import app, main

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()

F64 = torch.float64

TINY_MLP_TOML = """
data = "gaussian_mixture_2d"
arch = "mlp"
schedule = "vp"
batch_size = 16
warmup = 1
checkpoint_every = 1000

[backbone]
features = 2
hidden = 16
layers = 1
emb_dim = 8
"""


@pytest.fixture
def mlp_toml(tmp_path):
    path = tmp_path / "mlp.toml"
    path.write_text(TINY_MLP_TOML)
    return path


def invoke(*args: str):
    """Run the app in-process; a success must not hide an exception."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0 and result.exception is None, result.output
    return result


def error_line(monkeypatch, capsys, *args: str) -> str:
    """Run ``posteria ARGS`` through the console entry point; require exit code 2 and exactly one line
    on stderr, ``error: ...``, and return it."""
    monkeypatch.setattr(sys, "argv", ["posteria", *(str(a) for a in args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def checkpoint_step(out) -> int:
    return json.loads((out / "checkpoint" / "state.json").read_text())["step"]


# ------------------------------------------------------------------------------------------------ help


def test_help_says_what_posteria_is_and_lists_the_commands():
    result = invoke("--help")
    assert "diffusion priors" in result.output
    for command in ("train", "sample", "demo", "bench", "train-classifier"):
        assert command in result.output


def test_help_of_each_command():
    for command in ("train", "sample", "demo", "train-classifier", "bench"):
        assert "--help" in invoke(command, "--help").output


def help_words(*command: str) -> str:
    """The help text of ``posteria COMMAND``, unwrapped, without the box it is drawn in."""
    return " ".join(invoke(*command, "--help").output.replace("\u2502", " ").split())


def test_solve_and_sample_help_name_the_files_and_limits():
    solve = help_words("solve")
    assert "metrics.json and result.safetensors" in solve and "noise, > 0 (default 0.05)" in solve
    assert "DDIM noise level, ddim only (default 0: deterministic)" in help_words("sample")


def test_sample_help_lists_every_time_grid():
    from posteria.noise import GRIDS

    assert f"Time grid: {', '.join(GRIDS)}." in help_words("sample")


def test_train_help_says_where_out_comes_from():
    # train has no --out option: its help must say how OUT is set
    assert "(OUT: the config's out, or --set out=DIR)" in help_words("train")


def test_help_suggests_commands_that_run():
    # sample needs --out: the suggestion must give one
    assert "then `posteria sample --out out/sample`" in help_words()


# ----------------------------------------------------------------------------------------------- train


def test_train_writes_a_checkpoint_and_resumes(tmp_path, mlp_toml):
    out = tmp_path / "run"
    result = invoke(
        "train", "--config", mlp_toml, "--set", "steps=5", "--set", f"out={out}", "--threads", "1"
    )
    assert "trained 5 steps" in result.output
    files = sorted(p.name for p in (out / "checkpoint").iterdir())
    assert files == ["optimizer.safetensors", "state.json", "weights.safetensors"]
    assert checkpoint_step(out) == 5
    weights = (out / "checkpoint" / "weights.safetensors").read_bytes()

    # Again with the same step count: resumes at 5, trains nothing, leaves the checkpoint as it was.
    assert (
        "trained 5 steps"
        in invoke("train", "--config", mlp_toml, "--set", "steps=5", "--set", f"out={out}").output
    )
    assert (out / "checkpoint" / "weights.safetensors").read_bytes() == weights

    # More steps: continues from 5 to 8.
    assert (
        "trained 8 steps"
        in invoke("train", "--config", mlp_toml, "--set", "steps=8", "--set", f"out={out}").output
    )
    assert checkpoint_step(out) == 8

    # --fresh ignores the checkpoint and starts again from step 0.
    result = invoke("train", "--config", mlp_toml, "--set", "steps=3", "--set", f"out={out}", "--fresh")
    assert "trained 3 steps" in result.output
    assert checkpoint_step(out) == 3


# ---------------------------------------------------------------------------------------------- sample


def test_sample_writes_samples_and_metrics(tmp_path, tiny_prior):
    out = tmp_path / "samples"
    invoke("sample", "--out", out, "--prior", tiny_prior.folder, "-n", "4", "--steps", "3", "--seed", "1")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nfe"] == 3 and metrics["n"] == 4 and metrics["sampler"] == "ddim"
    assert isinstance(metrics["wall_time_s"], float) and metrics["wall_time_s"] >= 0
    assert "fd" not in metrics  # 8x8 digits: the 28x28 Frechet distance does not apply
    with Image.open(out / "samples.png") as img:
        # a 2x2 grid of 8x8 images with 2 px padding, enlarged twice: 2 * (2 * (8 + 2) + 2) = 44
        assert img.size == (44, 44)


def test_sample_heun_reports_its_evaluations(tmp_path, tiny_prior):
    out = tmp_path / "heun"
    invoke(
        "sample", "--out", out, "--prior", tiny_prior.folder, "--sampler", "heun", "-n", "2", "--steps", "2"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sampler"] == "heun" and metrics["nfe"] == 3  # 2 steps - 1: the last is Euler


# ------------------------------------------------------------------------------------------- bad input


def test_unknown_sampler(tmp_path, tiny_prior, monkeypatch, capsys):
    line = error_line(
        monkeypatch, capsys, "sample", "--out", tmp_path, "--prior", tiny_prior.folder, "--sampler", "nope"
    )
    assert "unknown sampler 'nope'" in line and "ddim" in line
    assert not (tmp_path / "metrics.json").exists()


def test_unknown_prior_name(tmp_path, monkeypatch, capsys):
    line = error_line(monkeypatch, capsys, "sample", "--out", tmp_path, "--prior", "no-such-prior")
    assert "unknown prior 'no-such-prior'" in line


def test_unknown_prior_of_solve_names_the_exact_priors(tmp_path, monkeypatch, capsys):
    line = error_line(monkeypatch, capsys, "solve", "--out", tmp_path, "--prior", "no-such-prior")
    assert "unknown prior 'no-such-prior'" in line and "mnist-mixture" in line


def test_prior_folder_that_does_not_exist(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "missing" / "prior"
    line = error_line(monkeypatch, capsys, "sample", "--out", tmp_path, "--prior", missing)
    assert f"unknown prior '{missing}'" in line and "card.json" in line


def test_sample_with_zero_steps(tmp_path, tiny_prior, monkeypatch, capsys):
    line = error_line(
        monkeypatch, capsys, "sample", "--out", tmp_path, "--prior", tiny_prior.folder, "--steps", "0"
    )
    assert line == "error: --steps must be a positive integer, got 0"


def test_an_error_names_the_flag_only_when_it_was_typed(tmp_path, monkeypatch, capsys):
    """``steps`` from ``--set`` (train has no --steps) keeps its name; typed as ``--sigma-y=-1`` it is the
    flag."""
    config = tmp_path / "run.toml"
    config.write_text(f'data = "digits"\nout = "{tmp_path / "run"}"\n')
    line = error_line(monkeypatch, capsys, "train", "--config", config, "--set", "steps=0")
    assert line == "error: steps must be a positive integer, got 0"
    line = error_line(monkeypatch, capsys, "solve", "--sigma-y=-1", "--out", tmp_path / "solve")
    assert line == "error: --sigma-y must be a finite number > 0, got -1.0"
    assert not (tmp_path / "run").exists()


def test_sample_with_zero_samples(tmp_path, tiny_prior, monkeypatch, capsys):
    line = error_line(
        monkeypatch, capsys, "sample", "--out", tmp_path, "--prior", tiny_prior.folder, "-n", "0"
    )
    assert line == "error: -n must be a positive integer, got 0"  # the flag as typed


def test_train_with_an_unknown_key(tmp_path, monkeypatch, capsys):
    line = error_line(monkeypatch, capsys, "train", "--set", "stepz=3", "--set", f"out={tmp_path}")
    assert "override 'stepz=3'" in line and "steps" in line


def test_train_with_a_malformed_value(tmp_path, monkeypatch, capsys):
    line = error_line(monkeypatch, capsys, "train", "--set", "steps=ten", "--set", f"out={tmp_path}")
    assert "override steps='ten'" in line


def test_train_with_a_missing_config_file(tmp_path, monkeypatch, capsys):
    line = error_line(monkeypatch, capsys, "train", "--config", tmp_path / "nope.toml")
    assert "config file" in line and "nope.toml does not exist" in line


def test_train_with_an_invalid_toml_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.toml").write_text("steps = = 1\n")
    line = error_line(monkeypatch, capsys, "train", "--config", tmp_path / "bad.toml")
    assert "is not valid toml" in line


def test_train_on_a_missing_image_folder(tmp_path, mlp_toml, monkeypatch, capsys):
    missing = tmp_path / "no-images"
    args = ("--set", f"data={missing}", "--set", f"out={tmp_path / 'run'}")
    line = error_line(monkeypatch, capsys, "train", "--config", mlp_toml, *args)
    assert f"image folder '{missing}' does not exist" in line
    assert not (tmp_path / "run").exists()


def test_train_on_an_empty_image_folder(tmp_path, mlp_toml, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    args = ("--set", f"data={tmp_path / 'empty'}", "--set", f"out={tmp_path / 'run'}")
    line = error_line(monkeypatch, capsys, "train", "--config", mlp_toml, *args)
    assert "holds no image files" in line


def test_train_resume_with_another_architecture(tmp_path, mlp_toml, monkeypatch, capsys):
    out = tmp_path / "run"
    invoke("train", "--config", mlp_toml, "--set", "steps=1", "--set", f"out={out}")
    args = ("--set", "steps=2", "--set", f"out={out}", "--set", 'backbone={"features": 2, "hidden": 8}')
    line = error_line(monkeypatch, capsys, "train", "--config", mlp_toml, *args)
    assert "was trained with a different backbone" in line


def test_train_with_zero_steps(tmp_path, mlp_toml, monkeypatch, capsys):
    line = error_line(
        monkeypatch, capsys, "train", "--config", mlp_toml, "--set", "steps=0", "--set", f"out={tmp_path}"
    )
    assert "steps" in line


def test_a_usage_error_exits_2_without_a_traceback(tmp_path, monkeypatch, capsys):
    """Typer's own errors (a bad option value) keep click's usage message, but exit 2, never a traceback."""
    monkeypatch.setattr(sys, "argv", ["posteria", "sample", "--out", str(tmp_path), "--steps", "many"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and "--steps" in err


def test_demo_writes_an_index_with_its_figures(tmp_path, tiny_prior):
    """The demo end to end on the tiny 8x8 prior: index.md and every figure it links."""
    from posteria.demo import run_demo

    index = run_demo(tmp_path / "demo", str(tiny_prior.folder), seed=0)
    text = index.read_text()
    for name in ("samples.png", "denoising.png", "mixture.png"):
        assert f"({name})" in text
        assert (tmp_path / "demo" / name).stat().st_size > 0
    assert "| ddpm | 200 | 8 |" in text  # every mode of the exact mixture is hit


# ------------------------------------------------------------------------------------------ solve


def test_solve_writes_panels_and_metrics(tmp_path, tiny_prior):
    out = tmp_path / "solve"
    args = ["solve", "--prior", str(tiny_prior.folder), "--operator", "inpaint-box", "--method", "ddrm",
            "--steps", "3", "--test-digits", "2", "--samples", "2", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("panels.png", "measurement.png", "samples.png", "mean.png", "std.png", "metrics.json"):
        assert (out / name).stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nfe"] == 3 and metrics["n"] == 2 and metrics["test_digits"] == 2
    for key in ("psnr_mean", "ssim_mean", "consistency", "seconds_per_image"):
        assert math.isfinite(metrics[key])


def test_solve_on_an_exact_prior_compares_the_samples_with_its_exact_posterior(tmp_path, monkeypatch):
    """--prior mnist-mixture restores its own draws and adds the exact posterior's scores and pictures;
    an operator without a posterior density (phase retrieval) runs and says so."""
    import posteria.lab.fit as fit

    monkeypatch.setitem(fit.EXACT_PRIORS, "mnist-mixture", lambda: fit.mnist_mixture(rank=8))

    def run(operator: str, samples: str) -> dict:
        out = tmp_path / operator
        args = ["solve", "--prior", "mnist-mixture", "--operator", operator, "--method", "daps", "--steps",
                "3", "--test-digits", "2", "--samples", samples, "--out", str(out)]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return json.loads((out / "metrics.json").read_text())

    metrics = run("mri4", "2")
    assert metrics["prior_draws"] == 2 and "exact_posterior" not in metrics
    for key in ("psnr_gap", "psnr_gap_se", "nll_gap", "nll_gap_se", "exact_psnr_sample", "variance_ratio"):
        assert math.isfinite(metrics[key]), key
    assert metrics["exact_psnr_mean"] > metrics["exact_psnr_sample"]
    assert (tmp_path / "mri4" / "exact_mean.png").stat().st_size > 0
    assert (tmp_path / "mri4" / "exact_std.png").stat().st_size > 0
    phase = run("phase", "1")
    assert phase["exact_posterior"].startswith("none") and "nll_gap" not in phase
    assert (phase["up_to"], phase["registered_to"]) == ("180-degree rotation and translation", "truth")
    assert "up_to" not in metrics
    assert not (tmp_path / "phase" / "exact_mean.png").exists()


def test_solve_passes_set_options_to_the_method(tmp_path, tiny_prior):
    def run(*extra: str) -> dict:
        out = tmp_path / "-".join(extra or ("default",))
        args = ["solve", "--prior", str(tiny_prior.folder), "--operator", "sr2", "--method", "ddrm",
                "--steps", "3", "--test-digits", "2", "--samples", "1", "--out", str(out),
                *extra]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return json.loads((out / "metrics.json").read_text())

    default, changed = run(), run("--set", "eta=1", "--set", "spacing=quadratic")
    assert default["options"] == {}
    assert changed["options"] == {"eta": 1, "spacing": "quadratic"}
    assert changed["psnr_mean"] != default["psnr_mean"]  # the options reached DDRM


def test_methods_lists_every_method_and_operator(tiny_prior):
    from posteria.posterior import METHODS

    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0
    for name in METHODS:
        assert name in result.output
    assert "inpaint-box" in result.output and "mri4" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sigma-y", "-0.1"], "--sigma-y must be a finite number > 0"),
        (["--operator", "smudge"], "unknown operator 'smudge'"),
        (["--method", "magic"], "unknown method 'magic'"),
        (["--operator", "sr2", "--method", "repaint"], "methods that serve it: "),
        (["--method", "ddrm", "--set", "eta"], "--set 'eta': expected key=value"),
        (["--method", "ddrm", "--set", "eta=fast"], "method 'ddrm': eta must lie in [0, 1], got 'fast'"),
        (["--method", "ddrm", "--set", "threshold=-1"], "'ddrm': threshold must be a finite number >= 0"),
        (["--method", "mmps", "--set", "zeta=1"], "'mmps' takes no option zeta; its options: sampler="),
        (["--method", "ddrm", "--set", "batch_size=2"], "'ddrm' takes no option batch_size; its options: "),
        (["--method", "dps", "--set", "zeta=[1, 2]"], "zeta must be a finite number > 0, got [1, 2]"),
        (["--method", "dps-squared", "--set", "limit=False"], "limit must be true or false, got 'False'"),
        (["--method", "fista-tv", "--set", "bounds=5"], "bounds must be two numbers [low, high]"),
        (["--test-digits", "0"], "--test-digits must be a positive integer, got 0"),
        (["--test-digits", "100000"], "--test-digits must be at most"),
        (["--seed", "-1"], "--seed must be an integer in [0, 2**63), got -1"),
        (["--samples", "abc"], "Invalid value for '--samples'"),
        (["--method", "tds", "--samples", "2", "--set", "particles=3"], "particles=3 must divide the n = 2"),
    ],
    ids=[
        "negative-sigma",
        "operator",
        "method",
        "unsupported",
        "set-form",
        "set-type",
        "set-negative",
        "set-key",
        "set-argument",
        "set-list",
        "set-switch",
        "set-bounds",
        "no-digits",
        "too-many-digits",
        "seed",
        "parser",
        "particles",
    ],
)
def test_solve_bad_input_is_one_line(tmp_path, tiny_prior, monkeypatch, capsys, args, expected):
    line = error_line(
        monkeypatch,
        capsys,
        "solve",
        "--prior",
        tiny_prior.folder,
        "--out",
        tmp_path / "s",
        "--steps",
        "2",
        *args,
    )
    assert expected in line
    assert not (tmp_path / "s").exists()  # nothing half-written


def test_solve_refuses_an_out_that_is_a_file_before_sampling(tmp_path, tiny_prior, monkeypatch, capsys):
    (tmp_path / "taken").write_text("")
    line = error_line(monkeypatch, capsys, "solve", "--prior", tiny_prior.folder, "--out", tmp_path / "taken")
    assert line == f"error: out '{tmp_path / 'taken'}' is a file; expected a folder"


def test_solve_refuses_an_out_it_cannot_write_before_sampling(tmp_path, tiny_prior, monkeypatch, capsys):
    """A folder that the permission bits allow but that refuses files (root on a read-only file system,
    /proc) is found by writing a file there, not by os.access, and before the run."""
    import posteria.io

    def refused(*_: object, **__: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(posteria.io.tempfile, "TemporaryFile", refused)
    line = error_line(monkeypatch, capsys, "solve", "--prior", tiny_prior.folder, "--out", tmp_path / "ro")
    assert line == f"error: out '{tmp_path / 'ro'}': cannot write into '{tmp_path}' (Read-only file system)"


def test_a_failed_write_is_one_line(tmp_path, tiny_prior, monkeypatch, capsys):
    """A full disk (an OSError while writing results) is one line and status 2, and the folder keeps
    nothing of the run."""
    import posteria.train.checkpoint as checkpoint

    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "s" / "metrics.json"))

    monkeypatch.setattr(checkpoint, "save_json", full_disk)
    args = ["solve", "--prior", tiny_prior.folder, "--steps", "2", "--test-digits", "1", "--samples", "1",
            "--out", tmp_path / "s"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["posteria", *(str(a) for a in args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err  # the progress bar's lines, then the error
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert (
        err.strip().splitlines()[-1] == f"error: No space left on device ({tmp_path / 's' / 'metrics.json'})"
    )
    assert not (tmp_path / "s").exists()


def test_a_missing_option_is_one_line(monkeypatch, capsys):
    assert error_line(monkeypatch, capsys, "solve") == "error: Missing option '--out'."


def test_set_reads_the_defaults_as_methods_prints_them():
    from posteria.cli import _options

    assert _options(["eta=None", "bounds=(-1.0, 1.0)", "sampler=ddim", "steps=[1, 2]"]) == {
        "eta": None, "bounds": (-1.0, 1.0), "sampler": "ddim", "steps": [1, 2]}  # fmt: skip


def test_solve_removes_an_earlier_runs_exact_posterior_pictures(tmp_path, tiny_prior):
    out = tmp_path / "solve"
    out.mkdir()
    for stale in ("exact_mean.png", "exact_std.png"):
        (out / stale).write_bytes(b"from a run on an exact prior")
    args = ["solve", "--prior", str(tiny_prior.folder), "--method", "ddrm", "--steps", "2",
            "--test-digits", "1", "--samples", "1", "--out", str(out)]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    assert not (out / "exact_mean.png").exists() and not (out / "exact_std.png").exists()


def test_an_empty_out_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["posteria", "solve", "--out", ""])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "expected a folder path, got ''" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_solve_that_fails_writing_leaves_the_old_results(tmp_path, tiny_prior, monkeypatch):
    """A failure between two files (here: the metrics) must not leave new images next to old metrics."""
    import posteria.train.checkpoint as checkpoint

    out = tmp_path / "solve"
    args = ["solve", "--prior", str(tiny_prior.folder), "--method", "ddrm", "--steps", "2",
            "--test-digits", "1", "--samples", "1", "--out", str(out)]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(*_: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint, "save_json", full_disk)
    result = CliRunner().invoke(app, [*args, "--seed", "1"])
    assert isinstance(result.exception, OSError)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_solve_fills_the_holes_of_a_users_mask(tmp_path, tiny_prior, monkeypatch, capsys):
    """--mask: white observed, black holes; a larger mask of the same aspect is resized, another refused."""
    from posteria.io import save_image

    mask = torch.ones(1, 16, 16)
    mask[:, 4:12, 4:12] = -1
    save_image(mask, tmp_path / "mask.png")
    args = ["solve", "--prior", str(tiny_prior.folder), "--operator", "inpaint-mask", "--mask",
            str(tmp_path / "mask.png"), "--method", "ddrm", "--steps", "2", "--test-digits", "1",
            "--samples", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["operator"] == "inpaint-mask" and metrics["mask"] == str(tmp_path / "mask.png")
    save_image(torch.ones(1, 8, 12), tmp_path / "wide.png")
    line = error_line(monkeypatch, capsys, *args[:6], tmp_path / "wide.png", "--out", tmp_path / "out2")
    assert "--mask" in line and "is 12x8; expected 8x8" in line
    save_image(-torch.ones(1, 8, 8), tmp_path / "black.png")
    line = error_line(monkeypatch, capsys, *args[:6], tmp_path / "black.png", "--out", tmp_path / "out3")
    assert line.endswith("has no observed (white) pixels")
    line = error_line(monkeypatch, capsys, *args[:3], "--operator", "sr2", "--mask", tmp_path / "mask.png",
                      "--out", tmp_path / "out4")  # fmt: skip
    assert line == "error: --mask is for --operator inpaint-mask or mri-mask, got --operator sr2"
    line = error_line(monkeypatch, capsys, *args[:6], tmp_path / "nope.png", "--out", tmp_path / "out5")
    assert line.startswith("error: --mask: image file") and "does not exist" in line


def test_input_mask_observes_white_and_fills_black(tmp_path):
    from posteria.io import save_image
    from posteria.restore import input_mask

    image = torch.ones(1, 16, 16)
    image[:, 2:6, 8:14] = -1  # a black hole, at twice the prior's size
    save_image(image, tmp_path / "mask.png")
    observed = input_mask(tmp_path / "mask.png", (1, 8, 8))
    expected = torch.ones(8, 8, dtype=torch.bool)
    expected[1:3, 4:7] = False
    assert torch.equal(observed, expected)


def test_solve_with_poisson_noise_runs_the_methods_that_serve_it(tmp_path, tiny_prior, monkeypatch, capsys):
    args = ["solve", "--prior", str(tiny_prior.folder), "--operator", "sr2", "--poisson", "30",
            "--steps", "3", "--test-digits", "2", "--samples", "1"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--method", "dps", "--out", str(tmp_path / "dps")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "dps" / "metrics.json").read_text())
    assert metrics["poisson"] == 30 and "sigma_y" not in metrics and metrics["consistency"] > 0
    result = CliRunner().invoke(app, [*args, "--method", "mmps", "--out", str(tmp_path / "mmps")])
    assert result.exit_code == 0, result.output  # on the Gaussian approximation at y
    line = error_line(monkeypatch, capsys, *args, "--method", "ddrm", "--out", tmp_path / "ddrm")
    assert "needs Gaussian measurement noise" in line and "dps" in line and "mmps" in line
    line = error_line(monkeypatch, capsys, *args[:6], "0", "--out", tmp_path / "zero")
    assert line == "error: --poisson must be a finite number > 0, got 0.0"
    line = error_line(
        monkeypatch, capsys, *args, "--sigma-y", "0.1", "--method", "dps", "--out", tmp_path / "b"
    )
    assert line == "error: give --sigma-y (Gaussian noise) or --poisson (photon counts), not both"


def test_solve_resizes_an_input_of_the_priors_aspect_and_refuses_another(tmp_path, tiny_prior):
    from posteria.io import save_image

    def run(width: int, height: int) -> tuple[int, str]:
        image = save_image(torch.zeros(1, height, width), tmp_path / f"{width}x{height}.png")
        args = ["solve", "--prior", str(tiny_prior.folder), "--input", str(image), "--method", "ddrm",
                "--steps", "2", "--samples", "1", "--out", str(tmp_path / f"out{width}")]  # fmt: skip
        result = CliRunner().invoke(app, args)
        return result.exit_code, str(result.exception or "")

    assert run(16, 16) == (0, "")
    metrics = json.loads((tmp_path / "out16" / "metrics.json").read_text())
    assert metrics["input_size"] == [16, 16] and "test_digits" not in metrics
    code, message = run(12, 8)
    assert code == 1 and "is 12x8; expected 8x8 or a larger image of the same aspect ratio" in message


def test_solve_restores_every_image_of_an_input_folder(tmp_path, tiny_prior, monkeypatch, capsys):
    from safetensors.torch import load_file

    from posteria.io import save_image

    folder = tmp_path / "mine"
    folder.mkdir()
    save_image(-torch.ones(1, 16, 16), folder / "b.png")  # black, resized to the prior's 8x8
    save_image(torch.ones(1, 8, 8), folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    args = ["solve", "--prior", str(tiny_prior.folder), "--input", str(folder), "--method", "ddrm",
            "--steps", "2", "--samples", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["input_files"] == ["a.png", "b.png"] and "psnr_mean" in metrics
    truth = load_file(tmp_path / "out" / "result.safetensors")["truth"]
    assert truth.shape == (2, 1, 8, 8) and bool((truth[0] == 1).all() and (truth[1] == -1).all())
    (tmp_path / "empty").mkdir()
    line = error_line(monkeypatch, capsys, *args[:4], tmp_path / "empty", "--out", tmp_path / "out2")
    assert line.startswith("error: --input: image folder") and "holds no image files" in line


def test_solve_says_which_colour_inputs_it_read_as_grey(tmp_path, tiny_prior):
    """A colour picture restored by a one-channel prior: a note on stderr and ``colour_to_grey`` in
    metrics.json; grey stored as RGB is not colour."""
    folder = tmp_path / "mine"
    folder.mkdir()
    rgb = torch.zeros(8, 8, 3, dtype=torch.uint8).numpy()
    Image.fromarray(rgb + 90).save(folder / "grey.png")
    rgb[2:5, 3, 0] = 200
    Image.fromarray(rgb).save(folder / "red.png")
    args = ["solve", "--prior", str(tiny_prior.folder), "--input", str(folder), "--method", "ddrm",
            "--steps", "2", "--samples", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "note: --input colour pictures read as grey (the prior has one channel): red.png" in result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["colour_to_grey"] == ["red.png"]
    args[4] = str(folder / "grey.png")
    result = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "grey")])
    assert result.exit_code == 0 and "note:" not in result.stderr
    assert "colour_to_grey" not in json.loads((tmp_path / "grey" / "metrics.json").read_text())


def test_solve_says_when_it_read_a_colour_measurement_as_grey(tmp_path, tiny_prior):
    """--measurement with a colour picture (a blurred photograph) gets the same note as --input."""
    rgb = torch.zeros(8, 8, 3, dtype=torch.uint8).numpy() + 90
    rgb[2:5, 3, 0] = 200
    Image.fromarray(rgb).save(tmp_path / "blurred.png")
    args = ["solve", "--prior", str(tiny_prior.folder), "--operator", "blur-gauss", "--measurement",
            str(tmp_path / "blurred.png"), "--method", "ddrm", "--steps", "2", "--samples", "1",
            "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "note: --measurement colour pictures read as grey" in result.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["colour_to_grey"] == ["blurred.png"]


def test_solve_deblurs_with_a_users_kernel(tmp_path, tiny_prior, monkeypatch, capsys):
    """--kernel: a .npy of weights or a picture, scaled to sum 1, for --operator blur-kernel only."""
    import numpy as np

    from posteria.io import save_image
    from posteria.restore import input_kernel

    np.save(tmp_path / "psf.npy", np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]))
    assert torch.equal(input_kernel(tmp_path / "psf.npy")[1], torch.tensor([0.125, 0.25, 0.125], dtype=F64))
    save_image(torch.tensor([[[-1.0, 1.0, -1.0]]]), tmp_path / "line.png")  # black, white, black
    assert torch.equal(input_kernel(tmp_path / "line.png"), torch.tensor([[0.0, 1.0, 0.0]], dtype=F64))
    args = ["solve", "--prior", str(tiny_prior.folder), "--operator", "blur-kernel", "--method", "ddrm",
            "--steps", "2", "--samples", "1", "--test-digits", "1"]  # fmt: skip
    result = CliRunner().invoke(
        app, [*args, "--kernel", str(tmp_path / "psf.npy"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["kernel"] == str(tmp_path / "psf.npy")
    np.save(tmp_path / "negative.npy", -np.ones((3, 3)))
    np.save(tmp_path / "zero.npy", np.zeros((3, 3)))
    np.save(tmp_path / "big.npy", np.ones((9, 9)))
    np.save(tmp_path / "complex.npy", np.ones((3, 3), dtype=complex))
    np.savez(tmp_path / "archive.npz", k=np.ones((3, 3)))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    bad = {
        "negative.npy": "must be a 2-D array of finite weights >= 0",
        "zero.npy": "must have a finite, positive sum",
        "complex.npy": "holds complex128 values; expected real numbers",
        "archive.npy": "is an .npz archive; expected one .npy array",
        "big.npy": "kernel must be 2-D and fit in the image (1, 8, 8), got (9, 9)",
        "nope.png": "--kernel: image file",
    }
    for name, expected in bad.items():
        line = error_line(monkeypatch, capsys, *args, "--kernel", tmp_path / name, "--out", tmp_path / "x")
        assert expected in line, line
    line = error_line(monkeypatch, capsys, *args, "--out", tmp_path / "x")
    assert line == "error: operator 'blur-kernel' needs a blur kernel (--kernel FILE)"
    line = error_line(monkeypatch, capsys, *args[:3], "--operator", "sr2", "--kernel", tmp_path / "psf.npy",
                      "--out", tmp_path / "x")  # fmt: skip
    assert line == "error: --kernel is for --operator blur-kernel, got --operator sr2"
    assert not (tmp_path / "x").exists()


def test_solve_with_a_users_matrix_or_kspace_mask(tmp_path, tiny_prior, monkeypatch, capsys):
    import numpy as np

    from posteria.io import save_image

    np.save(tmp_path / "A.npy", np.random.default_rng(0).standard_normal((16, 64)) / 8)
    measured = -torch.ones(1, 8, 8)
    measured[:, :, 3:6] = 1  # three central columns of k-space
    save_image(measured, tmp_path / "kspace.png")
    base = ["solve", "--prior", str(tiny_prior.folder), "--method", "ddrm", "--steps", "2", "--samples", "1",
            "--test-digits", "1"]  # fmt: skip
    for operator, option, path in (("matrix", "--matrix", "A.npy"), ("mri-mask", "--mask", "kspace.png")):
        out = tmp_path / operator
        result = CliRunner().invoke(
            app, [*base, "--operator", operator, option, str(tmp_path / path), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics[option[2:]] == str(tmp_path / path) and metrics["consistency"] > 0
    np.save(tmp_path / "cube.npy", np.ones((2, 16, 64)))
    np.save(tmp_path / "nan.npy", np.full((16, 64), np.nan))
    for path in ("cube.npy", "nan.npy"):
        line = error_line(monkeypatch, capsys, *base, "--operator", "matrix", "--matrix", tmp_path / path,
                          "--out", tmp_path / "x")  # fmt: skip
        assert line.startswith("error: --matrix") and line.endswith(
            "must be a 2-D array (m, D) of finite numbers"
        )
    line = error_line(monkeypatch, capsys, *base, "--matrix", tmp_path / "A.npy", "--out", tmp_path / "x")
    assert line == "error: --matrix is for --operator matrix, got --operator inpaint-box"
    save_image(torch.ones(1, 16, 16), tmp_path / "large.png")
    save_image(-torch.ones(1, 8, 8), tmp_path / "black.png")
    for path, expected in (("large.png", "is 16x16; expected exactly 8x8 (it is not resized)"),
                           ("black.png", "has no measured (white) frequencies")):  # fmt: skip
        line = error_line(monkeypatch, capsys, *base, "--operator", "mri-mask", "--mask", tmp_path / path,
                          "--out", tmp_path / "x")  # fmt: skip
        assert line.startswith("error: --mask") and expected in line


def test_export_prior_writes_the_note_into_the_card(tmp_path, tiny_prior):
    invoke("export-prior", "--checkpoint", tiny_prior.checkpoint, "--out", tmp_path / "prior",
           "--name", "tiny", "--note", "3 steps on 2 cores")  # fmt: skip
    card = json.loads((tmp_path / "prior" / "card.json").read_text())
    assert card["name"] == "tiny" and card["note"] == "3 steps on 2 cores"


# ------------------------------------------------------------------------------------------ bench


def test_bench_speed_measures_a_prior(tmp_path, tiny_prior):
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "speed",
            "--prior",
            str(tiny_prior.folder),
            "--out",
            str(tmp_path),
            "--batch",
            "4",
            "--repeats",
            "1",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "speed.json").read_text())["results"][0]
    for key in ("train_images_per_s", "denoiser_evals_per_s", "sampler_overhead"):
        assert row[key] > 0
    assert "torch" in (tmp_path / "speed.md").read_text()


def test_bench_restore_help_shows_the_default_noise():
    # "[default: 0.05]" in a help text is read as rich markup and vanishes
    assert "(default 0.05)" in invoke("bench", "restore", "--help").output


def test_bench_restore_checks_set_options_before_any_run(tmp_path, monkeypatch, capsys):
    import posteria.bench.restore as bench

    def run_restore(spec: object) -> None:
        raise AssertionError("the runs started before --set was checked")

    monkeypatch.setattr(bench, "run_restore", run_restore)
    line = error_line(monkeypatch, capsys, "bench", "restore", "--out", tmp_path, "--set", "mmps.renoice=1")
    assert line.startswith("error: --set 'mmps.renoice=1': method 'mmps' takes no option renoice")
    args = ("bench", "restore", "--out", tmp_path, "--set", "mmps.maxiter=3", "--set", "mmps.renoice=1")
    line = error_line(monkeypatch, capsys, *args)  # each --set as typed, not joined into one
    assert line.startswith("error: --set 'mmps.maxiter=3' --set 'mmps.renoice=1': method 'mmps' takes no")
    line = error_line(
        monkeypatch, capsys, "bench", "restore", "--out", tmp_path, "--variant", "mmps.a=1,mmps.b=2"
    )
    assert line.startswith("error: --variant 'mmps.a=1,mmps.b=2': method 'mmps' takes no option a, b")
    args = ("bench", "restore", "--out", tmp_path, "--methods", "dps,mmps", "--set", "ddrm.eta=1")
    line = error_line(monkeypatch, capsys, *args)  # ddrm does not run: its option would be ignored
    assert line == "error: --set 'ddrm.eta=1': expected method.key=value with a method among dps, mmps"


def test_quality_runs_parse_and_reject_nonsense():
    from posteria.bench.quality import parse_runs
    from posteria.errors import PosteriaError

    assert parse_runs("ddim:50,heun:18:karras") == [("ddim", 50, {}), ("heun", 18, {"spacing": "karras"})]
    with pytest.raises(PosteriaError, match="sampler:steps"):
        parse_runs("ddim")


# ------------------------------------------------------------------------------- trained networks


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("command", ["train-classifier", "train-regressor"])
def test_trained_networks_are_saved_with_a_card_and_load_back(tmp_path, command):
    from posteria.priors import load_classifier, load_regressor

    invoke(command, "--data", "digits", "--steps", "2", "--out", tmp_path)
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["train_steps"] == 2 and card["command"].startswith("posteria")
    model = (load_classifier if command == "train-classifier" else load_regressor)(tmp_path)
    assert model.card == card and not model.training


def test_bench_without_a_suite_runs_every_suite_and_indexes_them(tmp_path, monkeypatch):
    """The suites themselves are tested above and in test_bench_*.py; here they are stubs that write
    their files, so this checks the orchestration and the index."""
    import posteria.cli as cli

    calls = []

    def stub(name: str, files: tuple[str, ...]):
        def run(out: Path, **kw: object) -> None:
            calls.append((name, kw))
            for f in files:
                (out / f).write_text("x")

        return run

    monkeypatch.setattr(cli, "bench_speed", stub("speed", ("speed.md", "speed.json")))
    monkeypatch.setattr(cli, "bench_quality", stub("quality", ("quality.md", "quality.json", "quality.png")))
    monkeypatch.setattr(cli, "bench_restore", stub("restore", ("restore.md", "restore_sr4.png")))
    monkeypatch.setattr(cli, "bench_posterior", stub("posterior", ("posterior.md", "figure_7_11.png")))
    invoke("bench", "--out", tmp_path, "--quick", "--seed", "3")
    assert [name for name, _ in calls] == ["speed", "quality", "restore", "posterior"]
    assert all(kw.get("seed", 3) == 3 for _, kw in calls)
    index = (tmp_path / "index.md").read_text()
    assert "[quality.md](quality.md)" in index and "![restore_sr4.png](restore_sr4.png)" in index
    assert "restore.json (not written)" in index and "![figure_7_11.png](figure_7_11.png)" in index
    assert "Seed 3; quick settings" in index and "torch" in index
