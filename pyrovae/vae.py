"""The VAE as a Pyro model/guide pair: z ~ N(0, I), x ~ p(x | decoder(z)); q(z | x) amortized."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from . import likelihoods
from .errors import ConfigError
from .families import (
    Family,
    FlowGuide,
    HierarchicalGuide,
    HierarchicalModel,
    PluginGuide,
    VAEGuide,
    VAEModel,
    build,
    check_family,
)
from .likelihoods import Likelihood
from .networks import Shapes, architecture

_names = itertools.count()

__all__ = ["VAE", "VAEGuide", "VAEModel"]


class VAE(nn.Module):
    """A variational autoencoder as a Pyro model/guide pair.

    ``vae.model`` declares z ~ N(0, I) (``to_event(1)``) and x ~ the likelihood of the decoder's
    output; ``vae.guide`` holds the amortized diagonal-Gaussian encoder. Both are
    ``nn.Module`` s, so both of Pyro's idioms work: ``SVI(vae.model, vae.guide, ...)`` with the
    global param store, or ``loss_fn = estimator(vae.model, vae.guide)`` with a torch optimizer
    over ``loss_fn.parameters()``. Pass ``num_data=N`` to model and guide when ``x`` is a
    mini-batch of a data set of N points.

    Args:
        x_dim: size of a (flattened) data point.
        z_dim: size of the latent code.
        likelihood: a registered likelihood name (``pyrovae.likelihoods.names()``) or instance.
        likelihood_options: options for ``likelihoods.make``.
        hidden: hidden layer sizes of the MLP encoder (the decoder mirrors them).
        activation: "relu", "softplus", "tanh" or "elu".
        architecture: "mlp", "conv" (needs ``image_shape``), or a plugin's name or import path
            (:mod:`pyrovae.networks.architecture`).
        image_shape: (C, H, W) of a data point, for the conv nets.
        encoder, decoder: your own modules: ``encoder(x) -> (mu, sigma)``, each ``[B, z_dim]``, given
            the data as the likelihood models it (8-bit levels 0..255 for ``"counts"`` likelihoods,
            which pyrovae's own encoders scale by 1/255);
            ``decoder(z)`` maps ``[..., z_dim]`` to ``[..., likelihood.num_params * x_dim]``.
        name: prefix of the parameters' names in Pyro's param store; unique by default.
        family: the model family (:class:`~pyrovae.families.Family`: the latent layers, the guide
            and the prior), or its keys as keywords (``latents=[100, 50]``, ``guide="iaf"``, ...).
            Anything but one Gaussian layer, a Gaussian guide and the N(0, I) prior builds that
            family's model and guide.
    """

    model: VAEModel | HierarchicalModel
    guide: VAEGuide | FlowGuide | HierarchicalGuide | PluginGuide

    def __init__(
        self,
        x_dim: int,
        z_dim: int = 50,
        likelihood: str | Likelihood = "bernoulli",
        likelihood_options: dict[str, Any] | None = None,
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        architecture: str = "mlp",
        image_shape: Sequence[int] | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        name: str | None = None,
        family: Family | None = None,
        **family_keys: Any,
    ) -> None:
        super().__init__()
        family = _family(family, family_keys)
        builder = architecture_of(architecture)
        likelihood = _likelihood(likelihood, likelihood_options, x_dim)
        self.name = name if name is not None else f"vae{next(_names)}"
        check_family(family, architecture, z_dim)
        self.family = family
        self.x_dim, self.z_dim = x_dim, family.latents[0] if family.latents else z_dim  # the layer next to x
        if family.is_default:
            encoder, decoder = _networks(
                self.z_dim, likelihood, x_dim, tuple(hidden), activation, builder, image_shape, encoder, decoder
            )
            self.model = VAEModel(decoder, likelihood, self.z_dim, f"{self.name}.model")
            self.guide = VAEGuide(encoder, f"{self.name}.guide")
            return
        if encoder is not None or decoder is not None or architecture != "mlp":
            raise ConfigError(
                "latents/latent/guide/prior other than one gaussian layer build their own mlp "
                "networks: give no encoder, decoder or architecture"
            )
        self.model, self.guide = build(family, x_dim, z_dim, likelihood, tuple(hidden), activation, self.name)

    @property
    def likelihood(self) -> Likelihood:
        return self.model.likelihood

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Likelihood means at ``n`` draws from the prior: ``[n, x_dim]``."""
        return self.likelihood.mean(self.model.decode(self.model.sample_latents(n)))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Likelihood means at the guide's representative code (the encoder's mean): ``[B, x_dim]``."""
        return self.likelihood.mean(self.model.decode(self.guide.code(x)))


def _family(family: Family | None, keys: dict[str, Any]) -> Family:
    """The family given, or built from its keys as keywords (one line naming an unknown key)."""
    unknown = sorted(set(keys) - set(Family.keys()))
    if unknown:
        raise ConfigError(
            f"VAE has no option {', '.join(map(repr, unknown))}; the family's keys: {', '.join(Family.keys())}"
        )
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in keys.items()}
    return replace(family or Family(), **values)


def _likelihood(likelihood: str | Likelihood, options: dict[str, Any] | None, x_dim: int) -> Likelihood:
    if isinstance(likelihood, str):
        return likelihoods.make(likelihood, x_dim=x_dim, **(options or {}))
    if options:
        raise ConfigError("likelihood_options go with a likelihood name, not an instance")
    return likelihood


def architecture_of(name: str) -> architecture.Architecture:
    """The architecture named (one line with the valid names if there is none)."""
    if name in ("mlp", "conv") or ":" in name or name in architecture.REGISTRY.plugin_names():
        return architecture.make(name)
    raise ConfigError(
        f"unknown architecture {name!r}; valid: {', '.join(architecture.names())}, or a plugin's package.module:Name"
    )


def _networks(
    z_dim: int,
    likelihood: Likelihood,
    x_dim: int,
    hidden: tuple[int, ...],
    activation: str,
    builder: architecture.Architecture,
    image_shape: Sequence[int] | None,
    encoder: nn.Module | None,
    decoder: nn.Module | None,
) -> tuple[nn.Module, nn.Module]:
    """The one-Gaussian VAE's encoder and decoder: the user's, or the architecture's."""
    shape = tuple(image_shape) if image_shape is not None else None
    s = Shapes(x_dim, z_dim, likelihood.num_params, hidden, activation, shape, likelihood.input_scale)
    return encoder or builder.encoder(s), decoder or builder.decoder(s)
