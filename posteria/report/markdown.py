"""Markdown tables and the machine/version header every report carries."""

from __future__ import annotations

import platform
import time

import torch


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts; columns: every key, in order of first appearance); floats
    printed with 4 significant digits, missing cells empty."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))

    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict[str, str | int]:
    """The machine and versions a result was measured with."""
    import posteria

    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "posteria": posteria.__version__,
    }


def machine_line() -> str:
    """One Markdown line describing the machine and versions."""
    return "Measured " + ", ".join(f"{k} {v}" for k, v in machine().items()) + "."
