"""deepinv's DPS, DDRM, DiffPIR, MMPS and PiGDM on our denoisers and operators, for ``posteria bench
restore``.

deepinv (Tachella et al., https://github.com/deepinv/deepinv) works on images ``u`` in [0, 1]: its
denoisers take ``u + s n`` and the noise level ``s``, its measurements are ``A(u) + w``. Ours work on
``x = 2 u - 1`` in [-1, 1]. For a linear ``A`` the two problems are the same: ``A(u) = (A(x) + A(1)) / 2``,
so deepinv gets ``y_u = (y + A(1)) / 2`` with noise ``sigma_y / 2`` (:func:`deepinv_problem`) and its
samples ``u`` come back as ``2 u - 1``. Its denoiser (:func:`deepinv_denoiser`) is our prior at the noise
level ``r = 2 s`` of ``x``: ``D_u(u', s) = (D(alpha_t (2 u' - 1), t) + 1) / 2`` with ``r_t = 2 s``. Its
operator (:func:`deepinv_physics`) is a ``DecomposablePhysics`` built from our implicit SVD, so the
network and the operator are ours and only deepinv's sampler code runs. Complex k-space reaches it as
real pairs: our ``A`` is real-linear, not complex-linear (``A^T = Re(F^H M^T .)``), and deepinv's
conjugate gradients (MMPS) take the complex inner product, whose imaginary part kept them from converging.

deepinv is optional and not a dependency. It imports torchvision, which has no CPU build beside our
``torch==2.13.0``; ``make peers`` builds a separate environment, ``.venv-peers`` (torch 2.14.1 with
torchvision 0.29.1, deepinv 0.5.0, azula), where ``posteria bench restore`` runs both peers next to ours in
one process. Every deepinv import happens inside a function, so this module imports without it.

Equal NFE, counted by the adapter: deepinv's DPS (its DDPM solver) calls the denoiser once per transition
between its ``num_steps`` times, so ``num_steps = steps + 1``; MMPS and PiGDM are its ``PosteriorDiffusion``
with their data-fidelity terms on the same DDPM solver and times (DPS is that with its own term); DDRM
calls once per noise level of ``sigmas`` (``linspace(1, 0, steps)``, its default grid with ``steps``
levels); DiffPIR once per iteration (``max_iter = steps``). Hyperparameters are deepinv's defaults: DPS
``weight = 1`` on the residual norm (its ``x0`` clip to [-1, 1] acts on [0, 1] images, so only its upper
end ever binds); MMPS and PiGDM ``weight = 1``, PiGDM its exact SVD solve; DDRM ``eta = 0.85``,
``etab = 1``; DiffPIR ``zeta = 0.1``, ``lambda_ = 7``; but MMPS takes our CG iteration count
(:func:`~posteria.posterior.mmps.default_iterations`, as for azula; deepinv's default is 3), and its CG
one more product at its zero start. Run as deepinv runs them, quirks included: its DDRM adds noise
``s / sqrt(2)`` and tells the denoiser ``s`` (its ``sigmas`` run from 1, a [0, 1] image's range, not from
pure noise); at ``weight = 1`` its DPS is guided so weakly that on a Gaussian problem the mean of 64 of
its samples is farther from the posterior mean than the prior mean is for one of two measurements
(``tests/test_bench_peers_deepinv.py``; its docstring: the weight must absorb ``||y - A D|| / sigma_y^2``,
"typically in the hundreds").
"""

from __future__ import annotations

import functools
import time

import torch

from posteria.bench.peers import Peer, PeerRun, count_vjps, seeded
from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError, check_choice, check_count
from posteria.operators.base import LinearOperator, Operator
from posteria.posterior.ddrm import gaussian_sigma_y
from posteria.posterior.guidance import real_view
from posteria.posterior.mmps import default_iterations
from posteria.tensors import expand_like

#: The deepinv methods :func:`run_deepinv` runs, under our registry names.
DEEPINV_METHODS = ("dps", "ddrm", "diffpir", "mmps", "pigdm")

#: How to install deepinv where torchvision can be imported beside it.
INSTALL = "deepinv is not installed: make peers builds .venv-peers (torch 2.14.1, torchvision, deepinv 0.5.0)"


def deepinv_version() -> str | None:
    """deepinv's version string if it imports, else None; never raises."""
    try:
        import deepinv
    except Exception:  # a missing or broken install (torchvision without its ops) alike: no peer
        return None
    return str(getattr(deepinv, "__version__", "unknown"))


def require_deepinv() -> str:
    """deepinv's version, or one PosteriaError line saying how to install it."""
    version = deepinv_version()
    if version is None:
        raise PosteriaError(INSTALL)
    return version


