"""The one-Gaussian-latent VAE's model and guide: z ~ N(0, I), x ~ p(x | decoder(z)); q(z | x)
a diagonal Gaussian from the encoder. The other families build on them (a learned prior changes
``prior()``; a flow guide changes ``distribution()``)."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ..likelihoods import Likelihood
from ..plates import DataPlate, register_module


class VAEModel(nn.Module):
    """p(x, z) = N(z; 0, I) p(x | decoder(z)); one latent site ``z``, one observed site ``x``.

    ``forward(x, num_data=None)`` is the Pyro model. With ``x=None`` it generates ``batch_size``
    data points. Both sites sit in the data plate at dim -1. The prior is fixed at N(0, I): its
    buffers only carry the device and dtype.

    ``log_prob_terms(x, z)`` computes the two sites' log densities from the same ``prior()`` and
    likelihood, without tracing: the estimators' fast path (:mod:`pyrovae.estimators.direct`). A
    subclass may change ``prior()``, the decoder or the likelihood and keep the fast path; one
    that overrides ``forward`` is traced unless it also overrides ``prior()`` and ``log_prob_terms``.
    """

    max_plate_nesting = 1
    prior_loc: Tensor  # buffers (register_buffer)
    prior_scale: Tensor

    def __init__(self, decoder: nn.Module, likelihood: Likelihood, z_dim: int, name: str) -> None:
        super().__init__()
        self.decoder = decoder
        self.likelihood = likelihood
        self.z_dim = z_dim
        self.pyro_name = name
        self.register_buffer("prior_loc", torch.zeros(z_dim))
        self.register_buffer("prior_scale", torch.ones(z_dim))
        self._plate = DataPlate()

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        return dist.Normal(self.prior_loc, self.prior_scale).expand([batch_size, self.z_dim]).to_event(1)

    def forward(self, x: Tensor | None = None, num_data: int | None = None, batch_size: int | None = None) -> Tensor:
        register_module(self.pyro_name, self)
        if x is not None:
            check_device(x, self.prior_loc)
            batch_size = x.shape[0]
        elif batch_size is None:
            raise ValueError("the model needs data x or, to generate, a batch_size")
        with self._plate(batch_size, num_data, self.prior_loc.device):
            z = pyro.sample("z", self.prior(batch_size))  # [K, B, z_dim] under a particle plate
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def log_prob_terms(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """(log p(x | z), log p(z)) at latents ``z`` ``[K, B, z_dim]``, each ``[K, B]`` and unscaled:
        what tracing ``forward`` at site ``x`` and site ``z`` gives."""
        check_device(x, self.prior_loc)
        return self.likelihood(self.decoder(z)).log_prob(x), self.prior(x.shape[0]).log_prob(z)

    def sample_latents(self, n: int) -> dict[str, Tensor]:
        """A draw of every latent site from the prior, ``[n, z_dim]``."""
        return {"z": self.prior(n).sample()}

    def decode(self, latents: dict[str, Tensor]) -> Tensor:
        """The decoder output the likelihood takes, at the given latents."""
        return self.decoder(latents["z"])


class VAEGuide(nn.Module):
    """q(z | x) = N(z; mu(x), diag sigma(x)^2), the amortized encoder, at site ``z``.

    ``distribution(x)`` returns q(z | x) itself (``forward`` samples it, and the estimators'
    fast path draws from it directly; a subclass that overrides ``forward`` is traced);
    ``local_parameters`` and ``local_guide`` expose the per-data-point parameters that the
    amortization-gap diagnostic refines (:class:`pyrovae.diagnostics.LocalGuide`).
    """

    max_plate_nesting = 1

    def __init__(self, encoder: nn.Module, name: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.pyro_name = name
        self._plate = DataPlate()

    def distribution(self, x: Tensor) -> dist.TorchDistribution:
        loc, scale = self.encoder(x)  # [B, z_dim] each
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: Tensor, num_data: int | None = None, batch_size: int | None = None) -> Tensor:
        register_module(self.pyro_name, self)
        with self._plate(x.shape[0], num_data, x.device):
            return pyro.sample("z", self.distribution(x))

    def code(self, x: Tensor) -> dict[str, Tensor]:
        """A representative code per latent site: the mean of q(z | x), ``[B, z_dim]``."""
        return {"z": self.distribution(x).mean}

    def local_parameters(self, x: Tensor) -> dict[str, Tensor]:
        """The encoder's output per data point, unconstrained: ``loc`` and ``log_scale``."""
        loc, scale = self.encoder(x)
        return {"loc": loc, "log_scale": scale.log()}

    def local_guide(self, params: dict[str, Tensor]) -> Callable:
        """A guide like this one whose q(z | x_i) has the given per-point parameters."""

        def guide(x: Tensor, num_data: int | None = None, batch_size: int | None = None) -> Tensor:
            with self._plate(x.shape[0], num_data, x.device):
                q = dist.Normal(params["loc"], params["log_scale"].exp()).to_event(1)
                return pyro.sample("z", q)

        guide.max_plate_nesting = 1  # type: ignore[attr-defined]
        return guide


def check_device(x: Tensor, like: Tensor) -> None:
    if x.device != like.device:
        raise ValueError(
            f"the data is on {x.device} but the VAE's parameters are on {like.device}; "
            f"move one of them (x.to({str(like.device)!r}) or vae.to(...))"
        )
