"""``posteria bench quality``: FD of the shipped prior's samples per sampler and step budget.

FD is the Frechet distance of the shipped classifier's features between N samples and the 1,000
held-out test digits; the floor is the FD of N training digits to the same test digits.
"""

from __future__ import annotations

import time

import torch

import posteria as pa
from posteria.data import load_dataset
from posteria.errors import PosteriaError
from posteria.metrics.quality import SampleQuality

#: (sampler, steps, options) compared by default; Heun-18 is EDM's 35-NFE setting.
RUNS = [("ddpm", 1000, {}), ("ddim", 50, {}), ("ddim", 20, {}), ("heun", 18, {"spacing": "karras"})]


def parse_runs(text: str) -> list[tuple[str, int, dict]]:
    """``"ddim:50,heun:18:karras"`` -> ``[("ddim", 50, {}), ("heun", 18, {"spacing": "karras"})]``."""
    runs = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            raise PosteriaError(f"run {item!r}: expected sampler:steps or sampler:steps:spacing")
        runs.append((parts[0], int(parts[1]), {"spacing": parts[2]} if len(parts) == 3 else {}))
    return runs


def fd_floor(quality: SampleQuality, reference: torch.Tensor, n: int, seed: int) -> float:
    """FD of ``n`` random training digits to the reference: what a perfect sampler would score."""
    train, _ = load_dataset("mnist", "train")
    index = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return quality.score(train[index], reference)["fd"]


def run_quality(
    prior_name: str = "mnist", n: int = 1000, seed: int = 0, runs: list | None = None, batch_size: int = 250
) -> list[dict]:
    """FD, confidence, NFE and wall time for each run in ``runs`` (default :data:`RUNS`)."""
    prior = pa.load_prior(prior_name)
    reference, _ = load_dataset("mnist", "test")
    quality = SampleQuality(pa.load_classifier("mnist"))
    rows = [{"sampler": "training digits (floor)", "steps": 0, "nfe": 0, "n": n,
             "fd": fd_floor(quality, reference, n, seed)}]  # fmt: skip
    for name, steps, options in runs or RUNS:
        sampler = pa.get_sampler(name, prior, steps, **options)
        start = time.perf_counter()
        x = pa.sample(prior, name, steps, n, torch.Generator().manual_seed(seed), batch_size=batch_size,
                      progress=True, **options)  # fmt: skip
        seconds = time.perf_counter() - start
        scores = quality.score(x, reference)
        rows.append(
            {"sampler": name, "steps": steps, "nfe": sampler.nfe, "n": n, **scores, "seconds": seconds}
        )
    return rows


def plot_quality(rows: list[dict], path) -> None:
    """FD against NFE, one point per run, with the floor as a horizontal line."""
    from posteria.report.figures import plt, save_figure

    fig, ax = plt.subplots(figsize=(4.5, 3))
    for row in rows[1:]:
        ax.scatter(row["nfe"], row["fd"], label=f"{row['sampler']}-{row['steps']}")
    ax.axhline(rows[0]["fd"], color="0.5", ls="--", label="floor (training digits)")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel("FD to held-out digits")
    ax.legend(fontsize=7)
    save_figure(fig, path)
