"""Hierarchical latent layers: a top-down model and a bottom-up guide over latents z_1 .. z_L.

Model (top-down), guide (bottom-up):

    p(x, z) = p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1),
    q(z | x) = q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}),

each layer a diagonal Gaussian N(mu(h), diag sigma(h)^2) (sigma = exp(log sigma^2 / 2), as
:class:`~pyrovae.networks.GaussianHead`; reparameterized) or independent Bernoulli(logits(h)) (a
sigmoid belief net; not reparameterized, so ``elbo``, ``iwae`` and ``vimco`` add score-function
terms, ``rws`` needs none, and the path-derivative estimators refuse with one line). The top prior
is N(0, I), or Bernoulli with learned logits. Deterministic layers follow Burda et al.'s two-layer
MNIST architecture: the ``hidden`` layers between x and z_1, and ``latent_hidden_layers`` layers as wide as z_{l+1}
between z_l and z_{l+1} (Burda: 784-100-100-[100]-50-50-[50]); the model mirrors the guide. With
``hidden=[]`` every map is linear (the sigmoid belief net of Mnih & Rezende 2016: logits = W z + b).
One Gaussian layer is the ordinary VAE, with its latent site named ``z1``.

References: Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders"; Mnih &
Rezende 2016, "Variational Inference for Monte Carlo Objectives"; Neal 1992, "Connectionist
Learning of Belief Networks".
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol, cast

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from .. import likelihoods
from ..errors import ConfigError
from ..likelihoods import Likelihood
from ..networks import GaussianHead
from ..networks.mlp import activation, mlp
from ..plates import DataPlate, register_module
from .gaussian import check_device

LATENT_TYPES = ("gaussian", "bernoulli")
_names = itertools.count()


def _check_latents(latents: Sequence[int], latent: str) -> tuple[int, ...]:
    if latent not in LATENT_TYPES:
        raise ConfigError(f"unknown latent type {latent!r}; valid: {', '.join(LATENT_TYPES)}")
    sizes = tuple(latents)
    if not sizes or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in sizes):
        raise ConfigError(f"latents must be a non-empty list of positive layer sizes, got {list(latents)!r}")
    return sizes


def _between(hidden: Sequence[int], latent_hidden_layers: int | None) -> int:
    """Deterministic layers between two latent layers: Burda's 2, none for a linear net."""
    n = (2 if hidden else 0) if latent_hidden_layers is None else latent_hidden_layers
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"latent_hidden_layers must be an integer >= 0, got {latent_hidden_layers!r}")
    return n


class _GuideLayer(Protocol):
    """A layer of the guide: q(z_l | h) is ``layer(h)``, its representative code ``layer.mean(h)``
    (a :class:`LatentLayer`, or a flow's :class:`~pyrovae.families.FlowLayer`)."""

    def __call__(self, h: Tensor) -> dist.TorchDistribution: ...

    def mean(self, h: Tensor) -> Tensor: ...


class LatentLayer(nn.Module):
    """One conditional latent layer: features h ``[..., in_dim]`` -> a distribution over
    ``[..., out_dim]`` (event dim 1), through ``hidden`` deterministic layers.

    Gaussian: N(mu(h), diag exp(log sigma^2(h))); Bernoulli: Bernoulli(logits(h)).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int], act: str, latent: str) -> None:
        super().__init__()
        self.latent = latent
        self.body = nn.Sequential(*mlp([in_dim, *hidden], act), activation(act)) if hidden else None
        width = hidden[-1] if hidden else in_dim
        self.head = GaussianHead(width, out_dim) if latent == "gaussian" else nn.Linear(width, out_dim)

    def _features(self, h: Tensor) -> Tensor:
        return self.body(h) if self.body is not None else h

    def forward(self, h: Tensor) -> dist.TorchDistribution:
        f = self._features(h)
        if self.latent == "gaussian":
            loc, scale = self.head(f)  # [..., out_dim] each
            return dist.Normal(loc, scale).to_event(1)
        return dist.Bernoulli(logits=self.head(f)).to_event(1)

    def mean(self, h: Tensor) -> Tensor:
        """The layer's mean at h: mu for a Gaussian, the probabilities for Bernoulli units."""
        f = self._features(h)
        return self.head(f)[0] if self.latent == "gaussian" else torch.sigmoid(self.head(f))


