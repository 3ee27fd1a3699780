"""``posteria bench restore`` on the tiny 8x8 prior: every row scored, the targets table, bad input."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from posteria.bench.peers import Peer, PeerRun
from posteria.bench.restore import (
    TASKS,
    NetworkCost,
    RestoreBench,
    Run,
    equal_speed_ratio,
    our_runs,
    report,
    run_restore,
    targets,
)
from posteria.bench.timing import NetworkClock
from posteria.cli import app
from posteria.errors import PosteriaError
from posteria.lab import fit
from posteria.operators import get_operator

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_bench(folder: str, **kw: object) -> RestoreBench:
    methods = ("dps", "ddrm", "tikhonov", "tds")
    settings = {"prior": folder, "tasks": ("inpaint-box", "mri4"), "digits": 2, "steps": 2,
                "reference_steps": 3, "peers": False, "methods": methods}  # fmt: skip
    return RestoreBench(**(settings | kw))


def test_every_run_is_scored_with_psnr_timing_and_overhead(tiny_prior):
    spec = tiny_bench(str(tiny_prior.folder))
    rows, shown = run_restore(spec, progress=False)
    labels = {(r["task"], r["method"]) for r in rows}
    assert labels == {(t, m) for t in spec.tasks for m in ("dps-2", "dps-3", "ddrm-2", "tikhonov", "tds-2")}
    for row in rows:
        assert math.isfinite(row["psnr"]) and 0 <= row["ssim"] <= 1 and row["consistency"] >= 0
        assert row["s_per_image"] > 0 and row["network_forward_s"] > 0 and row["network_vjp_s"] >= 0
        assert (row["overhead"] is None) == (row["method"] == "tikhonov")
    assert {r["nfe"] for r in rows if r["method"] == "dps-3"} == {3}
    assert set(shown["mri4"]) == {"truth", "dps-2", "dps-3", "ddrm-2", "tikhonov", "tds-2"}
    assert shown["mri4"]["tds-2"].shape == (2, 1, 8, 8)


def test_the_network_clock_counts_calls_with_and_without_a_graph_and_rescales_the_bare_cost():
    network = torch.nn.Linear(3, 3)
    x = torch.randn(2, 3)
    with NetworkClock(network) as clock:
        with torch.no_grad():
            network(x)
            network(x)
        leaf = x.clone().requires_grad_(True)
        out = network(leaf * 2).sum()
        torch.autograd.grad(out, leaf, retain_graph=True)
        torch.autograd.grad(out, leaf)  # a second VJP through the same call is timed too
        network(torch.randn(5, 3))
    network(x)  # after the context: not counted
    assert dict(clock.calls) == {(False, 2): 2, (True, 2): 1, (False, 5): 1}
    assert dict(clock.backward_calls) == {2: 2} and clock.backward_seconds[2] > 0
    # 1.5 times slower than alone; the batch-5 call is not at the bare timing's batch: ignored
    clock.seconds = {(False, 2): 2 * 0.3, (True, 2): 0.45, (False, 5): 9.0}
    bare = NetworkCost(forward=0.2, forward_graph=0.3, vjp=0.4, batch=2)
    assert bare.backward == pytest.approx(0.3)  # the VJP less the graph's extra forward cost
    clock.backward_seconds = {2: 2 * 0.45}
    cost = bare.during(clock)
    assert dataclasses.astuple(cost) == pytest.approx((0.3, 0.45, 0.6, 2))
    clock.backward_seconds = {2: 1.95}  # backward 3.25 times slower: seconds 1.05 + 1.95 over bare 0.7 + 0.6
    assert bare.during(clock).forward == pytest.approx(0.2 * 3.0 / 1.3)
    idle = NetworkClock(network)
    assert NetworkCost(0.2, 0.3, 0.4, 2).during(idle) == NetworkCost(0.2, 0.3, 0.4, 2)


def test_the_equal_speed_ratio_weighs_each_overhead_by_its_runs_network_work():
    """MMPS: ours 2 VJPs per step at overhead 1.05, theirs 3 at 1.0: (1.05 x 50) / (1.0 x 70) = 0.75; the
    same work at the same overhead is 1 whatever the wall times were."""
    cost = NetworkCost(forward=0.1, forward_graph=0.12, vjp=0.2, batch=8)
    mine = {"overhead": 1.05, "nfe": 100, "vjps": 200}
    assert equal_speed_ratio(mine, {"overhead": 1.0, "nfe": 100, "vjps": 300}, cost) == pytest.approx(0.75)
    assert equal_speed_ratio(mine, mine, cost) == 1.0
    assert equal_speed_ratio(mine, {"overhead": None, "nfe": 100, "vjps": 300}, cost) is None


def test_tds_runs_with_its_particles_and_dps_gets_a_reference_run():
    spec = RestoreBench(methods=("dps", "tds", "fista-tv"), steps=50, reference_steps=500, particles=3)
    runs = our_runs(get_operator("sr2", (1, 8, 8), 0.05), spec)
    assert runs == [Run("dps", 50, 1), Run("fista-tv", 3000, 1), Run("tds", 50, 3), Run("dps", 500, 1)]
    assert [run.label for run in runs] == ["dps-50", "fista-tv", "tds-50", "dps-500"]


def test_variants_run_after_the_defaults_only_where_their_method_serves():
    spec = RestoreBench(methods=("mmps", "ddrm", "tds"), steps=20, particles=3,
                        variants=(("mmps", {"renoise": 1.0}), ("tds", {"ess_threshold": 0.9}),
                                  ("ddrm", {"eta": 1.0, "eta_b": 0.5})))  # fmt: skip
    runs = our_runs(get_operator("sr2", (1, 8, 8), 0.05), spec)
    assert [run.label for run in runs] == [
        "ddrm-20", "mmps-20", "tds-20", "mmps-20 (renoise=1.0)", "tds-20 (ess_threshold=0.9)",
        "ddrm-20 (eta=1.0, eta_b=0.5)",
    ]  # fmt: skip
    assert runs[4].n == 3
    without_svd = our_runs(get_operator("phase", (1, 8, 8), 0.05), spec)
    assert all(run.method != "ddrm" for run in without_svd)
    set_options = RestoreBench(options={"ddrm": {"eta": 0.5, "eta_b": 1.0, "steps_power": 2}})
    assert runs[-1].options(set_options) == {"eta": 1.0, "eta_b": 0.5, "steps_power": 2}


def test_targets_compare_the_best_fast_method_with_the_largest_dps_run():
    """In single-sample PSNR and in the PSNR of the samples' mean, each with its own best fast method."""

    def row(task: str, method: str, nfe: int, psnr: float, mean: float, library: str = "posteria") -> dict:
        return {"task": task, "library": library, "method": method, "nfe": nfe, "psnr": psnr,
                "psnr_mean": mean}  # fmt: skip

    rows = [
        row("a", "dps-1000", 1000, 20.0, 21.0),
        row("a", "dps-100", 100, 25.0, 25.0),
        row("a", "mmps-100", 100, 21.0, 22.0),
        row("a", "ddrm-100", 100, 20.5, 24.0),
        row("a", "ddrm-300", 300, 30.0, 30.0),
        row("a", "mmps-100", 100, 40.0, 40.0, library="azula"),
        row("b", "dps-1000", 1000, 20.0, 22.0),
        row("b", "ddrm-20", 20, 19.0, 23.0),
    ]
    common = {"dps": "dps-1000", "dps_psnr": 20.0}
    assert targets(rows) == [
        {"task": "a", **common, "best": "mmps-100", "best_psnr": 21.0, "met": True,
         "dps_psnr_mean": 21.0, "best_mean": "ddrm-100", "best_psnr_mean": 24.0, "met_mean": True},
        {"task": "b", **common, "best": "ddrm-20", "best_psnr": 19.0, "met": False,
         "dps_psnr_mean": 22.0, "best_mean": "ddrm-20", "best_psnr_mean": 23.0, "met_mean": True},
    ]  # fmt: skip


