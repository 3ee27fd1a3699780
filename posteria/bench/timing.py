"""Wall-clock timing helpers for the benchmarks (never used by tests)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` in seconds, after ``warmup`` untimed calls.

    The minimum is the least noisy estimate of the cost on a shared machine: noise only adds time.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
