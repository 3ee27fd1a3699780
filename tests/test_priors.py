"""The shipped prior and classifier: they load offline, reject bad input, and do their jobs."""

import copy

import pytest
import torch

import posteria as pa
from posteria.data import mnist10k
from posteria.errors import PosteriaError
from posteria.priors import prior_from_card, read_card, shipped
from posteria.train.checkpoint import save_json, save_tensors


def test_the_mnist_prior_and_classifier_ship_with_cards():
    assert "mnist" in shipped("priors") and "mnist" in shipped("classifiers")
    card = read_card("mnist")
    for key in ("arch", "backbone", "schedule", "parameterisation", "train_steps", "wall_time_s", "command"):
        assert key in card
    assert card["event_shape"] == [1, 28, 28]
    parameters = sum(p.numel() for p in pa.load_prior("mnist").parameters())
    assert parameters <= 3_000_000


@pytest.mark.parametrize(
    "shape", [(2, 3, 28, 28), (2, 1, 32, 32), (2, 784)], ids=["channels", "size", "flat"]
)
def test_the_prior_rejects_wrong_shapes_with_one_line(shape):
    prior = pa.load_prior("mnist")
    with pytest.raises(PosteriaError, match=r"x_t must have shape \(B, 1, 28, 28\)"):
        prior(torch.zeros(shape), 0.5)


def test_the_prior_rejects_nan_and_times_outside_the_unit_interval():
    prior = pa.load_prior("mnist")
    with pytest.raises(PosteriaError, match="NaN"):
        prior(torch.full((1, 1, 28, 28), float("nan")), 0.5)
    with pytest.raises(PosteriaError, match=r"t must lie in \[0, 1\]"):
        prior(torch.zeros(1, 1, 28, 28), 1.5)


def test_networks_load_in_channels_last_layout_and_agree_with_the_contiguous_one(tmp_path):
    """The layout is a speed choice only: a contiguous copy gives the same E[x | x_t] and the same
    VJP to float32 rounding, and saving writes weights that load back to the same outputs."""
    prior, classifier = pa.load_prior("mnist"), pa.load_classifier("mnist")
    for model in (prior, classifier):
        weights = [p for p in model.parameters() if p.dim() == 4]
        assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    contiguous = copy.deepcopy(prior).to(memory_format=torch.contiguous_format)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out, out_ref = prior(x, 0.4), contiguous(x, 0.4)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-5)
    (vjp,), (vjp_ref,) = torch.autograd.grad(out, x, x), torch.autograd.grad(out_ref, x, x)
    torch.testing.assert_close(vjp, vjp_ref, rtol=0, atol=1e-4)
    save_tensors(prior.backbone.state_dict(), tmp_path / "weights.safetensors")
    save_json(prior.card, tmp_path / "card.json")
    torch.testing.assert_close(pa.load_prior(tmp_path)(x, 0.4), out, rtol=0, atol=0)


@torch.no_grad()
def test_a_colour_prior_answers_in_the_usual_layout():
    """With 3 channels the channels-last layout is visible in strides: the Denoiser hides it."""
    backbone = {"in_channels": 3, "channels": 8, "multipliers": [1, 2], "blocks_per_level": 1, "emb_dim": 16}
    card = {"arch": "unet", "backbone": backbone, "schedule": "cosine", "parameterisation": "epsilon",
            "sigma_data": 0.5, "event_shape": [3, 8, 8]}  # fmt: skip
    out = prior_from_card(card).eval()(torch.randn(2, 3, 8, 8), 0.5)
    assert out.is_contiguous() and out.shape == (2, 3, 8, 8)


@torch.no_grad()
def test_the_prior_denoises_held_out_digits_better_than_the_noisy_input():
    """E[x | x_t] is the MMSE estimate: on held-out digits its error must be far below that of the
    rescaled observation x_t / alpha_t (whose error is r_t^2 per pixel)."""
    prior = pa.load_prior("mnist")
    x, _ = mnist10k("test")
    x = x[:32]
    g = torch.Generator().manual_seed(0)
    for t in (0.1, 0.3, 0.5):
        alpha, sigma = prior.schedule(torch.tensor(t))
        x_t = alpha * x + sigma * torch.randn(x.shape, generator=g)
        mse_denoised = (prior(x_t, t) - x).square().mean()
        mse_noisy = (x_t / alpha - x).square().mean()
        assert mse_denoised < 0.25 * mse_noisy


@torch.no_grad()
def test_the_classifier_recognises_held_out_digits():
    classifier = pa.load_classifier("mnist")
    x, y = mnist10k("test")
    accuracy = (classifier(x[:300]).argmax(1) == y[:300]).double().mean()
    assert accuracy > 0.95


def test_unknown_prior_names_list_the_shipped_ones():
    with pytest.raises(PosteriaError, match="expected a shipped name \\(mnist"):
        pa.load_prior("cifar")


def method_operator_pairs() -> list[tuple[str, str]]:
    from posteria.operators import OPERATORS, get_operator
    from posteria.posterior import supported

    return [(m, name) for name in OPERATORS for m in supported(get_operator(name, (1, 28, 28)))]


@pytest.mark.parametrize(("method", "operator"), method_operator_pairs())
def test_every_method_serves_every_compatible_operator_on_the_shipped_prior(one_thread, method, operator):
    """A handful of steps on one held-out digit: finite samples of the right shape, reproducible."""
    from posteria.operators import get_operator
    from posteria.posterior import solve

    prior = pa.load_prior("mnist")
    op = get_operator(operator, (1, 28, 28), sigma_y=0.05)
    y = op.measure(mnist10k("test")[0][:1], torch.Generator().manual_seed(0))
    options = {"jump": 1, "resample": 2} if method == "repaint" else {}

    def run() -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        return solve(prior, op, y, method, steps=3, n=2, generator=g, **options)

    x = run()
    assert x.shape == (1, 2, 1, 28, 28) and bool(torch.isfinite(x).all())
    torch.testing.assert_close(run(), x, rtol=0, atol=0)


def test_every_method_listed_for_poisson_noise_serves_it(one_thread):
    """``supported`` lists a method for a Poisson operator only if it runs there (no Gaussian-only step)."""
    from posteria.operators.mask import Mask
    from posteria.operators.noise_models import PoissonNoise
    from posteria.posterior import solve, supported

    prior = pa.load_prior("mnist")
    op = Mask.box((1, 28, 28), 10, noise=PoissonNoise(50))
    y = op.measure(mnist10k("test")[0][:1], torch.Generator().manual_seed(0))
    listed = supported(op)
    assert {"dps", "mmps", "pigdm", "daps"} <= set(listed) and not {"tikhonov", "ddrm"} & set(listed)
    for method in listed:
        options = {"jump": 1, "resample": 2} if method == "repaint" else {}
        x = solve(prior, op, y, method, steps=2, generator=torch.Generator().manual_seed(0), **options)
        assert bool(torch.isfinite(x).all()), method
