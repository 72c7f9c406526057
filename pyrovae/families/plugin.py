"""Guides and priors from plugins: q(z | x) or p(z) of a one-layer VAE, named by import path or
registered in the entry-point groups ``pyrovae.guides`` and ``pyrovae.priors`` (:mod:`pyrovae.plugins`).

A guide plugin is a :class:`GuideNetwork`: built from the run's :class:`~pyrovae.networks.Shapes`,
its ``forward(x)`` maps data ``[B, x_dim]`` to a reparameterized distribution with batch shape
``[B]`` and event shape ``[z_dim]``. A prior plugin is a :class:`PriorNetwork`: built from the
same shapes, its ``forward(batch_size)`` returns p(z) with batch shape ``[batch_size]`` and event
shape ``[z_dim]``; its parameters train with the model's. pyrovae wraps them in the Pyro
model/guide pair (site ``z`` in the data plate), so every estimator, the fast path and the
evaluation take them as they take the built-in families; neither has a closed-form KL.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
from torch import Tensor, nn

from ..likelihoods import Likelihood
from ..networks import Shapes
from ..plates import DataPlate, register_module
from ..plugins import Origin
from ..registry import Registry
from .gaussian import VAEModel


class GuideNetwork(nn.Module):
    """A plugin's q(z | x): ``forward(x)`` -> a distribution, batch ``[B]``, event ``[z_dim]``."""

    def __init__(self, shapes: Shapes) -> None:
        super().__init__()
        self.shapes = shapes


class PriorNetwork(nn.Module):
    """A plugin's p(z): ``forward(batch_size)`` -> a distribution, batch ``[batch_size]``, event ``[z_dim]``."""

    def __init__(self, shapes: Shapes) -> None:
        super().__init__()
        self.shapes = shapes


GUIDES: Registry[GuideNetwork] = Registry("guide", implicit=("shapes",), base=GuideNetwork)
PRIORS: Registry[PriorNetwork] = Registry("prior", implicit=("shapes",), base=PriorNetwork)


class PluginGuide(nn.Module):
    """The Pyro guide around a :class:`GuideNetwork`: site ``z`` ~ ``net(x)`` in the data plate."""

    def __init__(self, net: GuideNetwork, name: str) -> None:
        super().__init__()
        self.net = net
        self.pyro_name = name
        self._plate = DataPlate()

    def distribution(self, x: Tensor) -> dist.TorchDistribution:
        return self.net(x)

    def forward(self, x: Tensor, num_data: int | None = None, batch_size: int | None = None) -> Tensor:
        register_module(self.pyro_name, self)
        with self._plate(x.shape[0], num_data, x.device):
            return pyro.sample("z", self.distribution(x))

    def code(self, x: Tensor) -> dict[str, Tensor]:
        """A representative code: the mean of q(z | x) where it has one, else a draw."""
        q = self.distribution(x)
        try:
            return {"z": q.mean}
        except NotImplementedError:
            return {"z": q.sample()}


class PluginPriorModel(VAEModel):
    """pyrovae's VAE model with p(z) from a :class:`PriorNetwork` (only ``prior()`` changes, so the
    fast path and the traced path both use it)."""

    def __init__(self, decoder: nn.Module, likelihood: Likelihood, z_dim: int, name: str, net: PriorNetwork) -> None:
        super().__init__(decoder, likelihood, z_dim, name)
        self.net = net

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        return self.net(batch_size)


def is_plugin(registry: Registry, name: str, builtin: tuple[str, ...]) -> bool:
    """Whether ``name`` names a plugin of ``registry`` (not one of the ``builtin`` names)."""
    return name not in builtin and (":" in name or name in registry.plugin_names())


def make_guide(name: str, shapes: Shapes) -> GuideNetwork:
    return GUIDES.make(name, shapes=shapes)


def make_prior(name: str, shapes: Shapes) -> PriorNetwork:
    return PRIORS.make(name, shapes=shapes)


def origin_of(registry: Registry, name: str, builtin: tuple[str, ...]) -> Origin | None:
    """A plugin guide's or prior's origin; None for a built-in name."""
    return registry.origin(name) if is_plugin(registry, name, builtin) else None


def valid_words(registry: Registry, builtin: tuple[str, ...]) -> str:
    """The valid names of a family key: the built-ins, installed plugins', or an import path."""
    return ", ".join([*builtin, *registry.plugin_names()]) + ", or a plugin's package.module:Name"


__all__ = [
    "GUIDES",
    "PRIORS",
    "GuideNetwork",
    "PluginGuide",
    "PluginPriorModel",
    "PriorNetwork",
    "is_plugin",
    "make_guide",
    "make_prior",
    "origin_of",
    "valid_words",
]
