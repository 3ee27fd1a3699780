"""Wall-clock timing for the benchmarks: best-of timing, the network timed inside a run, its bare cost."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from posteria.denoisers.base import Denoiser
from posteria.tensors import batch_times


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

    def _time_backward(self, output: torch.Tensor, network_input: torch.Tensor, batch: int) -> None:
        """Hooks that time each backward pass from ``output``'s gradient to ``network_input``'s."""
        started = [0.0]

        def reached_output(grad: torch.Tensor) -> None:
            started[0] = time.perf_counter()

        def reached_input(grad: torch.Tensor) -> None:
            self.backward_seconds[batch] += time.perf_counter() - started[0]
            self.backward_calls[batch] += 1

        output.register_hook(reached_output)
        network_input.register_hook(reached_input)


@dataclass
class NetworkCost:
    """Seconds of one denoiser forward (without and with an autograd graph), and of one vector-Jacobian
    product (backward, counted with the graph's extra cost), per batch of ``batch`` items."""

    forward: float
    forward_graph: float
    vjp: float
    batch: int

    @classmethod
    def measure(cls, prior: Denoiser, batch: int) -> NetworkCost:
        x = torch.randn(batch, *prior.event_shape)
        t = batch_times(0.5, x)
        x_ = x.clone().requires_grad_(True)
        with torch.enable_grad():
            vjp = lambda: torch.autograd.grad(prior(x_, t), x_, x)  # noqa: E731
            calls = (lambda: prior(x, t), lambda: prior(x_, t), vjp)
            # Round-robin, so that the three minima come from the same phases of the machine's speed.
            rounds = [[best_of(call, repeats=1, warmup=int(i == 0)) for call in calls] for i in range(5)]
        forward, forward_graph, both = (min(times) for times in zip(*rounds, strict=True))
        return cls(forward, forward_graph, max(both - forward, 0.0), batch)

    def seconds(self, nfe: int, vjps: int) -> float:
        """What ``nfe`` calls and ``vjps`` VJPs cost the bare network."""
        return nfe * self.forward + vjps * self.vjp

    @property
    def backward(self) -> float:
        """Seconds of the backward pass alone: a VJP less the graph-recording forward it adds to a call."""
        return max(self.vjp + self.forward - self.forward_graph, 0.0)

    def during(self, clock: NetworkClock) -> NetworkCost:
        """This cost at the machine's speed during a run: scaled by the run's own seconds in the network,
        forward and backward (``clock``), over what those calls cost here. Only calls at this cost's batch
        count: a smaller batch costs more per item (azula's TDS calls the network per particle), which is
        the method's overhead, not the machine's speed. Unscaled if the run made no such call."""
        keys = [(graph, batch) for graph, batch in clock.calls if batch == self.batch]
        bare = sum(clock.calls[k] * (self.forward_graph if k[0] else self.forward) for k in keys)
        bare += clock.backward_calls.get(self.batch, 0) * self.backward
        if bare == 0:
            return self
        seconds = sum(clock.seconds[k] for k in keys) + clock.backward_seconds.get(self.batch, 0.0)
        speed = seconds / bare
        return NetworkCost(self.forward * speed, self.forward_graph * speed, self.vjp * speed, self.batch)
