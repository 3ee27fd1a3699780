"""``posteria bench restore``: every method on the six restoration tasks of held-out digits.

For each task (box and random inpainting, SR x4, Gaussian deblurring, compressed sensing at 25%, MRI x4)
the same test digits are measured once at ``sigma_y`` and restored by every method that serves the
operator (posterior samplers at ``steps`` steps, DPS also at ``reference_steps``, classical baselines
at their defaults, and the tuned ``variants``: a method again with options chosen on validation digits)
and, where they are installed, by the peers (:data:`PEERS`: azula's DPS, MMPS and TDS, deepinv's DPS, DDRM,
DiffPIR, MMPS and PiGDM) on the same network. Each row gives PSNR and SSIM of the samples, data
consistency, NFE, VJPs, seconds per image, and the time per network call against the network's own cost
(``overhead``); a peer's rows give ours / theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import torch
from tqdm.auto import tqdm

from posteria.bench.peers import AZULA, Peer, PeerRun
from posteria.bench.peers_deepinv import DEEPINV
from posteria.bench.timing import NetworkClock, NetworkCost
from posteria.data import load_dataset
from posteria.denoisers.base import Denoiser
from posteria.errors import PosteriaError
from posteria.lab.fit import prior_draws, restoration_prior
from posteria.lab.priors import GaussianMixturePrior
from posteria.lab.scores import ExactReference, exact_reference
from posteria.metrics.image import aligned_samples, consistency, psnr, ssim
from posteria.operators import get_operator
from posteria.operators.base import Operator
from posteria.operators.noise_models import PoissonNoise
from posteria.operators.registry import PIXEL_OPERATORS
from posteria.posterior import METHODS, prepare, supported
from posteria.report.figures import image_rows, plt, save_figure
from posteria.restore import measure, restore

#: The benchmark tasks of issue 3, as operator registry names.
TASKS = ("inpaint-box", "inpaint-random", "sr4", "blur-gauss", "cs25", "mri4")

#: The peer libraries run on the same problems where they are installed (``--no-peers``: none).
PEERS: tuple[Peer, ...] = (AZULA, DEEPINV)

#: Methods whose samples per measurement are SMC particles: they run with ``particles``, not ``n``.
PARTICLE_METHODS = ("tds", "tds-mmps")

#: Options that beat a method's paper defaults on validation digits 500-515 (BENCHMARKS.md): re-noising
#: the DDIM-family steps keeps MMPS and DDNM from collapsing onto a blurry mean. Run next to the defaults.
TUNED_VARIANTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("mmps", {"renoise": 1.0}),
    ("ddnm", {"renoise": 0.85}),
)


@dataclass(frozen=True)
class Run:
    """One restoration of the bench: ``method`` at ``steps`` with ``n`` samples per measurement, and
    ``variant`` options on top of the method's ``options`` (named in the label)."""

    method: str
    steps: int
    n: int
    variant: tuple[tuple[str, object], ...] = ()

    @property
    def label(self) -> str:
        """``dps-100``, ``tikhonov`` (classical: no steps), ``mmps-100 (renoise=1.0)``."""
        base = self.method if METHODS[self.method].point else f"{self.method}-{self.steps}"
        extra = ", ".join(f"{key}={value}" for key, value in self.variant)
        return f"{base} ({extra})" if extra else base

    def options(self, spec: RestoreBench) -> dict[str, object]:
        """The bench's options for the method, then the variant's."""
        return spec.options.get(self.method, {}) | dict(self.variant)


