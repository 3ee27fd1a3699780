"""Wall-clock timing helpers for the benchmarks (never used by tests)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn


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


class NetworkClock:
    """Seconds spent inside ``network``'s forward calls while the context is open, and their count, apart
    for calls that record an autograd graph (``[True]``) and calls that do not (``[False]``).

    Timing the network inside a run, rather than alone before it, puts both in the same phase of the
    machine: on these machines the speed of identical work moves by 30-50% within seconds (one forward
    took 38 to 61 ms within a minute, with no other process running and no CPU steal).
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.seconds, self.calls = {False: 0.0, True: 0.0}, {False: 0, True: 0}
        self._start, self._graph = 0.0, False

    def __enter__(self) -> NetworkClock:
        self._hooks = [
            self.network.register_forward_pre_hook(self._tick),
            self.network.register_forward_hook(self._tock),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for hook in self._hooks:
            hook.remove()

    def _tick(self, module: nn.Module, args: tuple) -> None:
        inputs = [a for a in args if isinstance(a, torch.Tensor)]
        self._graph = torch.is_grad_enabled() and any(a.requires_grad for a in inputs)
        self._start = time.perf_counter()

    def _tock(self, *_: object) -> None:
        self.seconds[self._graph] += time.perf_counter() - self._start
        self.calls[self._graph] += 1