class HierarchicalModel(nn.Module):
    """p(x, z) = p(z_L) prod_{l<L} p(z_l | z_{l+1}) p(x | z_1); sites ``z1`` .. ``zL`` and ``x``.

    Args:
        x_dim: size of a (flattened) data point.
        latents: sizes [d_1, ..., d_L] of the latent layers, bottom (next to x) first.
        likelihood: a registered likelihood name or instance; ``likelihood_options`` go to
            ``likelihoods.make`` with a name.
        hidden: hidden sizes of the guide's x -> z_1 network; the decoder z_1 -> x mirrors them.
        activation: "relu", "softplus", "tanh" (Burda et al.) or "elu".
        latent: "gaussian" or "bernoulli" (every layer).
        latent_hidden_layers: deterministic layers of width d_{l+1} between z_{l+1} and z_l;
            default 2 (Burda et al.), 0 when ``hidden`` is empty (a linear net).
        name: prefix of the parameters' names in Pyro's param store; unique by default.

    References: Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders"; Mnih &
    Rezende 2016, "Variational Inference for Monte Carlo Objectives".
    """

    max_plate_nesting = 1
    prior_loc: Tensor  # buffers of Gaussian latents (register_buffer)
    prior_scale: Tensor

    def __init__(
        self,
        x_dim: int,
        latents: Sequence[int],
        likelihood: str | Likelihood = "bernoulli",
        hidden: Sequence[int] = (100, 100),
        activation: str = "tanh",
        latent: str = "gaussian",
        latent_hidden_layers: int | None = None,
        likelihood_options: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.latents = _check_latents(latents, latent)
        self.latent = latent
        if isinstance(likelihood, str):
            likelihood = likelihoods.make(likelihood, x_dim=x_dim, **(likelihood_options or {}))
        elif likelihood_options:
            raise ConfigError("likelihood_options go with a likelihood name, not an instance")
        self.likelihood = likelihood
        hidden = tuple(hidden)
        between = _between(hidden, latent_hidden_layers)
        sizes = self.latents
        # conditionals[l - 1] is p(z_l | z_{l+1}), l = 1 .. L-1; its hidden layers are as wide as z_{l+1}
        self.conditionals = nn.ModuleList(
            LatentLayer(sizes[i + 1], sizes[i], [sizes[i + 1]] * between, activation, latent)
            for i in range(len(sizes) - 1)
        )
        self.decoder = mlp([sizes[0], *reversed(hidden), likelihood.num_params * x_dim], activation)
        top = sizes[-1]
        if latent == "gaussian":
            self.register_buffer("prior_loc", torch.zeros(top))
            self.register_buffer("prior_scale", torch.ones(top))
        else:
            self.top_logits = nn.Parameter(torch.zeros(top))  # the top layer's biases
        self.x_dim = x_dim
        self.sites = tuple(f"z{layer}" for layer in range(len(sizes), 0, -1))  # sampling order: top-down
        self.pyro_name = name if name is not None else f"hierarchical{next(_names)}.model"
        self._plate = DataPlate()

    def _anchor(self) -> Tensor:
        """A tensor on the model's device and dtype."""
        first = self.decoder[0]
        assert isinstance(first, nn.Linear)  # mlp() starts with a linear layer
        return first.weight

    def top_prior(self, batch_size: int) -> dist.TorchDistribution:
        """p(z_L) for ``batch_size`` points: batch ``[B]``, event ``[d_L]``."""
        shape = [batch_size, self.latents[-1]]
        if self.latent == "gaussian":
            return dist.Normal(self.prior_loc, self.prior_scale).expand(shape).to_event(1)
        return dist.Bernoulli(logits=self.top_logits).expand(shape).to_event(1)

    def site_distribution(self, name: str, latents: dict[str, Tensor], batch_size: int) -> dist.TorchDistribution:
        """p(z_l | z_{l+1}) at ``latents[f"z{l+1}"]`` (p(z_L) for the top layer, batch ``[B]``)."""
        layer = int(name[1:])
        if layer == len(self.latents):
            return self.top_prior(batch_size)
        return self.conditionals[layer - 1](latents[f"z{layer + 1}"])

    def observation(self, latents: dict[str, Tensor]) -> dist.TorchDistribution:
        """p(x | z_1), the likelihood at the decoder's output."""
        return self.likelihood(self.decoder(latents["z1"]))

    def forward(self, x: Tensor | None = None, num_data: int | None = None, batch_size: int | None = None) -> Tensor:
        register_module(self.pyro_name, self)
        anchor = self._anchor()
        if x is not None:
            check_device(x, anchor)
            batch_size = x.shape[0]
        elif batch_size is None:
            raise ValueError("the model needs data x or, to generate, a batch_size")
        latents: dict[str, Tensor] = {}
        with self._plate(batch_size, num_data, anchor.device):
            for name in self.sites:  # top-down; [K, B, d_l] under a particle plate
                latents[name] = pyro.sample(name, self.site_distribution(name, latents, batch_size))
            return pyro.sample("x", self.observation(latents), obs=x)

    @torch.no_grad()
    def sample_latents(self, n: int) -> dict[str, Tensor]:
        """A prior draw of every latent layer, top-down: ``{"z1": [n, d_1], ...}``."""
        top = len(self.latents)
        z = self.top_prior(n).sample()
        out = {f"z{top}": z}
        for layer in range(top - 1, 0, -1):
            z = self.conditionals[layer - 1](z).sample()
            out[f"z{layer}"] = z
        return out

    def decode(self, latents: dict[str, Tensor]) -> Tensor:
        """The likelihood's parameters at ``latents["z1"]`` ``[..., d_1]``: x depends on z_1 alone."""
        return self.decoder(latents["z1"])


class HierarchicalGuide(nn.Module):
    """q(z | x) = q(z_1 | x) prod_{l>1} q(z_l | z_{l-1}), bottom-up; sites ``z1`` .. ``zL``.

    Arguments as :class:`HierarchicalModel`'s; ``input_scale`` multiplies x first (the
    likelihood's ``input_scale``: 1/255 for 8-bit levels).

    References: Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders".
    """

    max_plate_nesting = 1

    def __init__(
        self,
        x_dim: int,
        latents: Sequence[int],
        hidden: Sequence[int] = (100, 100),
        activation: str = "tanh",
        latent: str = "gaussian",
        input_scale: float = 1.0,
        latent_hidden_layers: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.latents = _check_latents(latents, latent)
        self.latent = latent
        hidden = tuple(hidden)
        between = _between(hidden, latent_hidden_layers)
        sizes = self.latents
        # layers[l - 1] is q(z_l | z_{l-1}) (z_0 = x); between latents the hidden width is d_l
        self.layers = nn.ModuleList(
            [LatentLayer(x_dim, sizes[0], hidden, activation, latent)]
            + [
                LatentLayer(sizes[i - 1], sizes[i], [sizes[i]] * between, activation, latent)
                for i in range(1, len(sizes))
            ]
        )
        self.input_scale = float(input_scale)
        self.x_dim = x_dim
        self.sites = tuple(f"z{layer}" for layer in range(1, len(sizes) + 1))  # sampling order: bottom-up
        self.pyro_name = name if name is not None else f"hierarchical{next(_names)}.guide"
        self._plate = DataPlate()

    def _input(self, x: Tensor) -> Tensor:
        return x * self.input_scale if self.input_scale != 1.0 else x

    def site_distribution(self, name: str, x: Tensor, latents: dict[str, Tensor]) -> dist.TorchDistribution:
        """q(z_l | z_{l-1}) at ``latents[f"z{l-1}"]`` (q(z_1 | x) for the first layer, batch ``[B]``)."""
        layer = int(name[1:])
        h = self._input(x) if layer == 1 else latents[f"z{layer - 1}"]
        return self.layers[layer - 1](h)

    def forward(self, x: Tensor, num_data: int | None = None, batch_size: int | None = None) -> Tensor:
        register_module(self.pyro_name, self)
        latents: dict[str, Tensor] = {}
        with self._plate(x.shape[0], num_data, x.device):
            for name in self.sites:  # bottom-up; [K, B, d_l] under a particle plate
                latents[name] = pyro.sample(name, self.site_distribution(name, x, latents))
        return latents[self.sites[-1]]

    @torch.no_grad()
    def posterior_mean(self, x: Tensor, num_samples: int = 200) -> dict[str, Tensor]:
        """E_q[z_l | x] per layer, ``[B, d_l]`` (what active units measure, Burda et al. 2016).

        The first layer's is exact; layer l's is E_{z_{l-1} ~ q}[mean of q(z_l | z_{l-1})] over
        ``num_samples`` draws of the layers below (Rao-Blackwellized: a unit whose conditional mean
        ignores its parent gets its exact mean, no Monte Carlo noise). A layer without a
        closed-form mean (a flow) takes the mean of its draws.
        """
        latents: dict[str, Tensor] = {}
        out = {}
        for layer, name in enumerate(self.sites, 1):
            q = self.site_distribution(name, x, latents)
            if layer == 1:
                latents[name] = q.sample((num_samples,))  # [S, B, d_1]
                out[name] = self._layer(0).mean(self._input(x)) if self._exact(0) else latents[name].mean(0)
            else:
                latents[name] = q.sample()  # [S, B, d_l]
                parent = latents[self.sites[layer - 2]]
                out[name] = (self._layer(layer - 1).mean(parent) if self._exact(layer - 1) else latents[name]).mean(0)
        return out

    def _layer(self, index: int) -> _GuideLayer:
        """``layers[index]``, typed (an ``nn.ModuleList`` holds plain modules)."""
        return cast(_GuideLayer, self.layers[index])

    def _exact(self, index: int) -> bool:
        return isinstance(self.layers[index], LatentLayer)

    @torch.no_grad()
    def code(self, x: Tensor) -> dict[str, Tensor]:
        """A representative code per layer, ``[B, d_l]``: the mean of q(z_1 | x), then the mean of
        each q(z_l | z_{l-1}) at the previous layer's code (probabilities for Bernoulli units)."""
        h = self._input(x)
        out = {}
        for layer in range(1, len(self.layers) + 1):
            h = self._layer(layer - 1).mean(h)
            out[f"z{layer}"] = h
        return out