@dataclass
class RestoreBench:
    """What ``posteria bench restore`` runs: ``digits`` test digits per task, ``n`` samples each (TDS:
    ``particles``), posterior samplers at ``steps``, DPS also at ``reference_steps``; ``options`` maps a
    method to the keyword options of all its runs (``{"ddrm": {"eta": 1.0}}``); each of ``variants``
    (method, options) adds a run of that method with those options too. ``poisson``: Poisson noise of
    that many counts for a white pixel in place of ``sigma_y`` (set to 0), on pixel tasks only (by
    default the four of :data:`TASKS` that measure pixels); the peers are not run then. ``tasks`` None: the
    default tasks. ``repeats``: how many times each run shared with a peer is timed, ours and theirs in
    turn, alternating which goes first (this machine's wall times vary by 10% from run to run)."""

    prior: str = "mnist"
    tasks: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    digits: int = 16
    n: int = 1
    particles: int = 4
    steps: int = 100
    reference_steps: int = 1000
    sigma_y: float = 0.05
    poisson: float | None = None
    seed: int = 0
    peers: bool = True
    repeats: int = 1
    options: dict[str, dict[str, object]] = field(default_factory=dict)
    variants: tuple[tuple[str, dict[str, object]], ...] = TUNED_VARIANTS

    def __post_init__(self) -> None:
        if self.poisson is None:
            self.tasks = TASKS if self.tasks is None else self.tasks
            return
        self.sigma_y = 0.0
        self.tasks = tuple(t for t in TASKS if t in PIXEL_OPERATORS) if self.tasks is None else self.tasks
        other = [t for t in self.tasks if t not in PIXEL_OPERATORS]
        if other:
            raise PosteriaError(
                f"poisson counts photons of pixels; tasks {', '.join(other)} do not measure pixels"
            )


def score(
    label: str, library: str, operator: Operator, y: torch.Tensor, truth: torch.Tensor, samples: torch.Tensor,
    drawn: torch.Tensor | None = None,
) -> dict[str, object]:  # fmt: skip
    """PSNR, SSIM and consistency of samples (B, n, *event) of measurements y (B, ...), and the PSNR of
    their mean over the n samples (``psnr_mean``; the sample PSNR when n = 1). Where the operator has
    ambiguities the samples come registered to the truth (:func:`~posteria.restore.restore`,
    :func:`~posteria.metrics.image.aligned_samples`), ``up_to`` names them, and the consistency is that of
    the samples as ``drawn``."""
    n = samples.shape[1]
    flat = samples.flatten(0, 1)
    fit = flat if drawn is None else drawn.flatten(0, 1)
    truth_rep = truth.repeat_interleave(n, dim=0)
    row = {
        "method": label,
        "library": library,
        "psnr": float(psnr(flat, truth_rep).mean()),
        "psnr_mean": float(psnr(samples.mean(1), truth).mean()),
        "ssim": float(ssim(flat, truth_rep).mean()),
        "consistency": float(consistency(operator, fit, y.repeat_interleave(n, dim=0)).mean()),
    }
    return row if operator.ambiguities is None else row | {"up_to": operator.ambiguities}


def timing(seconds: float, images: int, nfe: int, vjps: int, cost: NetworkCost) -> dict[str, object]:
    """NFE, VJPs, seconds per image, the bare network's cost per batch, and ``overhead`` = seconds / what
    the run's NFE and VJPs cost the bare network."""
    bare = cost.seconds(nfe, vjps)
    return {"nfe": nfe, "vjps": vjps, "s_per_image": seconds / images,
            "network_forward_s": cost.forward, "network_forward_graph_s": cost.forward_graph,
            "network_vjp_s": cost.vjp,
            "overhead": seconds / bare if bare > 0 else None}  # fmt: skip


def our_runs(operator: Operator, spec: RestoreBench) -> list[Run]:
    """Every method serving ``operator`` (among ``spec.methods``), the reference DPS, then the variants."""
    names = [m for m in supported(operator) if spec.methods is None or m in spec.methods]

    def run(name: str, variant: dict[str, object] | None = None, steps: int | None = None) -> Run:
        steps = METHODS[name].default_steps if METHODS[name].point else steps or spec.steps
        n = spec.particles if name in PARTICLE_METHODS else spec.n
        return Run(name, steps, n, tuple((variant or {}).items()))

    runs = [run(name) for name in names]
    if "dps" in names and spec.reference_steps != spec.steps:
        runs.append(run("dps", steps=spec.reference_steps))
    return runs + [run(name, variant) for name, variant in spec.variants if name in names]


