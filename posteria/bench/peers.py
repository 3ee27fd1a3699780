"""Peer libraries on our denoisers: azula's DPS, MMPS and TDS, for ``posteria bench restore``; what
every peer provides (:class:`Peer`, :class:`PeerRun`; deepinv's in :mod:`posteria.bench.peers_deepinv`).

The same prior network runs under both libraries: :func:`azula_denoiser` exposes a posteria
:class:`~posteria.denoisers.base.Denoiser` as an azula ``Denoiser`` whose ``schedule`` returns our
``(alpha_t, sigma_t)``, so only the sampler code differs. :func:`run_azula` samples with azula and
:func:`run_posteria` with :func:`posteria.restore.restore`, both returning a :class:`PeerRun`.

azula (Rozet et al., https://github.com/probabilists/azula) is optional and not a dependency; install
it with ``pip install --no-deps azula==0.11.1 einops`` (its own requirements pull a CUDA torch). Every
azula import happens inside a function, so this module imports without it.

Equal NFE. azula's samplers take ``steps`` transitions on ``linspace(1, 0, steps + 1)`` and call the
denoiser once per transition (at ``t = 1, 1 - 1/steps, ..., 1/steps``, never at 0): ``steps`` calls per
chain for DDPM, DPS, MMPS (under DDPM) and TDS. Ours make ``steps`` transitions too, one call each, so
``run_posteria(..., steps=S)`` and ``run_azula(..., steps=S)`` have the same NFE. Differences that remain
(time grid, DPS batch norm, CG preconditioning, TDS resampling) are listed in :func:`run_azula`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.autograd.function import FunctionCtx

from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_choice, check_count
from posteria.noise import Schedule
from posteria.operators.base import Operator
from posteria.posterior.daps import operator_norm2
from posteria.posterior.ddrm import gaussian_sigma_y
from posteria.posterior.guidance import real_view
from posteria.posterior.mmps import default_iterations
from posteria.tensors import flat

#: The azula methods :func:`run_azula` runs, under our registry names.
AZULA_METHODS = ("dps", "mmps", "tds")


@dataclass
class PeerRun:
    """One posterior sampling run, by either library.

    Attributes:
        samples: (B, n, *event) posterior samples, ``samples[i]`` conditioned on ``y[i]``.
        seconds: wall time of the sampling itself (no setup), summed over ``runs``.
        nfe: denoiser forward calls per chain (a chain is one of the B * n samples; calls are batched).
        library: ``"azula"`` or ``"posteria"``.
        vjps: vector-Jacobian products through the denoiser per chain.
        runs: separate sampler runs (azula's TDS runs once per measurement, everything else once).
    """

    samples: torch.Tensor
    seconds: float
    nfe: int
    library: str = "azula"
    vjps: int = 0
    runs: int = 1


@dataclass(frozen=True)
class Peer:
    """A peer library the bench compares with, on the methods it shares with us.

    Attributes:
        name: the library, as its rows' ``library``.
        methods: the methods it runs, under our registry names.
        version: its version string, or None where it does not import (never raises).
        run: ``(method, prior, operator, y, steps, n, seed) -> PeerRun``, ``steps`` chosen so that its
            NFE equals ours at ``steps``.
        serves: whether it can run on an operator (where we can too).
    """

    name: str
    methods: tuple[str, ...]
    version: Callable[[], str | None]
    run: Callable[..., PeerRun]
    serves: Callable[[Operator], bool] = lambda operator: True


def azula_version() -> str | None:
    """azula's version string if it imports, else None; never raises."""
    try:
        import azula
    except Exception:  # a missing or broken install alike means "no peer to compare with"
        return None
    return str(getattr(azula, "__version__", "unknown"))


def require_azula() -> str:
    """azula's version, or one PosteriaError line saying how to install it."""
    version = azula_version()
    if version is None:
        raise PosteriaError("azula is not installed: pip install --no-deps azula==0.11.1 einops")
    return version


class _CountVJP(torch.autograd.Function):
    """Identity whose backward counts one vector-Jacobian product through the denoiser output. Its
    context is set apart from ``forward`` so that ``torch.func.vjp`` (deepinv's MMPS and PiGDM) can run it
    too."""

    @staticmethod
    def forward(x: torch.Tensor, counter: object) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: FunctionCtx, inputs: tuple[torch.Tensor, object], output: torch.Tensor) -> None:
        ctx.counter = inputs[1]

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.counter.vjps += 1
        return grad, None


