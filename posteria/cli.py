"""The ``posteria`` command line: a thin layer over the library's public calls.

Every command turns a :class:`~posteria.errors.PosteriaError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from posteria.errors import PosteriaError, check_count

if TYPE_CHECKING:  # the commands import the library lazily, so that `posteria --help` starts fast
    import torch

    from posteria.denoisers.base import Denoiser
    from posteria.lab.priors import GaussianMixturePrior
    from posteria.lab.scores import ExactReference
    from posteria.operators.base import Operator
    from posteria.restore import Restoration

app = typer.Typer(
    help="posteria: diffusion priors you can train, sample and use to solve inverse problems.\n\n"
    "Start with `posteria demo --out out/demo`, then `posteria sample --out out/sample`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _folder(value: str | Path) -> Path:
    """A folder named on the command line; the empty string, which ``Path`` reads as the current folder,
    is refused (``--out ""`` is more likely an unset shell variable than a wish to write here)."""
    if isinstance(value, str) and not value.strip():
        raise typer.BadParameter(f"expected a folder path, got {value!r}")
    return Path(value)


@app.callback()
def _root() -> None:
    """posteria: diffusion priors you can train, sample and use to solve inverse problems."""


@app.command()
def train(
    config: Annotated[Path | None, typer.Option(help="TOML or JSON config; defaults otherwise.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: --set steps=2000 (repeatable).")
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Ignore an existing checkpoint in the output folder.")] = False,
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: torch's default).")] = 0,
) -> None:
    """Train a diffusion prior; checkpoints go to OUT/checkpoint (OUT: the config's out, or --set out=DIR)
    and a run resumes from there."""
    import torch

    from posteria.train.config import load_config
    from posteria.train.loop import fit

    if threads > 0:
        torch.set_num_threads(threads)
    cfg = load_config(config, set_)
    trainer = fit(cfg, resume=not fresh, command=" ".join(["posteria", *sys.argv[1:]]))
    typer.echo(f"trained {trainer.step} steps; checkpoint in {Path(cfg.out) / 'checkpoint'}")


@app.command()
def sample(
    out: Annotated[Path, typer.Option(parser=_folder, help="Folder for samples.png and metrics.json.")],
    prior: Annotated[str, typer.Option(help="Shipped prior name or prior folder.")] = "mnist",
    sampler: Annotated[str, typer.Option(help="ddpm, ddim, euler, heun, pc (langevin).")] = "ddim",
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = 50,
    n: Annotated[int, typer.Option("-n", "--n", help="Number of samples.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed; sample i depends only on it and i.")] = 0,
    spacing: Annotated[
        str, typer.Option(help="Time grid: uniform, quadratic, reverse-quadratic, karras, log.")
    ] = "uniform",
    eta: Annotated[
        float | None, typer.Option(help="DDIM noise level, ddim only (default 0: deterministic).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per network batch.")] = 256,
) -> None:
    """Sample a prior; writes OUT/samples.png and OUT/metrics.json (FD against held-out digits, time)."""
    _start(out, seed)
    import time

    import torch

    import posteria as pa
    from posteria.io import save_grid, staged_folder
    from posteria.metrics.quality import digit_quality
    from posteria.train.checkpoint import save_json

    den = pa.load_prior(prior)
    options = {"spacing": spacing} | ({"eta": eta} if eta is not None else {})
    runner = pa.get_sampler(sampler, den, steps, **options)  # validates names before the long run
    start = time.perf_counter()
    x = pa.sample(den, sampler, steps, n, torch.Generator().manual_seed(seed), batch_size=batch_size,
                  progress=True, **options)  # fmt: skip
    seconds = time.perf_counter() - start
    metrics = {"prior": prior, "sampler": sampler, "steps": steps, "nfe": runner.nfe, "n": n, "seed": seed,
               "spacing": spacing, "wall_time_s": round(seconds, 3)}  # fmt: skip
    quality = digit_quality(x, den.card.get("data", "mnist"))
    if quality is not None:
        metrics |= {**quality, "fd_reference": "mnist10k test split (1,000 digits)"}
    with staged_folder(out) as stage:
        save_grid(x, stage / "samples.png", scale=2)
        save_json(metrics, stage / "metrics.json")
    typer.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


@app.command()
def solve(
    out: Annotated[
        Path,
        typer.Option(
            parser=_folder,
            help="Folder for panels, measurement, samples, mean, std (PNG), metrics.json and "
            "result.safetensors (y, samples, mean, std: --measurement reruns on its y).",
        ),
    ],
    prior: Annotated[
        str,
        typer.Option(
            help="Shipped prior name, prior folder, or an exact prior (mnist-mixture: --test-digits are its "
            "draws, and metrics.json compares the samples with its exact posterior)."
        ),
    ] = "mnist",
    operator: Annotated[
        str, typer.Option(help="Measurement operator (see `posteria methods`).")
    ] = "inpaint-box",
    method: Annotated[str, typer.Option(help="Posterior method (see `posteria methods`).")] = "mmps",
    sigma_y: Annotated[
        float | None,
        typer.Option(help="Standard deviation of Gaussian measurement noise, > 0 (default 0.05)."),
    ] = None,
    poisson: Annotated[
        float | None,
        typer.Option(help="Poisson (photon-count) noise instead of Gaussian: the count of a white pixel."),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps (default: the method's).")] = None,
    test_digits: Annotated[
        int, typer.Option(help="How many held-out test digits (an exact prior's draws) to restore.")
    ] = 8,
    input_image: Annotated[
        Path | None,
        typer.Option(
            "--input", help="Restore this image, or every image in this folder (degraded by the operator)."
        ),
    ] = None,
    measurement: Annotated[
        Path | None,
        typer.Option(
            help="Restore your own measurement y instead: .safetensors (tensor 'y'), .npy, or a picture for "
            "denoise, blur, sr and inpainting operators. No truth, so no PSNR."
        ),
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Your mask: for --operator inpaint-mask white pixels are observed, black ones filled "
            "in; for mri-mask white frequencies are measured (DC at the centre)."
        ),
    ] = None,
    kernel: Annotated[
        Path | None,
        typer.Option(
            help="Your blur kernel (point-spread function) for --operator blur-kernel: a 2-D .npy of weights "
            "or a picture (grey level = weight); scaled to sum 1."
        ),
    ] = None,
    matrix: Annotated[
        Path | None,
        typer.Option(
            help="Your measurement matrix for --operator matrix: a .npy of shape (m, D), D = pixels."
        ),
    ] = None,
    samples: Annotated[int, typer.Option(help="Posterior samples per measurement.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed (measurement noise and sampling).")] = 0,
    batch_size: Annotated[
        int,
        typer.Option(
            help="Samples per network batch: measurements run batch-size // samples at a time (at least "
            "one). For memory: the samples are the same, to float32 rounding."
        ),
    ] = 256,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A method option: --set eta=1.0, --set sampler=ddim (repeatable)."),
    ] = None,
) -> None:
    """Sample the posterior of an inverse problem y = A(x) + w and score it (PSNR, SSIM, consistency)."""
    _start(out, seed)
    from posteria.io import staged_folder
    from posteria.lab.fit import restoration_prior
    from posteria.lab.scores import exact_reference
    from posteria.posterior.base import check_method, check_options
    from posteria.restore import restore, save_exact_posterior, save_restoration
    from posteria.train.checkpoint import save_json

    noise_level = _noise_level(sigma_y, poisson)
    options = _options(set_)
    den, exact = restoration_prior(prior)
    den = den if exact is None else den.float()
    files = {"mask": mask, "kernel": kernel, "matrix": matrix}
    op = _solve_operator(operator, den, noise_level, files)
    metrics = {
        "prior": prior,
        "operator": operator,
        **noise_level,
        "n": samples,
        "seed": seed,
        "options": options,
    }
    metrics |= {key: str(path) for key, path in files.items() if path is not None}
    truth, y, source = _truth_and_measurement(den, op, test_digits, input_image, measurement, seed, exact)
    metrics |= source
    # Checked before restore(), whose own arguments (seed, batch_size, ...) an option could shadow.
    check_options(check_method(method, op), options)
    per_batch = max(1, check_count("batch_size", batch_size) // check_count("samples", samples))
    result = restore(den, op, y, method, steps, samples, seed, truth, True, per_batch, **options)
    metrics |= result.metrics(op)
    reference = None if exact is None else exact_reference(exact, op, y, truth, seed)
    metrics |= {} if exact is None else _exact_scores(reference, result)
    with staged_folder(out) as stage:
        save_restoration(result, op, stage)
        if reference is not None:
            save_exact_posterior(reference, stage)
        save_json(metrics, stage / "metrics.json")
    if reference is None:  # an earlier solve's exact posterior would read as this run's
        for stale in ("exact_mean.png", "exact_std.png"):
            (Path(out) / stale).unlink(missing_ok=True)
    typer.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


def _exact_scores(reference: ExactReference | None, result: Restoration) -> dict[str, object]:
    """How ``solve``'s samples compare with an exact prior's posterior (:meth:`ExactReference.scores`), or
    why there is nothing to compare with."""
    from posteria.lab.scores import NO_EXACT_POSTERIOR

    if reference is None:
        return {"exact_posterior": NO_EXACT_POSTERIOR}
    return reference.scores(result.samples, result.truth)


def _solve_operator(
    name: str, prior: Denoiser, noise_level: dict[str, float], files: dict[str, Path | None]
) -> Operator:
    """The operator ``solve`` measures with: a registry name, or one built from the user's ``--mask``,
    ``--kernel`` or ``--matrix`` file (``files``, keyed by option), each for its operators only."""
    import posteria as pa
    from posteria.operators.registry import USER_KSPACE, operators_taking
    from posteria.restore import input_kernel, input_mask, input_matrix

    for key, path in files.items():  # before reading a file that this operator would not take
        if path is not None and name not in operators_taking(key):
            owners = " or ".join(operators_taking(key))
            raise PosteriaError(f"--{key} is for --operator {owners}, got --operator {name}")
    frequencies = name == USER_KSPACE
    readers = {"mask": lambda p: input_mask(p, prior.event_shape, frequencies), "kernel": input_kernel,
               "matrix": input_matrix}  # fmt: skip
    arrays = {key: None if path is None else readers[key](path) for key, path in files.items()}
    poisson = noise_level.get("poisson")
    noise = None if poisson is None else pa.operators.PoissonNoise(poisson)
    sigma_y = noise_level.get("sigma_y", 0.0)
    try:
        return pa.operators.get_operator(name, prior.event_shape, sigma_y, noise=noise, **arrays)
    except PosteriaError as err:  # e.g. a kernel larger than the image: name the file it came from
        given = [f"--{key} {str(path)!r}" for key, path in files.items() if path is not None]
        raise PosteriaError(f"{given[0]}: {err}" if given else str(err)) from err


def _truth_and_measurement(
    prior: Denoiser,
    operator: Operator,
    test_digits: int,
    image: Path | None,
    measurement: Path | None,
    seed: int,
    exact: GaussianMixturePrior | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor, dict[str, object]]:
    """What ``solve`` restores: the user's measurement (no truth), the user's image measured, or held-out
    digits measured (on an ``exact`` prior: its own draws, seed ``seed``). Returns the truth (B, *event)
    or None, ``y`` (B, *measurement) and the metrics that say which."""
    from posteria.lab.fit import prior_draws
    from posteria.measurements import read_measurement
    from posteria.restore import held_out_digits, input_truth, measure, measurement_colour

    if image is not None and measurement is not None:
        raise PosteriaError("give --input (an image to measure) or --measurement (your y), not both")
    if measurement is not None:
        y = read_measurement(measurement, operator)
        source = {"measurement": str(measurement), "measurements": y.shape[0]}
        return None, y, source | _noted_colour("--measurement", measurement_colour(measurement, operator))
    if image is not None:
        truth, source = input_truth(image, prior.event_shape)
        _noted_colour("--input", source)
    elif exact is not None:
        truth = prior_draws(exact, check_count("test_digits", test_digits), seed).float()
        source = {"prior_draws": test_digits}
    else:
        truth = held_out_digits(prior.card["data"], test_digits)
        source = {"test_digits": truth.shape[0]}
    return truth, measure(operator, truth, seed), source


def _noted_colour(option: str, source: dict[str, object]) -> dict[str, object]:
    """``source``, after a note on stderr naming its ``colour_to_grey`` pictures, if any."""
    if "colour_to_grey" in source:
        names = ", ".join(source["colour_to_grey"])  # type: ignore[arg-type]
        note = f"note: {option} colour pictures read as grey (the prior has one channel): {names}"
        typer.echo(note, err=True)
    return source


@app.command("methods")
def methods_cmd() -> None:
    """List the posterior methods, what each needs, their options, and the operators."""
    from posteria.operators.registry import OPERATORS, USER_OPERATORS
    from posteria.options import describe
    from posteria.posterior import methods

    for m in methods():
        needs = ", ".join(m["needs"]) or "any operator"
        steps = f"{m['default_steps']} step{'' if m['default_steps'] == 1 else 's'}"
        typer.echo(f"{m['name']:<12} {m['summary']} [needs: {needs}; {steps}] ({m['reference']})")
        typer.echo(f"{'':<12} options (--set key=value): {describe(m['options'])}")
        typer.echo(f"{'':<12} operators: {', '.join(m['operators'])}")
    user = [f"{name} (with --{keyword} FILE)" for name, (keyword, _, _) in USER_OPERATORS.items()]
    typer.echo("operators: " + ", ".join([*OPERATORS, *user]))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(parser=_folder, help="Folder for index.md and its figures.")] = Path(
        "out/demo"
    ),
    prior: Annotated[str, typer.Option(help="Shipped prior name or prior folder.")] = "mnist",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """The main job on the bundled prior (under 2 minutes on 2 CPU cores): writes OUT/index.md."""
    _start(out, seed)
    from posteria.demo import run_demo
    from posteria.io import staged_folder

    with staged_folder(out) as stage:
        index = run_demo(stage, prior, seed)
    typer.echo(f"wrote {out / index.name}")


@app.command("export-prior")
def export_prior_cmd(
    checkpoint: Annotated[Path, typer.Option(help="Training checkpoint folder (OUT/checkpoint).")],
    out: Annotated[
        Path, typer.Option(parser=_folder, help="Prior folder to write (weights.safetensors + card.json).")
    ],
    name: Annotated[str, typer.Option(help="Name recorded in the card.")] = "mnist",
    metrics: Annotated[
        Path | None, typer.Option(help="A results JSON of `posteria bench` whose results go in the card.")
    ] = None,
    note: Annotated[str, typer.Option(help="Free text for the card (hardware, caveats).")] = "",
) -> None:
    """Package the EMA weights of a checkpoint as a prior: safetensors and a JSON card."""
    import json

    from posteria.priors import export_prior
    from posteria.train.checkpoint import read_state

    meta = read_state(checkpoint).get("meta", {})
    card = {
        "name": name,
        "wall_time_s": round(meta.get("wall_time_s", 0.0), 1),
        "command": meta.get("command", ""),
    }
    if metrics is not None:
        if not metrics.is_file():
            raise PosteriaError(f"metrics file {metrics} does not exist")
        card["metrics"] = json.loads(metrics.read_text())
    if note:
        card["note"] = note
    typer.echo(f"wrote {export_prior(checkpoint, out, card)}")


@app.command("train-classifier")
def train_classifier_cmd(
    out: Annotated[Path, typer.Option(parser=_folder, help="Folder for weights.safetensors and card.json.")],
    data: Annotated[str, typer.Option(help="Labelled data set (mnist, digits).")] = "mnist",
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 800,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train the digit classifier used for the offline Frechet distance (FD) and confidence."""
    _start(out, seed)
    from posteria.data import load_dataset
    from posteria.priors import save_network
    from posteria.train.classifier import accuracy, train_classifier

    x, y = load_dataset(data, "train")
    if y is None:
        raise PosteriaError(f"data set {data!r} has no labels; a classifier needs a labelled set")
    model, seconds = train_classifier(x, y, steps=steps, seed=seed)
    x_test, y_test = load_dataset(data, "test")
    card = {
        "kind": "classifier",
        "config": model.config.to_dict(),
        "data": data,
        "split": "train",
        "train_steps": steps,
        "wall_time_s": round(seconds, 1),
        "command": " ".join(["posteria", *sys.argv[1:]]),
        "metrics": {"test_accuracy": accuracy(model, x_test, y_test)},
    }
    save_network(model, card, out)
    typer.echo(f"test accuracy {card['metrics']['test_accuracy']:.4f}; saved to {out}")


@app.command("train-regressor")
def train_regressor_cmd(
    out: Annotated[Path, typer.Option(parser=_folder, help="Folder for weights.safetensors and card.json.")],
    data: Annotated[str, typer.Option(help="Image data set (mnist, digits, a folder or .npz).")] = "mnist",
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train the masked-autoencoder-style regression baseline (method ``regression``)."""
    _start(out, seed)
    from posteria.classical.regression import RegressorTraining, regression_error, train_regressor
    from posteria.data import load_dataset
    from posteria.priors import save_network

    x, _ = load_dataset(data, "train")
    settings = RegressorTraining(steps=check_count("steps", steps), seed=seed)
    model, seconds = train_regressor(x, settings)
    card = {
        "kind": "regressor",
        "config": model.config.to_dict(),
        "event_shape": list(x.shape[1:]),
        "data": data,
        "split": "train",
        "train_steps": steps,
        "wall_time_s": round(seconds, 1),
        "command": " ".join(["posteria", *sys.argv[1:]]),
        "metrics": {"test_mse_random_masks": regression_error(model, load_dataset(data, "test")[0])},
    }
    save_network(model, card, out)
    typer.echo(f"test MSE {card['metrics']['test_mse_random_masks']:.4f}; saved to {out}")


bench_app = typer.Typer(help="Benchmarks: results as JSON, Markdown tables and PNG figures.")
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
def bench_all(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option(parser=_folder, help="Report folder for every suite and index.md.")
    ] = Path("out/bench"),
    seed: Annotated[int, typer.Option(help="Random seed of every suite.")] = 0,
    quick: Annotated[bool, typer.Option(help="Small settings: a smoke run in minutes, not hours.")] = False,
) -> None:
    """Without a suite: run every suite (speed, quality, restore, posterior) into one report folder with
    an index.md linking every table and figure."""
    if ctx.invoked_subcommand is not None:
        return
    _start(out, seed)
    from posteria.bench.index import suite_files, write_index

    bench_speed(out=out, batch=16 if quick else 64, repeats=1 if quick else 3)
    bench_quality(out=out, n=64 if quick else 1000, seed=seed, runs="ddim:20" if quick else None)
    restore = {"digits": 2, "steps": 10, "reference_steps": 20, "tasks": "inpaint-box,sr4"} if quick else {}
    bench_restore(out=out, seed=seed, **restore)
    posterior = {"dims": "8", "measurements": "1", "noise": "0.1", "budgets": "10,100", "samples": 100}
    bench_posterior(out=out, seed=seed, **(posterior if quick else {}))
    suites = {name: suite_files(out, name) for name in ("speed", "quality", "restore", "posterior")}
    suites["posterior"].append("figure_7_11.png")
    typer.echo(f"wrote {write_index(out, suites, seed, quick)}")


def _write_results(out: Path, name: str, rows: list[dict], title: str) -> None:
    """OUT/NAME.json and OUT/NAME.md with the machine line."""
    import json

    from posteria.io import atomic_write_text
    from posteria.report.markdown import machine, machine_line, table

    atomic_write_text(out / f"{name}.json", json.dumps({"machine": machine(), "results": rows}, indent=2))
    atomic_write_text(out / f"{name}.md", f"## {title}\n\n{table(rows)}\n\n{machine_line()}\n")
    typer.echo(table(rows))


@bench_app.command("speed")
def bench_speed(
    out: Annotated[Path, typer.Option(parser=_folder, help="Folder for speed.json and speed.md.")] = Path(
        "out/bench"
    ),
    prior: Annotated[str, typer.Option(help="Shipped prior name or prior folder.")] = "mnist",
    batch: Annotated[int, typer.Option(help="Batch size.")] = 64,
    repeats: Annotated[int, typer.Option(help="Timed repeats (the best is kept).")] = 3,
) -> None:
    """Training images/s, denoiser evaluations/s, DDIM-50 wall time, sampler overhead, and the speed-up of
    the channels-last layout over contiguous weights."""
    _start(out)
    from posteria.bench.speed import run_speed

    _write_results(out, "speed", [run_speed(prior, batch, repeats=repeats)], "Speed")


@bench_app.command("quality")
def bench_quality(
    out: Annotated[
        Path, typer.Option(parser=_folder, help="Folder for quality.json, quality.md, quality.png.")
    ] = Path("out/bench"),
    prior: Annotated[str, typer.Option(help="Shipped prior name or prior folder.")] = "mnist",
    n: Annotated[int, typer.Option("-n", "--n", help="Samples per sampler.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    runs: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated sampler:steps[:spacing] runs "
            "(default: ddpm:1000,ddim:50,ddim:20,heun:18:karras)."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Base name of the result files.")] = "quality",
) -> None:
    """FD of N samples per sampler and step budget, next to the floor of N training digits."""
    _start(out, seed)
    from posteria.bench.quality import parse_runs, plot_quality, run_quality

    rows = run_quality(prior, n, seed, parse_runs(runs) if runs else None)
    _write_results(out, name, rows, f"Sample quality ({n} samples)")
    plot_quality(rows, out / f"{name}.png")


@bench_app.command("restore")
def bench_restore(
    out: Annotated[
        Path, typer.Option(parser=_folder, help="Folder for restore.json, restore.md and PNG figures.")
    ] = Path("out/bench"),
    prior: Annotated[
        str,
        typer.Option(
            help="Shipped prior name, prior folder, or an exact prior (mnist-mixture: its own draws are "
            "restored and scored against its exact posterior)."
        ),
    ] = "mnist",
    tasks: Annotated[str | None, typer.Option(help="Comma-separated operators (default: the six).")] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods (default: all).")] = None,
    digits: Annotated[int, typer.Option(help="Held-out test digits (an exact prior's draws) per task.")] = 16,
    samples: Annotated[int, typer.Option(help="Samples per digit (psnr_mean: PSNR of their mean).")] = 1,
    steps: Annotated[int, typer.Option(help="Steps of the posterior samplers.")] = 100,
    reference_steps: Annotated[int, typer.Option(help="Steps of the reference DPS run.")] = 1000,
    sigma_y: Annotated[float | None, typer.Option(help="Gaussian measurement noise (default 0.05).")] = None,
    poisson: Annotated[
        float | None,
        typer.Option(help="Poisson noise instead: counts of a white pixel (the pixel tasks of the six)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    peers: Annotated[
        bool, typer.Option(help="Also run the peers (azula, deepinv) where installed (Gaussian noise).")
    ] = True,
    repeats: Annotated[
        int, typer.Option(help="Pairs of runs, ours and a peer's in turn, behind each ours/theirs ratio.")
    ] = 1,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A method's option for all its runs: --set ddrm.eta=1 (repeatable)."),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            help="A method run again with options, next to its defaults: --variant mmps.renoise=1 "
            "(repeatable; one method's options joined by commas; replaces the shipped variants)."
        ),
    ] = None,
    variants: Annotated[
        bool, typer.Option(help="Run the variants (default: mmps renoise=1, ddnm renoise=0.85).")
    ] = True,
) -> None:
    """Every method on the restoration tasks: PSNR, SSIM, consistency, NFE, s/image, vs azula and deepinv."""
    if variant and not variants:
        raise PosteriaError("--variant and --no-variants: expected one of them, not both")
    _start(out, seed)
    from posteria.bench.restore import (
        TUNED_VARIANTS,
        RestoreBench,
        plot_peers,
        plot_psnr,
        plot_task,
        report,
        run_restore,
    )
    from posteria.errors import check_count
    from posteria.io import atomic_write_text
    from posteria.operators.registry import OPERATORS
    from posteria.posterior import METHODS

    noise = _noise_level(sigma_y, poisson)
    chosen = _choices("methods", methods, list(METHODS)) if methods else None
    spec = RestoreBench(
        prior=prior,
        tasks=_choices("tasks", tasks, list(OPERATORS)) if tasks else None,
        methods=chosen,
        digits=check_count("digits", digits),
        n=check_count("samples", samples),
        steps=check_count("steps", steps),
        reference_steps=check_count("reference-steps", reference_steps),
        sigma_y=noise.get("sigma_y", 0.0),
        poisson=noise.get("poisson"),
        seed=seed,
        peers=peers,
        repeats=check_count("repeats", repeats),
        # --set on a method that does not run is refused, not ignored
        options=_method_options(set_, list(chosen or METHODS)),
        variants=(_variants(variant, list(METHODS)) if variant else TUNED_VARIANTS) if variants else (),
    )
    rows, shown = run_restore(spec)
    for task, images in shown.items():
        plot_task(images, out / f"restore_{task}.png")
    plot_psnr(rows, out / "restore_psnr.png")
    plot_peers(rows, out / "restore_peers.png")
    json_text, markdown = report(rows, spec)
    atomic_write_text(out / "restore.json", json_text)
    atomic_write_text(out / "restore.md", markdown)
    typer.echo(markdown)


@bench_app.command("posterior")
def bench_posterior(
    out: Annotated[
        Path, typer.Option(parser=_folder, help="Folder for posterior.json, posterior.md and PNG figures.")
    ] = Path("out/bench"),
    dims: Annotated[str, typer.Option(help="Comma-separated signal dimensions D.")] = "8,80,800",
    measurements: Annotated[str, typer.Option(help="Comma-separated measurement counts m.")] = "1,4",
    noise: Annotated[str, typer.Option(help="Comma-separated measurement noises sigma_y.")] = "0.1,0.01",
    budgets: Annotated[str, typer.Option(help="Comma-separated step budgets.")] = "10,100,1000",
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods (default: all).")] = None,
    samples: Annotated[int, typer.Option(help="Samples per measurement.")] = 500,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Every method against the exact posterior of a low-rank mixture prior, next to the Monte-Carlo
    floor; and the seed chapter's Figure 7.11 (DPS variance collapse) with MMPS."""
    _start(out, seed)
    import json

    from posteria.bench.figure711 import figure_7_11
    from posteria.bench.posterior import PosteriorBench, best_per_budget, plot_posterior, run_posterior
    from posteria.errors import check_count
    from posteria.io import atomic_write_text
    from posteria.posterior import METHODS
    from posteria.report.markdown import machine, machine_line, table

    spec = PosteriorBench(
        dims=_numbers("dims", dims, integer=True),
        measurements=_numbers("measurements", measurements, integer=True),
        noise=_numbers("noise", noise),
        budgets=_numbers("budgets", budgets, integer=True),
        methods=_choices("methods", methods, list(METHODS)) if methods else None,
        n=check_count("samples", samples, minimum=2),
        seed=seed,
    )
    rows = run_posterior(spec)
    best = best_per_budget(rows)
    figure = figure_7_11(out, seed=seed)
    plot_posterior(rows, out / "posterior.png")
    data = {"machine": machine(), "results": rows, "best": best, "figure_7_11": figure}
    atomic_write_text(out / "posterior.json", json.dumps(data, indent=2))
    markdown = (
        f"## Distance to the exact posterior ({spec})\n\n{table(rows)}\n\n"
        f"### Closest method per NFE budget\n\n{table(best)}\n\n"
        f"### Figure 7.11: variance along the row of A\n\n{table(figure)}\n\n{machine_line()}\n"
    )
    atomic_write_text(out / "posterior.md", markdown)
    typer.echo(markdown)


def _noise_level(sigma_y: float | None, poisson: float | None) -> dict[str, float]:
    """``{"sigma_y": s}`` (0.05 by default) or ``{"poisson": rate}``; one line if both are given."""
    from posteria.errors import check_positive

    if sigma_y is not None and poisson is not None:
        raise PosteriaError("give --sigma-y (Gaussian noise) or --poisson (photon counts), not both")
    if poisson is not None:
        return {"poisson": check_positive("poisson", poisson)}
    return {"sigma_y": check_positive("sigma_y", 0.05 if sigma_y is None else sigma_y)}


def _start(out: Path, seed: int = 0) -> None:
    """Check ``seed`` and that ``out`` can be a folder before any long work, so either fails first."""
    from posteria.errors import check_seed
    from posteria.io import check_output_folder

    check_seed(seed)
    check_output_folder(out)


def _numbers(name: str, text: str, integer: bool = False) -> tuple:
    """Comma-separated non-negative numbers (positive integers with ``integer``); one line naming
    ``name`` otherwise."""
    what = "positive integers" if integer else "numbers >= 0"
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    ok = values and all(v > 0 and v.is_integer() if integer else v >= 0 for v in values)
    if not ok:
        raise PosteriaError(f"{name} must be comma-separated {what}, got {text!r}")
    return tuple(int(v) for v in values) if integer else tuple(values)


def _options(items: list[str] | None) -> dict[str, object]:
    """``--set key=value`` items as keyword options (values as :func:`_option_value` reads them)."""
    options: dict[str, object] = {}
    for item in items or []:
        key, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not key.isidentifier() or not text:
            raise PosteriaError(f"--set {item!r}: expected key=value, e.g. --set eta=1.0")
        options[key] = _option_value(text)
    return options


def _option_value(text: str) -> object:
    """A TOML literal (``1``, ``0.5``, ``true``, ``"text"``, ``[-1, 1]``); the defaults as ``posteria
    methods`` prints them, ``None`` and a tuple ``(-1.0, 1.0)``; otherwise the word itself (``ddim``)."""
    import tomllib

    if text in ("None", "none", "null"):
        return None
    bracketed = text.startswith("(") and text.endswith(")")
    try:
        value = tomllib.loads(f"value = {'[' + text[1:-1] + ']' if bracketed else text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
    return tuple(value) if bracketed else value


def _method_options(
    items: list[str] | None, known: list[str], option: str = "--set"
) -> dict[str, dict[str, object]]:
    """``method.key=value`` items as ``{method: {key: value}}``, methods checked against ``known`` and
    options against what each method takes: a misspelt option fails here, not after the runs before it."""
    from posteria.posterior import METHODS
    from posteria.posterior.base import check_options

    grouped: dict[str, dict[str, object]] = {}
    given: dict[str, list[str]] = {}
    for item in items or []:
        method, dot, rest = (part.strip() for part in item.partition("."))
        if method not in known:
            raise PosteriaError(
                f"{option} {item!r}: expected method.key=value with a method among {', '.join(known)}"
            )
        grouped.setdefault(method, {}).update(_options([rest]))
        given.setdefault(method, []).append(item)
    for method, options in grouped.items():  # checked together: one item's sampler admits another's keys
        try:
            check_options(METHODS[method], options)
        except PosteriaError as e:  # as typed: one --variant of comma-joined items, or one --set per item
            typed = [",".join(given[method])] if option == "--variant" else given[method]
            raise PosteriaError(f"{' '.join(f'{option} {item!r}' for item in typed)}: {e}") from None
    return grouped


def _variants(items: list[str], known: list[str]) -> tuple[tuple[str, dict[str, object]], ...]:
    """``--variant mmps.renoise=1,mmps.maxiter=3`` items as (method, options), one method per item."""
    variants = []
    for item in items:
        grouped = _method_options(item.split(","), known, "--variant")
        if len(grouped) != 1:
            raise PosteriaError(f"--variant {item!r}: expected the options of one method, got {len(grouped)}")
        variants.append(next(iter(grouped.items())))
    return tuple(variants)


def _choices(name: str, text: str, known: list[str]) -> tuple[str, ...]:
    """Comma-separated names, each checked against ``known`` (one line naming the bad one)."""
    from posteria.errors import check_choice

    return tuple(check_choice(name, item.strip(), known) for item in text.split(","))


def _as_flag(message: str, typed: list[str]) -> str:
    """``message`` with a leading argument name written as the flag that sets it, ``sigma_y must be > 0``
    -> ``--sigma-y must be > 0``, when that flag is among the ``typed`` arguments (the library names its
    arguments; a value from ``--set`` or a config file keeps its own name)."""
    word, space, rest = message.partition(" ")
    if not (word.isidentifier() and rest.startswith("must ")):
        return message
    long = "--" + word.replace("_", "-")
    flags = (long, "-" + word) if len(word) == 1 else (long,)  # -n, the short form of --n
    given = [flag for flag in flags if any(arg == flag or arg.startswith(flag + "=") for arg in typed)]
    return f"{given[0]}{space}{rest}" if given else message


def _one_line(message: str, status: int) -> None:
    typer.echo(f"error: {message}".replace("\n", " "), err=True)
    sys.exit(status)


def main() -> None:
    """Console entry point: run the app, reporting bad input, unwritable output and a usage error (a
    missing or malformed option) as one line and exit status 2."""
    try:
        status = app(standalone_mode=False)  # the parser's errors reach us instead of its boxed text
    except PosteriaError as e:
        _one_line(_as_flag(str(e), sys.argv[1:]), 2)
    except OSError as e:  # a full disk, a file system that refuses writes, a file that vanished
        _one_line(f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else ""), 2)
    except (MemoryError, RuntimeError) as e:  # torch's CPU allocator raises a RuntimeError
        if not isinstance(e, MemoryError) and "alloc" not in str(e):
            raise
        _one_line("out of memory: ask for fewer steps, samples or digits", 2)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:
        # the parser's own errors (typer's vendored click: a missing option, a word given for a number)
        if not callable(getattr(e, "format_message", None)):
            raise
        if not e.format_message():  # `posteria` alone: the parser has printed the help already
            sys.exit(getattr(e, "exit_code", 2))
        _one_line(e.format_message(), getattr(e, "exit_code", 2))
    sys.exit(status if isinstance(status, int) else 0)