def run_task(task: str, problem: Problem, spec: RestoreBench) -> tuple[list, dict]:
    """Rows of one task and the first sample of every run (for the figure, registered as it is scored); on
    an exact prior, the exact posterior's rows first and every run's gaps to it (:func:`exact_rows`).

    ``overhead`` divides a run's time by its network calls' cost at the speed the machine had during the
    run: the bare network, timed right before the run at its batch, scaled by the run's own seconds
    inside the network (:class:`NetworkClock`) over what those calls cost the bare network."""
    x, prior = problem.truth, problem.denoiser
    operator, y = measured(task, problem, spec)
    rows, shown = [], {}
    reference = None if problem.exact is None else exact_reference(problem.exact, operator, y, x, spec.seed)
    if reference is not None:
        rows = exact_rows(task, reference, operator, y, x)
        shown["exact posterior"] = reference.draws[:, 0]
    for run in tqdm(our_runs(operator, spec), desc=task, leave=False):
        bare = NetworkCost.measure(prior, x.shape[0] * run.n)
        with NetworkClock(network_of(prior)) as clock:
            res = restore(prior, operator, y, run.method, run.steps, run.n, spec.seed, x, **run.options(spec))
        row = {"task": task, **score(run.label, "posteria", operator, y, x, res.samples, res.drawn)}
        row |= {} if reference is None else reference.gaps(res.samples, x)
        rows.append(row | timing(res.seconds, x.shape[0], res.nfe, res.vjps, bare.during(clock)))
        shown[run.label] = res.samples[:, 0]
    ours = [r for r in rows if r["library"] == "posteria"]
    timed = {r["method"]: [r["s_per_image"] * x.shape[0]] for r in ours}
    for peer in installed_peers(spec):
        rows += peer_rows(peer, task, prior, operator, y, x, spec, ours, reference, timed)
    retime(ours, timed, x.shape[0])
    return rows, shown


def installed_peers(spec: RestoreBench) -> list[Peer]:
    """The peers of :data:`PEERS` that import, unless ``spec`` runs none (``--no-peers``, Poisson noise)."""
    if not spec.peers or spec.poisson is not None:
        return []
    return [peer for peer in PEERS if peer.version() is not None]


def measured(task: str, problem: Problem, spec: RestoreBench) -> tuple[Operator, torch.Tensor]:
    """The operator of ``task`` (its random parts drawn under ``spec.seed``) and its measurements
    ``y`` (B, *measurement) of the problem's truths, digit ``i``'s noise from stream ``i``."""
    noise = None if spec.poisson is None else PoissonNoise(spec.poisson)
    g = torch.Generator().manual_seed(spec.seed)
    operator = get_operator(task, tuple(problem.truth.shape[1:]), spec.sigma_y, g, noise=noise)
    return operator, measure(operator, problem.truth, spec.seed)


def check_runs(problem: Problem, spec: RestoreBench) -> None:
    """Build every run of every task on its first measurement, so that an option value a method refuses
    (``--set ddrm.eta=2``) fails in one line before the first run, not after the runs before it. A sampler
    checks its options when built; a classical baseline only when it runs, so one given options is run
    on that measurement (baselines are cheap: at most 3,000 iterations on one image)."""
    for task in spec.tasks:
        operator, y = measured(task, problem, spec)
        for run in our_runs(operator, spec):
            options = run.options(spec)
            try:
                runner = prepare(problem.denoiser, operator, y[:1], run.method, run.steps, run.n, **options)
                if METHODS[run.method].point and options:
                    runner((run.n, *operator.event_shape))
            except PosteriaError as e:
                raise PosteriaError(f"{run.label} on {task}: {e}") from None