def test_the_cli_writes_the_table_the_targets_and_figures(tmp_path, tiny_prior):
    args = ["bench", "restore", "--prior", str(tiny_prior.folder), "--out", str(tmp_path), "--digits", "2",
            "--steps", "2", "--reference-steps", "3", "--tasks", "sr4", "--methods", "dps,mmps,least-squares",
            "--no-peers"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "restore.json").read_text())
    assert [r["method"] for r in saved["results"]] == [
        "dps-2", "least-squares", "mmps-2", "dps-3", "mmps-2 (renoise=1.0)"]  # fmt: skip
    assert saved["targets"][0]["dps"] == "dps-3"
    assert "### MMPS / DDRM" in (tmp_path / "restore.md").read_text()
    for name in ("restore_psnr.png", "restore_sr4.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_set_options_reach_every_run_of_their_method(tmp_path, tiny_prior):
    def psnr_of(*extra: str) -> dict[str, float]:
        out = tmp_path / "-".join(extra or ("default",))
        args = ["bench", "restore", "--prior", str(tiny_prior.folder), "--out", str(out), "--digits", "2",
                "--steps", "3", "--reference-steps", "4", "--tasks", "sr4", "--methods", "ddrm,dps",
                "--no-peers", *extra]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        saved = json.loads((out / "restore.json").read_text())
        assert saved["settings"]["options"] == ({"ddrm": {"eta": 1.0}} if extra else {})
        return {r["method"]: r["psnr"] for r in saved["results"]}

    default, changed = psnr_of(), psnr_of("--set", "ddrm.eta=1.0")
    assert changed["ddrm-3"] != default["ddrm-3"]
    assert changed["dps-3"] == default["dps-3"] and changed["dps-4"] == default["dps-4"]


def test_variant_replaces_the_shipped_variants_and_no_variants_drops_them(tmp_path, tiny_prior):
    def labels(*extra: str) -> list[str]:
        args = ["bench", "restore", "--prior", str(tiny_prior.folder), "--out", str(tmp_path),
                "--digits", "1", "--steps", "2", "--reference-steps", "2", "--tasks", "sr4",
                "--methods", "replacement,ddnm,mmps", "--no-peers", *extra]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return [r["method"] for r in json.loads((tmp_path / "restore.json").read_text())["results"]]

    assert labels()[-2:] == ["mmps-2 (renoise=1.0)", "ddnm-2 (renoise=0.85)"]
    assert (
        labels("--variant", "replacement.eta=1.0,replacement.renoise=0.5")[-1]
        == "replacement-2 (eta=1.0, renoise=0.5)"
    )
    assert labels("--no-variants") == ["ddnm-2", "mmps-2", "replacement-2"]


def test_poisson_noise_runs_the_methods_that_serve_it_on_pixel_tasks(tmp_path, tiny_prior):
    args = ["bench", "restore", "--prior", str(tiny_prior.folder), "--out", str(tmp_path), "--digits", "2",
            "--steps", "2", "--reference-steps", "2", "--tasks", "sr4", "--methods", "mmps,ddrm,daps",
            "--poisson", "50", "--no-variants"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "restore.json").read_text())
    assert saved["settings"]["poisson"] == 50 and saved["settings"]["sigma_y"] == 0
    assert [r["method"] for r in saved["results"]] == ["daps-2", "mmps-2"]  # DDRM needs Gaussian noise
    assert all(math.isfinite(r["psnr"]) and r["consistency"] > 0 for r in saved["results"])
    assert saved["peers"] == "peers not run (Poisson noise)"
    spec = RestoreBench(poisson=50.0)
    assert spec.tasks == ("inpaint-box", "inpaint-random", "sr4", "blur-gauss") and spec.sigma_y == 0
    assert RestoreBench().tasks == TASKS
    with pytest.raises(PosteriaError, match="tasks cs25 do not measure pixels"):
        RestoreBench(poisson=50.0, tasks=("sr4", "cs25"))


