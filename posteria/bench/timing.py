"""Wall-clock timing helpers for the benchmarks (never used by tests)."""

from __future__ import annotations

import time
from collections import defaultdict
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
    """Seconds spent inside ``network``'s forward calls while the context is open, and their count, keyed
    by ``(graph, batch)``: whether the call recorded an autograd graph, and its batch size; and the same
    for the backward passes through those calls (``backward_seconds``, ``backward_calls``, keyed by batch).

    Timing the network inside a run, rather than alone before it, puts both in the same phase of the
    machine: on these machines the speed of identical work moves by 30-50% within seconds (one forward
    took 38 to 61 ms within a minute, with no other process running and no CPU steal). A backward pass is
    timed from the gradient reaching the network's output to the gradient of its input (tensor hooks),
    every time a vector-Jacobian product goes through the call.
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.seconds: dict[tuple[bool, int], float] = defaultdict(float)
        self.calls: dict[tuple[bool, int], int] = defaultdict(int)
        self.backward_seconds: dict[int, float] = defaultdict(float)
        self.backward_calls: dict[int, int] = defaultdict(int)
        self._start, self._key, self._input = 0.0, (False, 1), None

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
        graph = torch.is_grad_enabled() and any(a.requires_grad for a in inputs)
        self._key = (graph, inputs[0].shape[0] if inputs and inputs[0].dim() else 1)
        self._input = inputs[0] if graph and inputs[0].requires_grad else None
        self._start = time.perf_counter()

    def _tock(self, module: nn.Module, args: tuple, output: object) -> None:
        self.seconds[self._key] += time.perf_counter() - self._start
        self.calls[self._key] += 1
        if self._input is not None and isinstance(output, torch.Tensor) and output.requires_grad:
            self._time_backward(output, self._input, self._key[1])

    def _time_backward(self, output: torch.Tensor, input: torch.Tensor, batch: int) -> None:
        """Hooks that time each backward pass from ``output``'s gradient to ``input``'s."""
        started = [0.0]

        def reached_output(grad: torch.Tensor) -> None:
            started[0] = time.perf_counter()

        def reached_input(grad: torch.Tensor) -> None:
            self.backward_seconds[batch] += time.perf_counter() - started[0]
            self.backward_calls[batch] += 1

        output.register_hook(reached_output)
        input.register_hook(reached_input)
