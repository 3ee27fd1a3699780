"""posteria: conditional inference with diffusion priors.

Learn a data distribution as a denoiser ``E[x | x_t]``, sample it, guide it, and sample the posterior
of inverse problems. The nouns: :class:`~posteria.noise.Schedule`, :class:`~posteria.denoisers.Denoiser`,
:class:`~posteria.samplers.Sampler`.

>>> import torch, posteria as pa
>>> prior = pa.load_prior("mnist")
>>> x = pa.sample(prior, sampler="ddim", steps=50, n=16, generator=torch.Generator().manual_seed(0))
"""

from posteria import noise, operators, posterior
from posteria.denoisers import Denoiser
from posteria.errors import PosteriaError
from posteria.posterior import methods, solve
from posteria.priors import load_classifier, load_prior
from posteria.samplers import SAMPLERS, Sampler, get_sampler, sample

__version__ = "0.1.0"

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "PosteriaError",
    "Sampler",
    "get_sampler",
    "load_classifier",
    "load_prior",
    "methods",
    "noise",
    "operators",
    "posterior",
    "sample",
    "solve",
]