def test_the_cli_names_a_bad_task_method_or_variant():
    bad = (("--tasks", "sr3"), ("--methods", "dpss"), ("--set", "dpss.zeta=1"), ("--variant", "dpss.zeta=1"),
           ("--variant", "mmps.renoise=1,ddnm.renoise=1"), ("--variant", "mmps.renoice=1"))  # fmt: skip
    for option, value in bad:
        result = CliRunner().invoke(app, ["bench", "restore", option, value])
        assert result.exit_code != 0
        assert value in str(result.exception) + result.output
    both = CliRunner().invoke(app, ["bench", "restore", "--variant", "mmps.renoise=1", "--no-variants"])
    assert both.exit_code != 0 and "--no-variants" in str(both.exception) + both.output
    for extra, words in ((["--tasks", "sr4,cs25"], "tasks cs25 do not measure pixels"),
                         (["--sigma-y", "0.1"], "not both"), ([], "poisson must be")):  # fmt: skip
        value = "0" if not extra else "50"
        result = CliRunner().invoke(app, ["bench", "restore", "--poisson", value, *extra])
        assert result.exit_code != 0 and words in str(result.exception) + result.output


def test_report_states_the_settings_and_the_missing_peers():
    spec = RestoreBench(peers=False)
    rows = [{"task": "sr4", "library": "posteria", "method": "dps-100", "nfe": 100, "psnr": 20.0,
             "psnr_mean": 20.0}]  # fmt: skip
    text, markdown = report(rows, spec)
    assert json.loads(text)["settings"]["digits"] == 16
    assert "steps=100" in markdown and "peers not run (--no-peers)" in markdown
    assert "against DPS" not in markdown  # no MMPS or DDRM run: no empty targets table
    assert "variants: none" in markdown  # the default variants' methods did not run
    rows.append(rows[0] | {"method": "mmps-100 (renoise=1.0)"})
    assert "variants: mmps-100 (renoise=1.0);" in report(rows, spec)[1]