def exact_rows(
    task: str, reference: ExactReference, operator: Operator, y: torch.Tensor, truth: torch.Tensor
) -> list[dict]:
    """The exact posterior's rows: ``exact posterior`` (its draws: what a correct sampler scores on
    average, the gaps' zero) and ``exact mean`` (the MMSE estimate, which no single sample beats on
    average)."""
    mean = reference.posterior.mean.reshape(truth.shape)[:, None]
    return [
        {"task": task, **score(label, "exact", operator, y, truth, samples), "nfe": 0}
        | reference.gaps(samples, truth)
        for label, samples in (("exact posterior", reference.draws), ("exact mean", mean))
    ]


def peer_rows(
    peer: Peer, task: str, prior: Denoiser, operator: Operator, y: torch.Tensor, x: torch.Tensor,
    spec: RestoreBench, ours: list[dict], reference: ExactReference | None, timed: dict[str, list[float]],
) -> list[dict]:  # fmt: skip
    """The peer's rows of the methods it shares with us (:func:`peer_row`). ``timed`` maps each of our
    runs to the seconds of its timed runs; the pairs' extra runs of ours are added to it (:func:`retime`
    takes their median once every peer has run)."""
    if not peer.serves(operator):
        return []
    rows = []
    for name in [m for m in peer.methods if m in supported(operator) and m in (spec.methods or peer.methods)]:
        run = Run(name, spec.steps, spec.particles if name in PARTICLE_METHODS else spec.n)
        mine = next(r for r in ours if r["method"] == run.label)
        rows.append(peer_row(peer, run, task, prior, operator, y, x, spec, mine, reference, timed))
    return rows


def peer_row(
    peer: Peer, run: Run, task: str, prior: Denoiser, operator: Operator, y: torch.Tensor, x: torch.Tensor,
    spec: RestoreBench, mine: dict, reference: ExactReference | None, timed: dict[str, list[float]],
) -> dict:  # fmt: skip
    """The peer's row of ``run``: scores and timing (:func:`compare_times`), or a ``failed`` row naming the
    error where the peer's run raised (its iterates blew up, so that our denoiser refused NaN input, or
    its own code failed: a peer's error must not lose the bench's other rows). On an exact prior, their
    gaps to its exact posterior (``reference``) as ours."""
    bare = NetworkCost.measure(prior, x.shape[0] * run.n)
    try:
        with NetworkClock(network_of(prior)) as clock:
            theirs = peer.run(run.method, prior, operator, y, run.steps, run.n, spec.seed)
    except Exception as e:  # third-party code: any failure of it is that run's result
        return {
            "task": task,
            "method": run.label,
            "library": peer.name,
            "note": f"failed: {type(e).__name__}: {e}",
        }
    samples = aligned_samples(operator, theirs.samples, x)  # registered as ours (restore)
    row = {"task": task, **score(run.label, peer.name, operator, y, x, samples, theirs.samples)}
    row |= {} if reference is None else reference.gaps(samples, x)
    return row | compare_times(peer, run, theirs, bare.during(clock), prior, operator, y, spec, mine, timed)


