"""The base of architecture configs: frozen dataclasses that round-trip through JSON cards."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Self

from posteria.errors import PosteriaError


@dataclass(frozen=True)
class ArchitectureConfig:
    """``to_dict`` for cards and checkpoints; ``from_dict`` checks the keys and turns JSON lists back
    into tuples."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise PosteriaError(
                f"unknown {cls.__name__} keys {unknown}; expected some of: {', '.join(known)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