def test_repeats_pair_our_runs_with_each_peers_in_alternating_order(tiny_prior, monkeypatch):
    """Per peer three pairs: ours then theirs (our main run, the same for every peer), theirs then ours,
    ours then theirs; each ratio is the median of its pairs' ratios, each peer's row shows its median
    seconds and ours the median of all our runs. A peer that does not serve the operator adds no row."""
    import posteria.bench.restore as bench

    calls, ours_seconds = [], iter([2.0, 3.0, 4.0, 5.0, 6.0])
    their_seconds = iter([4.0, 2.0, 1.0, 8.0, 4.0, 2.0])
    real_restore = bench.restore

    def fake_restore(*args, **kw):
        calls.append("ours")
        return dataclasses.replace(real_restore(*args, **kw), seconds=next(ours_seconds))

    def fake_peer(method, prior, operator, y, steps, n, seed):
        calls.append("theirs")
        return PeerRun(torch.zeros(y.shape[0], n, *operator.event_shape), next(their_seconds), steps)

    monkeypatch.setattr(bench, "restore", fake_restore)
    peers = [Peer(name, ("dps", "mmps"), lambda: "0.0", fake_peer) for name in ("a", "b")]
    never = Peer("never", ("dps",), lambda: "1.0", fake_peer, serves=lambda operator: False)
    monkeypatch.setattr(bench, "PEERS", (*peers, never))
    spec = tiny_bench(str(tiny_prior.folder), tasks=("inpaint-box",), methods=("dps",), reference_steps=2,
                      peers=True, repeats=3)  # fmt: skip
    rows, _ = run_restore(spec, progress=False)
    assert calls == ["ours"] + ["theirs", "theirs", "ours", "ours", "theirs"] * 2
    ours, a, b = rows
    assert ours["ours_over_a"] == a["ours_over_theirs"] == 1.5  # median of 2/4, 3/2, 4/1
    assert ours["ours_over_b"] == b["ours_over_theirs"] == 1.25  # median of 2/8, 5/4, 6/2: our main run
    assert ours["ratio_range_a"] == a["ratio_range"] == "0.500-4.000"
    assert (a["library"], b["library"]) == ("a", "b")
    assert (ours["s_per_image"], a["s_per_image"], b["s_per_image"]) == (
        4.0 / 2,
        2.0 / 2,
        4.0 / 2,
    )  # 2 digits


def test_a_peer_that_raises_gets_a_failed_row_and_the_bench_goes_on(tiny_prior, monkeypatch):
    """Any error of a peer's run (third-party code) becomes that run's ``failed`` row naming it; our rows,
    the report and the figures are still made."""
    import posteria.bench.restore as bench

    def broken(method, prior, operator, y, steps, n, seed):
        raise TypeError("unexpected keyword 'bogus'")

    monkeypatch.setattr(bench, "PEERS", (Peer("broken", ("dps",), lambda: "0.0", broken),))
    spec = tiny_bench(str(tiny_prior.folder), tasks=("inpaint-box",), methods=("dps",), reference_steps=2,
                      peers=True)  # fmt: skip
    rows, _ = run_restore(spec, progress=False)
    ours, failed = rows
    assert ours["library"] == "posteria" and math.isfinite(ours["psnr"])
    assert failed == {"task": "inpaint-box", "method": "dps-2", "library": "broken",
                      "note": "failed: TypeError: unexpected keyword 'bogus'"}  # fmt: skip
    assert "failed: TypeError" in report(rows, spec)[1]