def compare_times(
    peer: Peer, run: Run, theirs: PeerRun, cost: NetworkCost, prior: Denoiser, operator: Operator,
    y: torch.Tensor, spec: RestoreBench, mine: dict, timed: dict[str, list[float]],
) -> dict:  # fmt: skip
    """The peer's timing of ``run`` (its median seconds over ``spec.repeats`` runs) and ``ours_over_theirs``
    wall time, the median of the ratios of ``spec.repeats`` pairs of runs (their spread in
    ``ratio_range``), and at equal network speed (:func:`equal_speed_ratio`, with our median over the same
    pairs). Our row ``mine`` gets the same ratios as ``ours_over_<peer>`` (several peers may share a
    method); its own seconds are set later from all its runs (:func:`retime`)."""
    images = y.shape[0]
    pairs = [(timed[run.label][0], theirs.seconds)]
    pairs += [
        timed_pair(peer, prior, operator, y, run, spec, ours_first=i % 2 == 0) for i in range(1, spec.repeats)
    ]
    timed[run.label] += [s for s, _ in pairs[1:]]
    row = timing(median([s for _, s in pairs]), images, theirs.nfe, theirs.vjps, cost)
    ratios = [a / b for a, b in pairs]
    row["ours_over_theirs"] = mine[f"ours_over_{peer.name}"] = median(ratios)
    if spec.repeats > 1:
        row["ratio_range"] = mine[f"ratio_range_{peer.name}"] = f"{min(ratios):.3f}-{max(ratios):.3f}"
    ours_now = mine | timing(median([s for s, _ in pairs]), images, mine["nfe"], mine["vjps"], cost_of(mine))
    row["ours_over_theirs_equal_speed"] = equal_speed_ratio(ours_now, row, cost)
    mine[f"ours_over_{peer.name}_equal_speed"] = row["ours_over_theirs_equal_speed"]
    return row


def cost_of(row: dict) -> NetworkCost:
    """The bare network's cost that ``row``'s run was timed against, for :func:`timing` (batch 0: only
    :meth:`NetworkCost.seconds` is asked of it, which does not depend on the batch)."""
    costs = (row[f"network_{k}_s"] for k in ("forward", "forward_graph", "vjp"))
    return NetworkCost(*costs, batch=0)


def retime(ours: list[dict], timed: dict[str, list[float]], images: int) -> None:
    """Our rows' seconds per image and overhead from the median of all their timed runs (the first run
    and the pairs' runs against every peer), where there were more runs than one. (Each
    ``ours_over_<peer>_equal_speed`` keeps our median over that peer's pairs.)"""
    for row in ours:
        seconds = timed.get(row["method"], [])
        if len(seconds) > 1:
            row |= timing(median(seconds), images, row["nfe"], row["vjps"], cost_of(row))


def equal_speed_ratio(mine: dict, theirs: dict, cost: NetworkCost) -> float | None:
    """Ours / theirs with both runs' times taken at one network speed: ``overhead`` times what the run's
    NFE and VJPs cost one bare network (``cost``). Each overhead divides by the network's speed during
    its own run, so the machine's drift between the two runs (30-50% within seconds here) cancels and
    what is left is the two methods' own work. None where a run has no overhead."""
    if mine.get("overhead") is None or theirs.get("overhead") is None:
        return None
    ours = mine["overhead"] * cost.seconds(mine["nfe"], mine["vjps"])
    return ours / (theirs["overhead"] * cost.seconds(theirs["nfe"], theirs["vjps"]))


def timed_pair(
    peer: Peer, prior: Denoiser, operator: Operator, y: torch.Tensor, run: Run, spec: RestoreBench,
    ours_first: bool,
) -> tuple[float, float]:  # fmt: skip
    """Seconds of our ``run`` and of the peer's same method, NFE and seed, one after the other."""

    def mine() -> float:
        return restore(
            prior, operator, y, run.method, run.steps, run.n, spec.seed, **run.options(spec)
        ).seconds

    def theirs() -> float:
        return peer.run(run.method, prior, operator, y, run.steps, run.n, spec.seed).seconds

    if ours_first:
        first = mine()
        return first, theirs()
    first = theirs()
    return mine(), first


@dataclass(frozen=True)
class Problem:
    """What the bench restores: ``truth`` (B, *event) with ``denoiser``, and ``exact``, the exact prior
    the truths are drawn from (:data:`~posteria.lab.fit.EXACT_PRIORS`), or None for a trained prior,
    whose truths are held-out test digits."""

    denoiser: Denoiser
    truth: torch.Tensor
    exact: GaussianMixturePrior | None = None

    @classmethod
    def load(cls, spec: RestoreBench) -> Problem:
        """A trained prior and the first ``spec.digits`` test digits of its data, or ``spec.digits`` draws
        of a named exact prior (:func:`~posteria.lab.fit.prior_draws` under ``spec.seed``) and its exact
        denoiser (:func:`~posteria.lab.fit.restoration_prior`)."""
        prior, exact = restoration_prior(spec.prior)
        if exact is not None:
            return cls(prior, prior_draws(exact, spec.digits, spec.seed), exact)
        return cls(prior, load_dataset(prior.card["data"], "test")[0][: spec.digits])


