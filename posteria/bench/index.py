"""The index of a report folder written by ``posteria bench`` (every suite): one page linking them all."""

from __future__ import annotations

from pathlib import Path

from posteria.io import atomic_write_text
from posteria.report.markdown import machine_line


def write_index(out: Path, suites: dict[str, list[str]], seed: int, quick: bool) -> Path:
    """``out/index.md``: per suite, its Markdown table and figures (file names relative to ``out``),
    then the machine, the versions and the seed."""
    lines = ["# posteria benchmarks", ""]
    lines.append(
        f"Seed {seed}; {'quick settings (smoke run)' if quick else 'the settings of BENCHMARKS.md'}."
    )
    for suite, files in suites.items():
        lines += ["", f"## {suite}", ""]
        for name in files:
            link = f"![{name}]({name})" if name.endswith(".png") else f"[{name}]({name})"
            lines.append(f"- {link}" if (Path(out) / name).is_file() else f"- {name} (not written)")
    lines += ["", machine_line(), ""]
    return atomic_write_text(Path(out) / "index.md", "\n".join(lines))


def suite_files(out: Path, stem: str) -> list[str]:
    """The files of suite ``stem`` in ``out``: ``stem.md`` and ``stem.json`` first, then its PNGs."""
    figures = sorted(p.name for p in Path(out).glob(f"{stem}*.png"))
    return [f"{stem}.md", f"{stem}.json", *figures]
