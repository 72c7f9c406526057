"""The VampPrior: p(z) is the guide's q(z | u) averaged over learned pseudo-inputs u_1..u_C."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ..likelihoods import Likelihood
from .gaussian import VAEModel
from .gaussian_mixture import mixture

# the range of the data each likelihood's loaders produce, where it is bounded (Likelihood.data_kind)
DATA_BOUNDS = {"binary": (0.0, 1.0), "unit": (0.0, 1.0), "counts": (0.0, 255.0)}


class EncodingGuide(Protocol):
    """A guide whose q(z | x) is ``distribution(x)``: batch ``[B]``, event ``[z_dim]``."""

    def distribution(self, x: Tensor) -> dist.TorchDistribution: ...


class VampPriorModel(VAEModel):
    """p(x, z) = p(z) p(x | decoder(z)) with the "variational mixture of posteriors" prior

        p(z) = (1/C) sum_c q(z | u_c),

    the guide's own q(z | x) at C learned pseudo-inputs u_c ``[C, x_dim]`` (its encoder, shared
    weights). Only ``prior()`` changes, so the fast path, ``log_prob_terms`` and the traced path
    all use it; its log density is a logsumexp over the C components, ``[K, B]`` at ``[K, B, z_dim]``,
    as a matrix product (:class:`~pyrovae.families.gaussian_mixture.DiagonalGaussianMixture`).
    Inside ``fixed_parameters()`` (an evaluation: :func:`pyrovae.evaluation.log_likelihood` enters
    it) the pseudo-inputs' encodings are computed once, by the first ``prior()`` under no_grad, and
    reused by every later one there; with gradients on, and outside, ``prior()`` encodes afresh, so
    training always differentiates through the pseudo-inputs of the current step.
    No KL from a Gaussian to a mixture is known in closed form: the library's "analytic_elbo"
    takes the Monte Carlo term log q - log p there, i.e. it equals "elbo" (a run's config refuses
    the pair in one line, since the name would promise a closed form).

    The guide is held outside the model's submodules (``object.__setattr__``): its parameters
    belong to the guide, which registers them in Pyro's param store under its own name. As a
    submodule here they would be registered a second time under the model's name, and SVI would
    keep two optimizer states for one tensor; ``model.parameters()``, ``state_dict()`` and
    ``model.to(...)`` therefore leave the encoder to the guide (``VAE`` moves both).

    Pseudo-inputs live in data space (the encoder applies its own input scale) and are kept in the
    data's range by clamping, Tomczak's hardtanh: [0, 1] for binary and unit data, [0, 255] for
    8-bit counts (``bounds="data"``); ``bounds=None`` leaves them unbounded (real-valued data), a
    pair sets the range. They start at Tomczak's N(0.05, 0.01^2) (in units of the range's width,
    from its lower end; around 0 when unbounded), or at ``init`` as given (e.g. C training points
    plus N(0, 0.01^2) noise, the paper's "VampPrior data" variant).

    Args:
        decoder, likelihood, z_dim, name: as for :class:`~pyrovae.vae.VAEModel`.
        guide: the VAE's guide, with ``distribution(x)`` (pyrovae's ``VAEGuide``).
        x_dim: size of a data point (a pseudo-input).
        num_components: C, the number of pseudo-inputs (500 in the paper's MNIST runs).
        bounds: "data", None or (low, high); see above.
        init: starting pseudo-inputs ``[C, x_dim]``.

    References: Tomczak & Welling 2018, "VAE with a VampPrior" (AISTATS), eq. 9 and sec. 3.2.
    """

    guide: EncodingGuide  # set with object.__setattr__: not a submodule

    def __init__(
        self,
        decoder: nn.Module,
        likelihood: Likelihood,
        z_dim: int,
        name: str,
        guide: EncodingGuide,
        x_dim: int,
        num_components: int = 500,
        bounds: tuple[float, float] | str | None = "data",
        init: Tensor | None = None,
    ) -> None:
        super().__init__(decoder, likelihood, z_dim, name)
        if not isinstance(num_components, int) or isinstance(num_components, bool) or num_components < 1:
            raise ValueError(f"num_components must be an integer >= 1, got {num_components!r}")
        if bounds == "data":
            bounds = DATA_BOUNDS.get(likelihood.data_kind)
        elif isinstance(bounds, str):
            raise ValueError(f"bounds must be 'data', None or (low, high), got {bounds!r}")
        self.bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))
        object.__setattr__(self, "guide", guide)  # not a submodule: see the class docstring
        if init is None:  # Tomczak's N(0.05, 0.01^2) on [0, 1], carried to the range; N(0, 0.01^2) unbounded
            noise = torch.randn(num_components, x_dim)
            if self.bounds is None:
                init = 0.01 * noise
            else:
                low, high = self.bounds
                init = low + (high - low) * (0.05 + 0.01 * noise)
        elif tuple(init.shape) != (num_components, x_dim):
            raise ValueError(f"init must have shape [{num_components}, {x_dim}], got {list(init.shape)}")
        self.pseudo_inputs = nn.Parameter(init.detach().clone().to(self.prior_loc))  # [C, x_dim]
        self.held: dict[str, dist.TorchDistribution] | None = None  # see fixed_parameters

    def inputs(self) -> Tensor:
        """The pseudo-inputs u_c in the data's range, ``[C, x_dim]``."""
        if self.bounds is None:
            return self.pseudo_inputs
        return self.pseudo_inputs.clamp(*self.bounds)  # hardtanh: zero gradient outside

    @contextmanager
    def fixed_parameters(self) -> Iterator[None]:
        """A scope in which the caller leaves the parameters (pseudo-inputs and encoder) as they
        are: the first ``prior()`` under no_grad encodes the pseudo-inputs, later ones under
        no_grad reuse that encoding; with gradients on it is not used. Dropped on exit (nested
        scopes share the outermost one's)."""
        outer = self.held
        self.held = {} if outer is None else outer
        try:
            yield
        finally:
            self.held = outer

    def components(self) -> dist.TorchDistribution:
        """q(z | u_c) at the pseudo-inputs: batch ``[C]``, event ``[z_dim]`` (held inside
        ``fixed_parameters`` under no_grad)."""
        if self.held is None or torch.is_grad_enabled():
            return self.guide.distribution(self.inputs())
        if "components" not in self.held:
            self.held["components"] = self.guide.distribution(self.inputs())
        return self.held["components"]

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        logits = self.pseudo_inputs.new_zeros(self.pseudo_inputs.shape[0])  # [C], equal weights
        return mixture(logits, self.components()).expand([batch_size])  # batch [B], event [z_dim]