def network_of(denoiser: Denoiser) -> torch.nn.Module:
    """What :class:`NetworkClock` times: a trained prior's backbone, or an exact denoiser itself."""
    return getattr(denoiser, "backbone", denoiser)


def run_restore(spec: RestoreBench, progress: bool = True) -> tuple[list[dict], dict[str, dict]]:
    """All rows, and per task the images to show: the truth and the first sample of every run."""
    problem = Problem.load(spec)
    check_runs(problem, spec)
    rows, shown = [], {}
    for task in tqdm(spec.tasks, desc="tasks", disable=not progress):
        task_rows, shown[task] = run_task(task, problem, spec)
        shown[task] = {"truth": problem.truth, **shown[task]}
        rows += task_rows
    return rows, shown


def targets(rows: list[dict], budget: int = 100) -> list[dict]:
    """Per task: DPS at its largest NFE against the best of MMPS and DDRM at <= ``budget`` NFE, in the PSNR
    of single samples and in that of the mean of the n samples per measurement (the posterior-mean
    estimate, which does not reward a sampler for collapsing its spread); on an exact prior also
    ``exact_psnr``, what exact posterior draws score."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        ours = [r for r in rows if r["task"] == task and r["library"] == "posteria"]
        dps = max((r for r in ours if r["method"].startswith("dps-") and "squared" not in r["method"]),
                  key=lambda r: r["nfe"], default=None)  # fmt: skip
        fast = [r for r in ours if r["method"].split("-")[0] in ("mmps", "ddrm") and r["nfe"] <= budget]
        if dps is None or not fast:
            continue
        best = max(fast, key=lambda r: r["psnr"])
        mean = max(fast, key=lambda r: r["psnr_mean"])
        exact = [r["psnr"] for r in rows if r["task"] == task and r["method"] == "exact posterior"]
        out.append({"task": task, "dps": dps["method"], "dps_psnr": dps["psnr"], "best": best["method"],
                    "best_psnr": best["psnr"], "met": best["psnr"] > dps["psnr"],
                    "dps_psnr_mean": dps["psnr_mean"], "best_mean": mean["method"],
                    "best_psnr_mean": mean["psnr_mean"],
                    "met_mean": mean["psnr_mean"] > dps["psnr_mean"]}
                   | ({"exact_psnr": exact[0]} if exact else {}))  # fmt: skip
    return out


def plot_psnr(rows: list[dict], path: Path) -> Path:
    """PSNR against NFE per task (log NFE; classical baselines at NFE 1), the peers as open markers, the exact
    posterior's draws and mean (on an exact prior) as dashed and dotted lines."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        mine = [r for r in rows if r["task"] == task and r.get("psnr") is not None]
        for r in (r for r in mine if r["library"] == "exact"):
            ax.axhline(r["psnr"], color="0.5", ls="--" if r["method"] == "exact posterior" else ":", lw=0.8)
            ax.annotate(r["method"], (1, r["psnr"]), fontsize=6, color="0.4")
        for r in (r for r in mine if r["library"] != "exact"):
            ours, point = r["library"] == "posteria", (max(r["nfe"], 1), r["psnr"])
            ax.scatter(*point, **({"color": "C0"} if ours else peer_marker(r["library"])))
            ax.annotate(r["method"] + ("" if ours else f" ({r['library']})"), point, fontsize=6)
        ax.set_xscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("NFE per sample")
    axes[0][0].set_ylabel("PSNR (dB)")
    return save_figure(fig, path)


