"""The ``posteria`` command line: a thin layer over the library's public calls.

Every command turns a :class:`~posteria.errors.PosteriaError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from posteria.errors import PosteriaError

app = typer.Typer(
    help="posteria: diffusion priors you can train, sample and use to solve inverse problems.\n\n"
    "Start with `posteria demo --out out/demo`, then `posteria sample --prior mnist`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    """Train a diffusion prior; checkpoints go to OUT/checkpoint and a run resumes from there."""
    import torch

    from posteria.train.config import load_config
    from posteria.train.loop import fit

    if threads > 0:
        torch.set_num_threads(threads)
    cfg = load_config(config, set_)
    trainer = fit(cfg, resume=not fresh)
    typer.echo(f"trained {trainer.step} steps; checkpoint in {Path(cfg.out) / 'checkpoint'}")


def main() -> None:
    """Console entry point: run the app, reporting bad input as one line."""
    try:
        app(standalone_mode=False)
    except PosteriaError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
