"""Architectures: the encoder and decoder a VAE is built with, by name (``mlp``, ``conv``) or plugin.

An architecture is a class with ``encoder(shapes)``, a module x ``[B, x_dim]`` -> (loc, scale) of
q(z | x), each ``[B, z_dim]``, and ``decoder(shapes)``, a module z ``[..., z_dim]`` ->
``[..., num_params * x_dim]``, the likelihood's parameters in ``num_params`` blocks of ``x_dim``.
A plugin names one by import path (``architecture = "my_nets:ResNet"``) or registers it in the
entry-point group ``pyrovae.architectures`` (:mod:`pyrovae.plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..errors import ConfigError
from ..plugins import Origin
from ..registry import Registry
from .conv import ConvDecoder, ConvEncoder
from .mlp import MLPDecoder, MLPEncoder


@dataclass(frozen=True)
class Shapes:
    """What an architecture builds its networks for."""

    x_dim: int
    z_dim: int
    num_params: int  # likelihood parameters a data dimension
    hidden: tuple[int, ...]  # the config's hidden sizes
    activation: str  # the config's activation name (pyrovae.networks.ACTIVATIONS)
    image_shape: tuple[int, ...] | None  # (C, H, W) of image data
    input_scale: float  # what the encoder multiplies x by (1/255 for 8-bit levels)


class Architecture:
    """Builds a VAE's encoder and decoder (see the module docstring)."""

    name: ClassVar[str]

    def encoder(self, s: Shapes) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def decoder(self, s: Shapes) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError


REGISTRY: Registry[Architecture] = Registry("architecture", base=Architecture)


@REGISTRY.register("mlp")
class MLP(Architecture):
    """Fully connected, ``hidden`` layers each way."""

    def encoder(self, s: Shapes) -> nn.Module:
        return MLPEncoder(s.x_dim, s.z_dim, s.hidden, s.activation, input_scale=s.input_scale)

    def decoder(self, s: Shapes) -> nn.Module:
        return MLPDecoder(s.z_dim, s.num_params * s.x_dim, s.hidden, s.activation)


@REGISTRY.register("conv")
class Conv(Architecture):
    """Two stride-2 convolutions each way, for image data (``image_shape``)."""

    def encoder(self, s: Shapes) -> nn.Module:
        return ConvEncoder(self._image(s), s.z_dim, act=s.activation, input_scale=s.input_scale)

    def decoder(self, s: Shapes) -> nn.Module:
        return ConvDecoder(self._image(s), s.z_dim, s.num_params, act=s.activation)

    @staticmethod
    def _image(s: Shapes) -> tuple[int, ...]:
        if s.image_shape is None:
            raise ConfigError("architecture 'conv' needs image_shape=(C, H, W)")
        return s.image_shape


def make(name: str) -> Architecture:
    return REGISTRY.make(name)


def names() -> list[str]:
    """The built-in architectures (``mlp`` first), then installed plugins'."""
    return ["mlp", "conv", *REGISTRY.plugin_names()]


def origin(name: str) -> Origin | None:
    return REGISTRY.origin(name)
