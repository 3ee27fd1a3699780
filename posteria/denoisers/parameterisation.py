"""Turn a backbone network into a Denoiser: epsilon, x0, v and EDM parameterisations.

A backbone is any module ``net(x, c_noise, **cond) -> Tensor`` of the shape of ``x``; it knows nothing
of schedules. The wrapper feeds it ``c_in * x_t`` and ``c_noise = log(r_t) / 4`` (``r_t = sigma_t /
alpha_t``, as in EDM), so the same backbone works under any schedule, and maps its output to
``E[x | x_t]``. ``c_in = 1 / sqrt(alpha^2 sigma_data^2 + sigma^2)`` gives the network unit-variance
inputs for VP and VE alike.
"""

from __future__ import annotations

import torch
from torch import nn

from posteria import tweedie
from posteria.denoisers.base import Denoiser
from posteria.errors import check_choice
from posteria.noise import Schedule

# Keeps log(r_t) finite at t = 0, where sigma_t = 0 (the denoiser is the identity there anyway).
_MIN_RATIO = 1e-5


class ParameterisedDenoiser(Denoiser):
    """A backbone plus a rule that maps its output to ``E[x | x_t]``; subclasses override ``to_x0``."""

    parameterisation: str = ""

    def __init__(
        self,
        backbone: nn.Module,
        schedule: Schedule,
        event_shape: tuple[int, ...] | None = None,
        sigma_data: float = 0.5,
    ) -> None:
        super().__init__(schedule, event_shape)
        self.backbone = backbone
        self.sigma_data = float(sigma_data)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        alpha, sigma = self.coefficients(t, x_t)
        c_in = torch.rsqrt(alpha**2 * self.sigma_data**2 + sigma**2)
        c_noise = torch.log((sigma / alpha).clamp_min(_MIN_RATIO)).reshape(-1) / 4
        # Channels-last backbones (nn.channels_last) answer in that layout; callers get the usual one.
        out = self.backbone(c_in * x_t, c_noise, **cond).contiguous()
        return self.to_x0(x_t, out, alpha, sigma)

    def to_x0(self, x_t, out, alpha, sigma) -> torch.Tensor:
        raise NotImplementedError


class EpsilonDenoiser(ParameterisedDenoiser):
    """The network predicts the noise: ``E[x | x_t] = (x_t - sigma eps_net) / alpha`` (Ho et al. 2020)."""

    parameterisation = "epsilon"

    def to_x0(self, x_t, out, alpha, sigma):
        return tweedie.x0_from_eps(x_t, out, alpha, sigma)


class X0Denoiser(ParameterisedDenoiser):
    """The network predicts the clean signal directly: ``E[x | x_t] = x_net``."""

    parameterisation = "x0"

    def to_x0(self, x_t, out, alpha, sigma):
        return out


class VDenoiser(ParameterisedDenoiser):
    """The network predicts ``v = alpha eps - sigma x`` (Salimans & Ho 2022)."""

    parameterisation = "v"

    def to_x0(self, x_t, out, alpha, sigma):
        return tweedie.x0_from_v(x_t, out, alpha, sigma)


class EDMDenoiser(ParameterisedDenoiser):
    """EDM preconditioning (Karras et al. 2022, Table 1) on the scaled input ``y = x_t / alpha``:

    ``E[x | x_t] = c_skip y + c_out F``, ``c_skip = sd^2 / (r^2 + sd^2)``,
    ``c_out = r sd / sqrt(r^2 + sd^2)``, with ``r = sigma / alpha`` and ``sd = sigma_data``.
    """

    parameterisation = "edm"

    def to_x0(self, x_t, out, alpha, sigma):
        r, sd = sigma / alpha, self.sigma_data
        c_skip = sd**2 / (r**2 + sd**2)
        c_out = r * sd * torch.rsqrt(r**2 + sd**2)
        return c_skip * x_t / alpha + c_out * out


PARAMETERISATIONS: dict[str, type[ParameterisedDenoiser]] = {
    cls.parameterisation: cls for cls in (EpsilonDenoiser, X0Denoiser, VDenoiser, EDMDenoiser)
}


def parameterise(name: str, backbone: nn.Module, schedule: Schedule, **kw) -> ParameterisedDenoiser:
    """Wrap ``backbone`` with the parameterisation called ``name`` (epsilon, x0, v or edm)."""
    return PARAMETERISATIONS[check_choice("parameterisation", name, list(PARAMETERISATIONS))](
        backbone, schedule, **kw
    )
