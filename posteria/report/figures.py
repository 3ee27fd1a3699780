"""Figures for reports: matplotlib without a display, saved atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from posteria.io import atomic_write_bytes  # noqa: E402


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Render ``fig`` to PNG bytes and write them atomically; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def image_rows(rows: dict[str, torch.Tensor], path: Path, col_titles: list[str] | None = None) -> Path:
    """A grid of single-channel images in model space: one labelled row per entry of ``rows``,
    each a tensor (N, 1, H, W)."""
    n = max(v.shape[0] for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.15 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < images.shape[0]:
                ax.imshow(images[c, 0].clamp(-1, 1).cpu().numpy(), cmap="gray", vmin=-1, vmax=1)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0 and col_titles:
                ax.set_title(col_titles[c], fontsize=8)
    return save_figure(fig, path)


def scatter_panels(panels: dict[str, torch.Tensor], reference: torch.Tensor, path: Path) -> Path:
    """Side-by-side 2-D scatter plots of point sets (N, 2) over a faint reference set."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.7), squeeze=False)
    lim = float(reference.abs().max()) * 1.25
    for ax, (title, points) in zip(axes[0], panels.items(), strict=True):
        ax.scatter(*reference.T.cpu().numpy(), s=1, c="0.8", rasterized=True)
        ax.scatter(*points.T.cpu().numpy(), s=1, c="C0", rasterized=True)
        ax.set_title(title, fontsize=8)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)
