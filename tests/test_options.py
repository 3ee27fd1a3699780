"""The options a method takes: read from the signatures that receive them, listed, and each accepted."""

from __future__ import annotations

import re

import pytest
import torch

import posteria as pa
from posteria.errors import PosteriaError
from posteria.operators import get_operator
from posteria.options import describe, option_defaults
from posteria.posterior import METHODS, prepare


class Base:
    def __init__(self, denoiser: object, steps: int, eta: float = 0.0, spacing: str | None = None) -> None:
        pass


class Child(Base):
    fixed_options = ("spacing",)

    def __init__(
        self, denoiser: object, steps: int, operator: object, y: object, eta: float = 0.85, **options: object
    ) -> None:
        super().__init__(denoiser, steps, spacing="linear", eta=eta, **options)


def estimate(denoiser: object, operator: object, y: object, steps: int, weight: float | None = None) -> None:
    pass


def test_a_subclass_default_wins_and_the_options_it_fixes_are_left_out():
    assert option_defaults([Child]) == {"eta": 0.85}
    assert option_defaults([Base]) == {"eta": 0.0, "spacing": None}


def test_a_function_gives_its_keyword_parameters_after_the_call_arguments():
    assert option_defaults([estimate]) == {"weight": None}
    assert option_defaults([estimate, Base]) == {"weight": None, "eta": 0.0, "spacing": None}
    assert describe({"weight": None, "project": estimate}) == "weight=None, project=estimate"
    assert describe({}) == "none"


@pytest.fixture(scope="module")
def problem(tiny_prior):
    """The tiny 8x8 prior and box inpainting, which every method serves."""
    prior = pa.load_prior(str(tiny_prior.folder))
    operator = get_operator("inpaint-box", (1, 8, 8), sigma_y=0.1)
    return prior, operator, operator.measure(torch.zeros(1, 1, 8, 8), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_listed_option_is_accepted_at_its_default(problem, name):
    options = METHODS[name].options()
    assert options or name == "least-squares"
    prepare(*problem, name, steps=2, **options)  # a listed option the method refuses would raise


@pytest.mark.parametrize("name", sorted(METHODS))
def test_an_unlisted_option_is_refused_with_the_list(problem, name):
    listing = re.escape(describe(METHODS[name].options()))
    with pytest.raises(PosteriaError, match=f"'{name}' takes no option colour; its options: {listing}$"):
        prepare(*problem, name, steps=2, colour="blue")


def test_a_guided_method_on_another_sampler_takes_that_samplers_options(problem):
    prepare(*problem, "mmps", steps=2, sampler="pc", corrector_steps=2, snr=0.1)
    with pytest.raises(PosteriaError, match="unknown option.*for Euler: snr"):
        prepare(*problem, "mmps", steps=2, sampler="euler", snr=0.1)


def test_an_option_the_sampler_fixes_is_refused(problem):
    with pytest.raises(PosteriaError, match="'tds' takes no option eta"):  # its proposals are DDPM's
        prepare(*problem, "tds", steps=2, eta=0.5)
    with pytest.raises(PosteriaError, match="'tds' takes no option renoise"):  # its weights assume DDPM
        prepare(*problem, "tds", steps=2, renoise=0.5)