def plot_peers(rows: list[dict], path: Path) -> Path | None:
    """Per task, the PSNR of every method a peer shares with us, as bars side by side: ours, then each
    peer's, in the colours of :data:`LIBRARY_STYLE` (no bar where a peer does not run that method or its
    run failed; the report's rows say which). None, and no file, where no peer ran."""
    libraries = list(dict.fromkeys(r["library"] for r in rows if r["library"] not in ("posteria", "exact")))
    if not libraries:
        return None
    shared = list(dict.fromkeys(r["method"] for r in rows if r["library"] in libraries))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    width = 0.8 / (1 + len(libraries))
    for ax, task in zip(axes[0], tasks, strict=True):
        psnr = {(r["method"], r["library"]): r.get("psnr") for r in rows if r["task"] == task}
        for k, library in enumerate(["posteria", *libraries]):
            heights = [psnr.get((m, library)) or 0.0 for m in shared]
            colour = LIBRARY_STYLE.get(library, ("C1",))[0]
            ax.bar([i + k * width for i in range(len(shared))], heights, width, label=library, color=colour)
        ax.set_xticks(
            [i + width * len(libraries) / 2 for i in range(len(shared))], shared, rotation=60, fontsize=7
        )
        ax.set_title(task, fontsize=9)
    axes[0][0].set_ylabel("PSNR (dB)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, bbox_to_anchor=(0.5, 1.08))
    return save_figure(fig, path)


#: Each library's colour and marker in the figures (ours: C0, filled circles).
LIBRARY_STYLE = {"posteria": ("C0", "o"), "azula": ("C3", "s"), "deepinv": ("C4", "D")}


def peer_marker(library: str) -> dict[str, str]:
    """An open marker per peer: red squares for azula, purple diamonds for deepinv."""
    edge, marker = LIBRARY_STYLE.get(library, ("C1", "^"))
    return {"facecolors": "none", "edgecolors": edge, "marker": marker}


def peers_line(spec: RestoreBench) -> str:
    """Which peers ran, with their versions, or why none did: ``azula 0.11.1; deepinv not installed``."""
    if spec.poisson is not None:
        return "peers not run (Poisson noise)"
    if not spec.peers:
        return "peers not run (--no-peers)"
    versions = ((peer.name, peer.version()) for peer in PEERS)
    return "; ".join(
        f"{name} {version}" if version else f"{name} not installed" for name, version in versions
    )


def plot_task(shown: dict[str, torch.Tensor], path: Path, columns: int = 6) -> Path:
    """One row per method (the first ``columns`` digits), the truth on top."""
    return image_rows({k: v[:columns] for k, v in shown.items()}, path)


def report(rows: list[dict], spec: RestoreBench) -> tuple[str, str]:
    """The JSON (machine, settings, rows, targets) and the Markdown of a run."""
    import json
    from dataclasses import asdict

    from posteria.report.markdown import machine, machine_line, table

    goals = targets(rows)
    peers = peers_line(spec)
    hidden = ("tasks", "methods", "variants")
    settings = ", ".join(f"{k}={v}" for k, v in asdict(spec).items() if k not in hidden)
    labels = [Run(name, spec.steps, spec.n, tuple(o.items())).label for name, o in spec.variants]
    variants = "; ".join(label for label in labels if any(r["method"] == label for r in rows))  # those run
    text = json.dumps({"machine": machine(), "settings": asdict(spec), "peers": peers, "results": rows,
                       "targets": goals}, indent=2)  # fmt: skip
    goals_section = (
        "### MMPS / DDRM (with their variants) at <= 100 NFE against DPS at its largest NFE (PSNR)\n\n"
        f"{table(goals)}\n\n"
        if goals  # (a run without DPS or without MMPS and DDRM has nothing to compare)
        else ""
    )
    markdown = (
        f"## Restoration ({settings}; variants: {variants or 'none'}; {peers})\n\n{table(rows)}\n\n"
        f"{goals_section}{machine_line()}\n"
    )
    return text, markdown
