"""The keyword options a method or a sampler takes, read from the signatures that receive them.

``posteria methods`` lists them, and an unknown option is refused with the list (``--set`` on the CLI
reaches any of them).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

#: Arguments every builder and sampler constructor is called with: not options.
CALL_ARGUMENTS = frozenset({"self", "denoiser", "operator", "y", "steps"})


def signatures(source: Callable[..., object]) -> list[inspect.Signature]:
    """The signature of a function, or of a class's ``__init__`` and those of its bases (most derived
    first): a sampler subclass passes its unknown options on to its base through ``**options``."""
    if not isinstance(source, type):
        return [inspect.signature(source)]
    inits = [k.__init__ for k in source.__mro__ if k is not object and "__init__" in vars(k)]
    return [inspect.signature(init) for init in inits]


def option_defaults(sources: Iterable[Callable[..., object]]) -> dict[str, object]:
    """``{name: default}`` of the keyword options of ``sources``; where several take one, the first
    default wins (a subclass's default overrides its base's: DDRM's eta = 0.85 over DDIM's 0). A
    class's ``fixed_options`` (base options it sets itself, like TDS's eta = 1) are left out."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    found: dict[str, object] = {}
    for source in sources:
        fixed = getattr(source, "fixed_options", ())  # a sampler's base options it sets itself
        for signature in signatures(source):
            for p in signature.parameters.values():
                if p.kind in named and p.name not in CALL_ARGUMENTS and p.name not in fixed:
                    found.setdefault(p.name, p.default)
    return found


def describe(options: dict[str, object]) -> str:
    """``eta=0.85, eta_b=1.0, spacing=None`` (a required option shows its bare name)."""
    shown = (k if v is inspect.Parameter.empty else f"{k}={_short(v)}" for k, v in options.items())
    return ", ".join(shown) or "none"


def _short(value: object) -> str:
    """A default as one would type it, callables by name."""
    return getattr(value, "__name__", None) or repr(value)