def count_vjps(output: torch.Tensor, counter: object) -> torch.Tensor:
    """``output`` unchanged, with one more ``counter.vjps`` for every backward pass through it."""
    return _CountVJP.apply(output, counter)


@functools.cache
def _adapter_classes() -> tuple[type, type]:
    """``(AzulaSchedule, AzulaDenoiser)``: defined on first use, subclassing azula's abstract classes
    (imported here, so that this module imports without azula)."""
    require_azula()
    from azula.denoise import Denoiser as AzulaBase
    from azula.denoise import DiracPosterior
    from azula.noise import Schedule as AzulaScheduleBase

    class AzulaSchedule(AzulaScheduleBase):
        """Our schedule under azula's contract: ``t`` (*) -> ``(alpha_t, sigma_t)``, each (*) like ``t``."""

        def __init__(self, schedule: Schedule) -> None:
            self.schedule = schedule

        def __call__(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            t = torch.as_tensor(t)
            alpha, sigma = self.schedule(t)
            return alpha.to(t), sigma.to(t)

    class AzulaDenoiser(AzulaBase):
        """A posteria denoiser as an azula one: ``forward(x_t, t)`` -> ``DiracPosterior(D(x_t, t))``.

        ``t`` is () or (B,) as azula passes it; our denoiser broadcasts it. Counts its forward calls
        (``calls``) and the vector-Jacobian products taken through its output (``vjps``).
        """

        def __init__(self, prior: Denoiser) -> None:
            super().__init__()
            self.prior = prior
            self.schedule = AzulaSchedule(prior.schedule)
            self.calls, self.vjps = 0, 0

        def forward(self, x_t: torch.Tensor, t: torch.Tensor, **kwargs: object) -> DiracPosterior:
            self.calls += 1
            mean = self.prior(x_t, t, **kwargs)
            if mean.requires_grad:  # only graphs azula builds can be differentiated: count those
                mean = count_vjps(mean, self)
            return DiracPosterior(mean=mean)

    return AzulaSchedule, AzulaDenoiser


def azula_schedule(schedule: Schedule) -> object:
    """Our :class:`~posteria.noise.Schedule` as an ``azula.noise.Schedule`` (the same function of ``t``)."""
    return _adapter_classes()[0](schedule)


def azula_denoiser(prior: Denoiser) -> torch.nn.Module:
    """``prior`` as an ``azula.denoise.Denoiser`` with counters ``calls`` and ``vjps`` (see above)."""
    return _adapter_classes()[1](prior)


def flat_operator(operator: Operator) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> A(x)`` flattened to (B, m) real entries: azula's linear solvers and norms act on the last
    dimension only, and complex measurements enter as real pairs (the inner product of our adjoint)."""
    return lambda x: flat(real_view(operator(x)))


#: One azula sampler run: the sampler and the shape (K, *event) of the chains it carries.
Run = tuple[object, tuple[int, ...]]


def chunks(ys: torch.Tensor, batch: int | None) -> tuple[torch.Tensor, ...]:
    """The rows of ``ys`` in runs of ``batch`` chains (the last may be shorter); all at once if None."""
    return ys.split(ys.shape[0] if batch is None else check_count("batch", batch))


def dps_runs(
    adapter: torch.nn.Module, operator: Operator, ys: torch.Tensor, n: int, batch: int | None, **kw: object
) -> list[Run]:
    """azula's ``DPSSampler`` (DDPM, then ``x_s -= zeta grad_{x_t} ||y - A(x0)||`` with its default
    ``zeta = 1``, as ours) on the B n chains in runs of ``batch``. Its norm is that of the run's whole
    residual, so each chain's step shrinks about as ``1 / sqrt(batch)``: ``batch=1`` is the paper's step."""
    from azula.guidance import DPSSampler

    rows = chunks(ys.repeat_interleave(n, 0), batch)
    A = flat_operator(operator)
    return [(DPSSampler(adapter, y=r, A=A, **kw), (r.shape[0], *operator.event_shape)) for r in rows]


def mmps_runs(
    adapter: torch.nn.Module, operator: Operator, ys: torch.Tensor, n: int, batch: int | None, **kw: object
) -> list[Run]:
    """azula's ``MMPSDenoiser`` under its ``DDPMSampler`` (our default sampler for MMPS) on the B n
    chains in runs of ``batch``, ``cov_y = sigma_y^2 I``, ``solver="cg"`` (azula's default is GMRES) with
    our CG iteration count (:func:`~posteria.posterior.mmps.default_iterations` of the prior), unless
    ``solver`` or ``iterations`` are given."""
    from azula.guidance import MMPSDenoiser
    from azula.linalg.covariance import IsotropicCovariance
    from azula.sample import DDPMSampler

    solver = {"solver": kw.pop("solver", "cg"), "iterations": kw.pop("iterations", None)}
    solver["iterations"] = solver["iterations"] or default_iterations(adapter.prior)
    A, cov_y = flat_operator(operator), IsotropicCovariance(gaussian_sigma_y(operator) ** 2)
    return [
        (DDPMSampler(MMPSDenoiser(adapter, r, A, cov_y, **solver), **kw), (r.shape[0], *operator.event_shape))
        for r in chunks(ys.repeat_interleave(n, 0), batch)
    ]


def tds_runs(
    adapter: torch.nn.Module, operator: Operator, ys: torch.Tensor, n: int, batch: None, **kw: object
) -> list[Run]:
    """azula's ``TDSSampler``, one run of ``n`` particles per measurement (it weighs and resamples its
    whole batch as one particle system; ``batch`` must be None); ``n`` particles is our default too. The
    twist, which azula leaves to the user, is ours: ``log N(y; A(x0), (sigma_y^2 + ||A||^2 r_t^2) I)`` up
    to a constant, ``r_t = sigma_t / alpha_t``, so only the SMC code differs."""
    from azula.guidance import TDSSampler

    if batch is not None:
        raise PosteriaError("azula's tds runs the n particles of one measurement together; give no batch")
    A, s2 = flat_operator(operator), gaussian_sigma_y(operator) ** 2
    L = operator_norm2(operator, ys.new_zeros((1, *operator.event_shape)))

    def twist(y_i: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return lambda x0, r: -0.5 * (y_i - A(x0)).square().sum(1) / (s2 + L * r**2)

    return [(TDSSampler(adapter, twist(y_i), **kw), (n, *operator.event_shape)) for y_i in ys]


RUNS = {"dps": dps_runs, "mmps": mmps_runs, "tds": tds_runs}


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators (azula draws from them) and restore their state on exit."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def run_azula(
    method: str,
    prior: Denoiser,
    operator: Operator,
    y: torch.Tensor,
    steps: int,
    n: int = 4,
    seed: int = 0,
    batch: int | None = None,
    **options: object,
) -> PeerRun:
    """Draw ``n`` posterior samples per measurement with azula's ``method`` on ``prior``, and time it.

    Args:
        method: ``"dps"``, ``"mmps"`` or ``"tds"`` (:data:`AZULA_METHODS`).
        prior: our denoiser, run through :func:`azula_denoiser`.
        operator: the measurement model; ``A`` and ``sigma_y`` (Gaussian noise) are read from it.
        y: measurements (B, *measurement_shape).
        steps: azula's ``steps``: transitions on ``linspace(1, 0, steps + 1)``, one denoiser call each.
        n: samples (TDS: particles) per measurement.
        seed: seeds torch's global generators, which azula draws from (restored afterwards).
        batch: chains per azula run for DPS and MMPS (None: all B n in one run); see :func:`dps_runs`.
        options: passed to azula: ``zeta`` (DPS), ``solver`` and ``iterations`` (MMPS); any other
            keyword goes to its sampler (``azula.sample.Sampler``).

    Returns:
        A :class:`PeerRun`: samples (B, n, *event); seconds of ``init`` plus sampling (under no_grad;
        azula enables grad inside DPS, MMPS and TDS steps); ``nfe`` and ``vjps`` counted per chain.

    Hyperparameters: azula's defaults where it has them (DPS ``zeta = 1``; DDPM steps; azula's own
    initial draw ``x_1 ~ N(0, alpha_1^2 + sigma_1^2)``); set from the problem: ``A``, ``y``,
    ``cov_y = sigma_y^2 I``, MMPS's CG iterations and TDS's twist and particles as ours (see the
    ``*_runs`` functions). Unlike ours: azula's grid is uniform in ``t`` and visits ``t = 1/steps`` last
    (ours ``t_min = 1e-3``, uniform in ``t`` for VP except MMPS's, uniform in ``log r_t``); azula's DPS
    divides by the norm of the whole batch's residual, not each sample's; its CG is not preconditioned
    and runs all its iterations, and its MMPS takes one more vjp per step for ``C A^T u`` (ours
    recombines it from the CG products); its TDS resamples multinomially at every step and its last step
    returns the twisted estimate ``x0 + (sigma_t^2 / alpha_t) grad log twist``, where ours returns
    ``x0 = D(x_t)`` resampled by ``p(y | x0)``.
    """
    method = check_choice("azula method", method, AZULA_METHODS)
    require_azula()
    operator.check_measurement(y)
    steps, n = check_count("steps", steps), check_count("n", n)
    adapter, like = azula_denoiser(prior), prior.reference
    ys = flat(real_view(y)).to(like)  # azula's solvers and norms reduce over the last dimension only
    grid = {"steps": steps, "silent": True, "dtype": like.dtype, "device": like.device}
    runs = RUNS[method](adapter, operator, ys, n, batch, **grid, **options)
    samples, seconds = timed_runs(runs, seed, like)
    k = len(runs)  # every run calls the denoiser alike, so the counts divide evenly
    samples = samples.reshape(y.shape[0], n, *operator.event_shape)
    return PeerRun(samples, seconds, adapter.calls // k, "azula", adapter.vjps // k, k)


def timed_runs(runs: list[Run], seed: int, like: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Run each sampler from azula's own initial draw, seeded: the concatenated samples (sum K, *event)
    and the seconds of drawing plus sampling, under no_grad (azula enables grad where it needs it)."""
    with seeded(seed, like.device), torch.no_grad():
        start = time.perf_counter()
        out = [sampler(sampler.init(shape, dtype=like.dtype, device=like.device)) for sampler, shape in runs]
        seconds = time.perf_counter() - start
    return torch.cat(out), seconds


def run_posteria(
    method: str,
    prior: Denoiser,
    operator: Operator,
    y: torch.Tensor,
    steps: int,
    n: int = 4,
    seed: int = 0,
    **options: object,
) -> PeerRun:
    """Our side of :func:`run_azula`, with the same call: :func:`posteria.restore.restore` with our
    defaults (DDPM; DPS ``zeta = 1``; MMPS preconditioned CG, ``default_iterations``, on its log grid;
    TDS ``n`` particles) and
    ``steps`` transitions, hence the same NFE as azula's run with the same ``steps``."""
    from posteria.restore import restore

    result = restore(prior, operator, y, method, steps, n, seed, **options)
    return PeerRun(result.samples, result.seconds, result.nfe, "posteria", result.vjps)


#: azula as a peer of the bench: its DPS, MMPS and TDS take any operator our methods of that name take.
AZULA = Peer("azula", AZULA_METHODS, azula_version, run_azula)