def unit_measurement(operator: LinearOperator, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(y_u, sigma_u)``: the measurement of ``u = (x + 1) / 2`` and its noise level, ``y_u = (y + A(1))
    / 2`` and ``sigma_u = sigma_y / 2`` for ``y = A(x) + w``, ``w ~ N(0, sigma_y^2 I)`` (A linear)."""
    ones = y.new_ones((1, *operator.event_shape), dtype=y.real.dtype)
    return (y + operator(ones)) / 2, gaussian_sigma_y(operator) / 2


def prior_times(prior: Denoiser, s: torch.Tensor) -> torch.Tensor:
    """The times (B,) at which our prior's ``x_t / alpha_t`` carries noise ``2 s`` (deepinv's level ``s``
    on [0, 1] images), no earlier than the schedule's ``t_min`` (deepinv's DDRM ends at ``s = 0``)."""
    t = prior.schedule.time_of_ratio(2 * s.to(torch.float64))
    return t.clamp(min=prior.schedule.t_min)


def noise_levels(sigma: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """deepinv's noise level (a float, a () or (B,) tensor, or (B, 1, ...)) as a (B,) float64 tensor on the
    device of ``like`` (B, ...)."""
    batch = like.shape[0]
    s = torch.as_tensor(sigma, dtype=torch.float64, device=like.device).reshape(-1)
    return s.expand(batch) if s.numel() == 1 else s


@functools.cache
def _adapter_class() -> type:
    """``DeepinvDenoiser``: defined on first use, subclassing deepinv's abstract ``Denoiser`` (imported
    here, so that this module imports without deepinv)."""
    require_deepinv()
    from deepinv.models import Denoiser as DeepinvBase

    class DeepinvDenoiser(DeepinvBase):
        """A posteria denoiser as a deepinv one: ``forward(u, s)`` on [0, 1] images (B, *event) at noise
        level ``s`` -> ``E[u_0 | u]`` (see the module's docstring). Counts its calls (``calls``) and the
        vector-Jacobian products taken through its output (``vjps``)."""

        def __init__(self, prior: Denoiser) -> None:
            super().__init__()
            self.prior = prior
            self.calls, self.vjps = 0, 0

        def forward(self, u: torch.Tensor, sigma: float | torch.Tensor, **kwargs: object) -> torch.Tensor:
            self.calls += 1
            t = prior_times(self.prior, noise_levels(sigma, u))
            alpha, _ = self.prior.schedule(t)
            x_t = expand_like(alpha.to(u.dtype), u) * (2 * u - 1)
            mean = self.prior(x_t, t.to(u.dtype), **kwargs)
            if mean.requires_grad:  # only graphs deepinv builds can be differentiated: count those
                mean = count_vjps(mean, self)
            return (mean + 1) / 2

    return DeepinvDenoiser


def deepinv_denoiser(prior: Denoiser) -> torch.nn.Module:
    """``prior`` as a ``deepinv.models.Denoiser`` with counters ``calls`` and ``vjps`` (see above)."""
    return _adapter_class()(prior)


def deepinv_physics(operator: LinearOperator, sigma: float, dtype: torch.dtype) -> torch.nn.Module:
    """``operator`` as a ``deepinv.physics.DecomposablePhysics`` in ``dtype``: ``A = U diag(mask) V^T`` from
    our :class:`~posteria.operators.svd.ImplicitSVD` (``mask`` (1, D) the singular values), Gaussian noise
    ``sigma``. deepinv's DDRM reads the mask and the noise level; its DiffPIR takes proximal steps by the
    SVD; its DPS applies ``A``. Complex measurements (B, ..., m) are real pairs (B, ..., m, 2) to it."""
    from deepinv.physics import DecomposablePhysics, GaussianNoise

    svd = operator.svd
    U, Ut = svd.U, svd.Ut
    if operator.complex_measurement:
        U = lambda z: torch.view_as_real(svd.U(z))  # noqa: E731 - the pairs deepinv sees
        Ut = lambda v: svd.Ut(torch.view_as_complex(v.contiguous()))  # noqa: E731
    noise = GaussianNoise(sigma=torch.tensor(sigma, dtype=dtype))
    physics = DecomposablePhysics(U=U, U_adjoint=Ut, V=svd.V, V_adjoint=svd.Vt, mask=svd.s[None].clone(),
                                  noise_model=noise)  # fmt: skip
    return physics.to(dtype)  # mask and noise level alike: DDRM writes one into tensors of the other


def deepinv_problem(operator: LinearOperator, y: torch.Tensor) -> tuple[torch.Tensor, torch.nn.Module]:
    """``(y_u, physics)``: the measurements of ``u = (x + 1) / 2`` (complex ones as real pairs) and the
    operator with their noise level, as every deepinv method receives them (:func:`unit_measurement`,
    :func:`deepinv_physics`)."""
    y_u, sigma_u = unit_measurement(operator, y)
    return real_view(y_u), deepinv_physics(operator, sigma_u, y_u.real.dtype)


def deepinv_sampler(
    method: str, denoiser: torch.nn.Module, steps: int, seed: int, device: torch.device, **options: object
) -> torch.nn.Module:
    """deepinv's ``method`` at ``steps`` denoiser calls per chain on ``device``, with its defaults unless
    ``options``; DPS, MMPS and PiGDM draw from their solver's generator, seeded with ``seed``."""
    import numpy as np
    from deepinv.optim.data_fidelity import L2
    from deepinv.sampling import DDRM, DPS, DiffPIR, MomentMatchingDataFidelity, PiGDMDataFidelity

    if method == "mmps":
        options = {"cg_max_iter": default_iterations(denoiser.prior)} | options
        return posterior_diffusion(MomentMatchingDataFidelity(**options), denoiser, steps, seed, device)
    if method == "pigdm":
        return posterior_diffusion(PiGDMDataFidelity(**options), denoiser, steps, seed, device)
    if method == "dps":
        rng = torch.Generator(device).manual_seed(seed)
        return DPS(denoiser, num_steps=steps + 1, rng=rng, device=device, **options)
    if method == "ddrm":
        return DDRM(denoiser, sigmas=np.linspace(1, 0, steps), **options)
    return DiffPIR(denoiser, L2(), max_iter=steps, device=device, **options)


def checked_sampler(
    method: str, denoiser: torch.nn.Module, steps: int, seed: int, device: torch.device, options: dict
) -> torch.nn.Module:
    """:func:`deepinv_sampler`, with an option deepinv refuses (its ``TypeError`` or ``ValueError``) as one
    PosteriaError line naming the method and the options."""
    try:
        return deepinv_sampler(method, denoiser, steps, seed, device, **options)
    except (TypeError, ValueError) as e:
        raise PosteriaError(f"deepinv's {method} refused the options {options}: {e}") from None


def posterior_diffusion(
    fidelity: torch.nn.Module, denoiser: torch.nn.Module, steps: int, seed: int, device: torch.device
) -> torch.nn.Module:
    """deepinv's ``PosteriorDiffusion`` with ``fidelity`` on its VP SDE and DDPM solver, as its ``DPS``
    class builds them: ``steps + 1`` times on ``linspace(1, 0)``, its generator seeded with ``seed``."""
    from deepinv.sampling import DDPMSolver, PosteriorDiffusion, VariancePreservingDiffusion

    times = torch.linspace(1, 0, steps + 1, dtype=torch.float64, device=device)
    solver = DDPMSolver(timesteps=times, rng=torch.Generator(device).manual_seed(seed))
    sde = VariancePreservingDiffusion(device=device)
    return PosteriorDiffusion(fidelity, denoiser, sde, solver, device=device)


def run_deepinv(
    method: str,
    prior: Denoiser,
    operator: Operator,
    y: torch.Tensor,
    steps: int,
    n: int = 4,
    seed: int = 0,
    **options: object,
) -> PeerRun:
    """Draw ``n`` posterior samples per measurement with deepinv's ``method`` on ``prior``, and time it.

    Args:
        method: one of :data:`DEEPINV_METHODS`.
        prior: our denoiser, run through :func:`deepinv_denoiser`.
        operator: a linear operator with an SVD (every task of the bench); Gaussian noise.
        y: measurements (B, *measurement) of signals in [-1, 1].
        steps: denoiser calls per chain (see the module's docstring).
        n: samples per measurement (all B n chains run as one batch).
        seed: seeds the generator of DPS, MMPS and PiGDM (their SDE solver's) and torch's global ones,
            which DDRM and DiffPIR draw from (restored afterwards).
        options: keyword options of deepinv's sampler class (DPS ``weight``, DDRM ``eta``, DiffPIR
            ``zeta`` and ``lambda_``) or data-fidelity term (MMPS ``cg_max_iter``, PiGDM ``weight``).

    Returns:
        A :class:`~posteria.bench.peers.PeerRun`: samples (B, n, *event) in [-1, 1]; seconds of building
        the sampler and sampling (the measurement's conversion and the physics are outside: deepinv's own
        operators would not need them); ``nfe`` and ``vjps`` counted per chain.
    """
    method = check_choice("deepinv method", method, DEEPINV_METHODS)
    require_deepinv()
    if not has_svd(operator):
        raise PosteriaError(f"deepinv's {method} runs here on linear operators with an SVD, not {operator}")
    operator.check_measurement(y)
    steps, n = check_count("steps", steps), check_count("n", n)
    y_u, physics = deepinv_problem(operator, y.to(prior.reference.device))
    denoiser = deepinv_denoiser(prior)
    with seeded(seed, y_u.device):
        start = time.perf_counter()
        sampler = checked_sampler(method, denoiser, steps, seed, y_u.device, options)
        u = sampler(y_u.repeat_interleave(n, 0), physics)
        seconds = time.perf_counter() - start
    samples = (2 * u.detach().to(y_u.dtype) - 1).reshape(y.shape[0], n, *operator.event_shape)
    return PeerRun(samples, seconds, denoiser.calls, "deepinv", denoiser.vjps)


def has_svd(operator: Operator) -> bool:
    """Whether deepinv's methods can run on ``operator`` here: linear, with an implicit SVD."""
    return isinstance(operator, LinearOperator) and operator.svd is not None


#: deepinv as a peer of the bench: DPS, DDRM, DiffPIR, MMPS and PiGDM on operators with an SVD.
DEEPINV = Peer("deepinv", DEEPINV_METHODS, deepinv_version, run_deepinv, has_svd)
