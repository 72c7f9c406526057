"""The VAE as a Pyro model/guide pair: z ~ N(0, I), x ~ p(x | decoder(z)); q(z | x) amortized."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.params.param_store import param_with_module_name
from torch import Tensor, nn

from . import likelihoods
from .errors import ConfigError, ModelStructureError
from .likelihoods import Likelihood
from .networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

ARCHITECTURES = ("mlp", "conv")
_names = itertools.count()


def register_module(name: str, module: nn.Module) -> None:
    """Register ``module``'s parameters in Pyro's global param store, as ``pyro.module`` does.

    Unlike ``pyro.module`` it refuses a store that already holds *other* tensors under these
    names (two VAEs given one name would otherwise train one set of parameters and run the
    other). With ``pyro.settings.set(module_local_params=True)`` nothing is registered: the
    parameters live in the module and a torch optimizer over ``module.parameters()`` trains them.
    """
    if pyro.settings.get("module_local_params"):
        return
    for pname, p in module.named_parameters():
        if not p.requires_grad:  # frozen, as pyro.module leaves it
            continue
        full = param_with_module_name(name, pname)
        if not p.is_contiguous():  # the store would keep (and train) a contiguous copy instead
            p.data = p.data.contiguous()
        if pyro.param(full, p) is not p:
            raise ModelStructureError(
                f"Pyro's param store holds another tensor under {full!r}: two modules share "
                f"the name {name!r}. Give each VAE its own name= or call pyro.clear_param_store()"
            )


def data_scale(batch_size: int, num_data: int | None) -> float:
    """The mini-batch scale N / B of the VAE's data plate (1 for a full batch)."""
    if num_data is None or num_data == batch_size:
        return 1.0
    if num_data < batch_size:
        raise ValueError(f"num_data={num_data} is smaller than the batch ({batch_size})")
    return num_data / batch_size


class _DataPlate:
    """``pyro.plate("data", num_data, dim=-1)`` over a mini-batch of the given size.

    With ``num_data`` (the data set's size N) the plate is subsampled, so Pyro scales the batch
    by N / B; the subsample indices are passed in, so no random numbers are drawn for them.
    """

    def __init__(self) -> None:
        self._index: dict[tuple[int, torch.device], Tensor] = {}

    def __call__(self, batch_size: int, num_data: int | None, device: torch.device) -> pyro.plate:
        if data_scale(batch_size, num_data) == 1.0:
            return pyro.plate("data", batch_size, dim=-1)
        key = (batch_size, device)
        if key not in self._index:
            self._index[key] = torch.arange(batch_size, device=device)
        return pyro.plate("data", num_data, subsample=self._index[key], dim=-1)


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

    def __init__(self, decoder: nn.Module, likelihood: Likelihood, z_dim: int, name: str) -> None:
        super().__init__()
        self.decoder = decoder
        self.likelihood = likelihood
        self.z_dim = z_dim
        self.pyro_name = name
        self.register_buffer("prior_loc", torch.zeros(z_dim))
        self.register_buffer("prior_scale", torch.ones(z_dim))
        self._plate = _DataPlate()

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        return dist.Normal(self.prior_loc, self.prior_scale).expand([batch_size, self.z_dim]).to_event(1)

    def forward(self, x: Tensor | None = None, num_data: int | None = None, batch_size: int | None = None) -> Tensor:
        register_module(self.pyro_name, self)
        if x is not None:
            _check_device(x, self.prior_loc)
            batch_size = x.shape[0]
        elif batch_size is None:
            raise ValueError("the model needs data x or, to generate, a batch_size")
        with self._plate(batch_size, num_data, self.prior_loc.device):
            z = pyro.sample("z", self.prior(batch_size))  # [K, B, z_dim] under a particle plate
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def log_prob_terms(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """(log p(x | z), log p(z)) at latents ``z`` ``[K, B, z_dim]``, each ``[K, B]`` and unscaled:
        what tracing ``forward`` at site ``x`` and site ``z`` gives."""
        _check_device(x, self.prior_loc)
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
        self._plate = _DataPlate()

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


def _check_device(x: Tensor, like: Tensor) -> None:
    if x.device != like.device:
        raise ValueError(
            f"the data is on {x.device} but the VAE's parameters are on {like.device}; "
            f"move one of them (x.to({str(like.device)!r}) or vae.to(...))"
        )


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
        architecture: "mlp" or "conv" (needs ``image_shape``).
        image_shape: (C, H, W) of a data point, for the conv nets.
        encoder, decoder: your own modules: ``encoder(x) -> (mu, sigma)``, each ``[B, z_dim]``, given
            the data as the likelihood models it (8-bit levels 0..255 for ``"counts"`` likelihoods,
            which pyrovae's own encoders scale by 1/255);
            ``decoder(z)`` maps ``[..., z_dim]`` to ``[..., likelihood.num_params * x_dim]``.
        name: prefix of the parameters' names in Pyro's param store; unique by default.
        latents, latent, guide, flow_layers, flow_hidden, prior, prior_components: the model
            family (:mod:`pyrovae.families`): stochastic layers ``[d_1, ..., d_L]`` (``[]``: one of
            ``z_dim``), ``"gaussian"`` or ``"bernoulli"`` units, a ``"gaussian"``, ``"iaf"`` or
            ``"spline"`` guide, a ``"gaussian"``, ``"vamp"`` or ``"mog"`` prior. Anything but one
            Gaussian layer, Gaussian guide and N(0, I) prior builds that family's model and guide.
    """

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
        latents: Sequence[int] = (),
        latent: str = "gaussian",
        guide: str = "gaussian",
        flow_layers: int = 2,
        flow_hidden: Sequence[int] = (200,),
        prior: str = "gaussian",
        prior_components: int = 500,
    ) -> None:
        super().__init__()
        from .families import Family, build, check_family

        family = Family(tuple(latents), latent, guide, flow_layers, tuple(flow_hidden), prior, prior_components)
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
        if isinstance(likelihood, str):
            likelihood = likelihoods.make(likelihood, x_dim=x_dim, **(likelihood_options or {}))
        elif likelihood_options:
            raise ConfigError("likelihood_options go with a likelihood name, not an instance")
        out_dim = likelihood.num_params * x_dim
        hidden = tuple(hidden)
        self.name = name if name is not None else f"vae{next(_names)}"
        check_family(family, architecture, z_dim)
        self.family = family
        self.x_dim, self.z_dim = x_dim, family.latents[0] if family.latents else z_dim  # the layer next to x
        if not family.is_default:
            if encoder is not None or decoder is not None or architecture != "mlp":
                raise ConfigError("latents/latent/guide/prior other than one gaussian layer build their own mlp "
                                  "networks: give no encoder, decoder or architecture")  # fmt: skip
            self.model, self.guide = build(family, x_dim, z_dim, likelihood, hidden, activation, self.name)
            return
        z_dim = self.z_dim
        if architecture == "conv":
            if image_shape is None:
                raise ConfigError("architecture 'conv' needs image_shape=(C, H, W)")
            encoder = encoder or ConvEncoder(image_shape, z_dim, act=activation, input_scale=likelihood.input_scale)
            decoder = decoder or ConvDecoder(image_shape, z_dim, likelihood.num_params, act=activation)
        else:
            encoder = encoder or MLPEncoder(x_dim, z_dim, hidden, activation, input_scale=likelihood.input_scale)
            decoder = decoder or MLPDecoder(z_dim, out_dim, hidden, activation)
        self.model = VAEModel(decoder, likelihood, z_dim, f"{self.name}.model")
        self.guide = VAEGuide(encoder, f"{self.name}.guide")

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