def tiny_mixture():
    from posteria.data import load_dataset
    from posteria.lab.fit import fit_class_mixture

    return fit_class_mixture(*load_dataset("digits", "train"), rank=6)


def test_an_exact_prior_restores_its_own_draws_against_its_exact_posterior(monkeypatch, tmp_path):
    """Rows ``exact posterior`` and ``exact mean`` (NFE 0) come first; every run, azula's too (here a
    stand-in), has its paired gaps to the exact draws, and the targets table their PSNR."""
    import posteria.bench.restore as bench

    monkeypatch.setitem(fit.EXACT_PRIORS, "tiny-mixture", tiny_mixture)
    zeros = lambda method, prior, operator, y, steps, n, seed: PeerRun(  # noqa: E731
        torch.zeros(y.shape[0], n, *operator.event_shape, dtype=torch.float64), 1.0, steps)  # fmt: skip
    monkeypatch.setattr(bench, "PEERS", (Peer("azula", ("dps", "mmps", "tds"), lambda: "0.0", zeros),))
    spec = tiny_bench("tiny-mixture", digits=3, methods=("dps", "mmps", "tikhonov"), peers=True)
    rows, shown = run_restore(spec, progress=False)
    for task in spec.tasks:
        mine = [r for r in rows if r["task"] == task]
        assert [r["method"] for r in mine[:2]] == ["exact posterior", "exact mean"]
        assert all(r["nfe"] == 0 and r["library"] == "exact" for r in mine[:2])
        # no single draw beats the MMSE estimate on average, and it sits at the mode's side
        assert mine[1]["psnr"] > mine[0]["psnr"] and mine[1]["nll_gap"] < 0
        assert {r["library"] for r in mine[2:]} == {"posteria", "azula"}
        for key in ("psnr_gap", "psnr_gap_se", "nll_gap", "nll_gap_se"):
            assert all(math.isfinite(r[key]) for r in mine[2:]), key
        assert shown[task]["exact posterior"].shape == shown[task]["truth"].shape == (3, 1, 8, 8)
    goals = targets(rows)
    exact = {r["task"]: r["psnr"] for r in rows if r["method"] == "exact posterior"}
    assert [g["exact_psnr"] for g in goals] == [exact[g["task"]] for g in goals]
    assert bench.plot_psnr(rows, tmp_path / "psnr.png").stat().st_size > 1000
    assert bench.plot_peers(rows, tmp_path / "peers.png").stat().st_size > 1000
    ours = [r for r in rows if r["library"] != "azula"]
    assert bench.plot_peers(ours, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_an_exact_prior_without_a_posterior_density_runs_without_exact_rows(monkeypatch):

    monkeypatch.setitem(fit.EXACT_PRIORS, "tiny-mixture", tiny_mixture)
    spec = tiny_bench("tiny-mixture", tasks=("inpaint-box",), methods=("dps",), poisson=50.0)
    rows, _ = run_restore(spec, progress=False)
    assert [r["method"] for r in rows] == ["dps-2", "dps-3"] and "nll_gap" not in rows[0]


def test_an_option_value_a_method_refuses_fails_before_any_run(tiny_prior, monkeypatch):
    """``--set ddrm.eta=2`` fails before the first run starts, naming the run and the task; so does a
    baseline's (which checks its options only when it runs)."""
    import posteria.bench.restore as bench

    calls = []
    monkeypatch.setattr(bench, "restore", lambda *args, **kw: calls.append(args))
    spec = tiny_bench(str(tiny_prior.folder), options={"ddrm": {"eta": 2.0}})
    with pytest.raises(PosteriaError, match=r"^ddrm-2 on inpaint-box: method 'ddrm': eta must lie in"):
        run_restore(spec, progress=False)
    spec = tiny_bench(str(tiny_prior.folder), options={"tikhonov": {"weight": -1.0}})
    with pytest.raises(PosteriaError, match=r"^tikhonov on inpaint-box: weight must be"):
        run_restore(spec, progress=False)
    assert calls == []
