"""The fast path: log weights that a model and guide compute themselves, without Pyro's tracing.

A model and guide may offer their log densities directly (:class:`DirectModel`,
:class:`DirectGuide`; pyrovae's ``VAEModel`` and ``VAEGuide`` do): the guide's ``distribution(x)``
is q(z | x) at its one latent site ``z``, and the model's ``log_prob_terms(x, z)`` gives
log p(x | z) and log p(z) from the same ``prior()`` and likelihood its ``forward`` samples from.
The log weights are then one rsample of q, the model's terms and q's log density: the same
tensors the traced path builds, from the same random numbers in the same order, read by every
estimator through the same :class:`~pyrovae.estimators.weights.LogWeights` interface.

A class whose ``forward`` is redefined below the class that wrote its direct computation changes
what it samples without saying how to compute it directly, so it is traced (:func:`applies`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pyro.distributions import TorchDistribution
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.trace_messenger import TraceMessenger
from torch import Tensor
from torch.distributions import kl_divergence

from ..vae import data_scale, register_module
from .traced import SubsamplePin
from .weights import LogWeights, hooked_view


class DirectModel(Protocol):
    """A Pyro model p(x, z) = p(z) p(x | z), one latent site ``z`` and one observed site ``x`` in
    the data plate, that computes its own log densities."""

    pyro_name: str

    def prior(self, batch_size: int) -> TorchDistribution:
        """p(z) for ``batch_size`` data points: batch ``[B]``, event ``[z_dim]``."""
        ...

    def log_prob_terms(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """(log p(x | z), log p(z)) at latents ``z [K, B, z_dim]``, each ``[K, B]``, unscaled."""
        ...


class DirectGuide(Protocol):
    """A Pyro guide whose one latent site ``z`` is ``distribution(x)``, reparameterized."""

    pyro_name: str

    def distribution(self, x: Tensor) -> TorchDistribution:
        """q(z | x): batch ``[B]``, event ``[z_dim]``."""
        ...


MODEL_METHODS = ("prior", "log_prob_terms")
GUIDE_METHODS = ("distribution",)


def _definer(cls: type, attr: str) -> type | None:
    return next((klass for klass in cls.__mro__ if attr in vars(klass)), None)


def computes_what_it_samples(obj: Any, methods: tuple[str, ...]) -> bool:
    """Whether ``obj`` has each direct method, written for the ``forward`` it runs: defined in the
    class that defines ``forward`` or below it. A subclass that overrides ``forward`` (what it
    samples) but not the direct computation fails this, as does an instance whose ``forward`` was
    replaced; one that overrides ``prior()`` or ``distribution()`` passes, since both paths are
    built from them."""
    if any(name in vars(obj) for name in ("forward", *methods)):
        return False
    cls = type(obj)
    forward = _definer(cls, "forward")
    if forward is None:
        return False
    for method in methods:
        owner = _definer(cls, method)
        if owner is None or not issubclass(owner, forward):
            return False
    return hasattr(obj, "pyro_name")


def offers_direct(model: Callable, guide: Callable) -> bool:
    """Whether ``model`` and ``guide`` compute their log densities directly, for what they sample:
    one latent site (:class:`DirectModel` and :class:`DirectGuide`) or several in layers
    (:class:`~pyrovae.estimators.layered.LayeredModel` and ``LayeredGuide``); checked by attribute, as
    a Protocol's isinstance would cost more than the rest of this check at every step."""
    return offers_single(model, guide) or offers_layered(model, guide)


def offers_single(model: Callable, guide: Callable) -> bool:
    return computes_what_it_samples(model, MODEL_METHODS) and computes_what_it_samples(guide, GUIDE_METHODS)


def offers_layered(model: Callable, guide: Callable) -> bool:
    from . import layered

    return (computes_what_it_samples(model, layered.MODEL_METHODS)
            and computes_what_it_samples(guide, layered.GUIDE_METHODS))  # fmt: skip


def applies(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> bool:
    """Whether the direct path computes exactly what tracing ``model`` and ``guide`` would."""
    if not offers_direct(model, guide):
        return False
    if len(args) != 1 or not isinstance(args[0], Tensor) or set(kwargs) - {"num_data"}:
        return False
    # an active handler (poutine.scale, condition, ...) changes the model; SVI's capture of
    # parameter sites does not (the modules still register their parameters for it), nor does a
    # SubsamplePin (the VAE's plate is given its indices)
    return all(isinstance(m, SubsamplePin) or (isinstance(m, TraceMessenger) and m.param_only) for m in _PYRO_STACK)


class DirectLogWeights(LogWeights):
    """:class:`LogWeights` ``[K, B]`` from a :class:`DirectModel` and :class:`DirectGuide` at data
    ``x``, without tracing (see the module docstring). Flags as for the traced path:
    ``detach_latents`` (RWS), ``grad_scale_latents`` (DReG)."""

    def __init__(
        self,
        model: DirectModel,
        guide: DirectGuide,
        x: Tensor,
        num_data: int | None = None,
        *,
        num_particles: int,
        detach_latents: bool = False,
        grad_scale_latents: bool = False,
    ) -> None:
        register_module(guide.pyro_name, guide)  # as forward does, for SVI's parameter capture
        register_module(model.pyro_name, model)
        scale = data_scale(x.shape[0], num_data)
        q = guide.distribution(x)  # batch [B], event [z_dim]
        z = q.rsample((num_particles,))  # [K, B, z_dim]
        z_seen = z.detach() if detach_latents else z
        grad_scale: dict[str, Any] | None = {} if grad_scale_latents else None
        log_lik, log_prior = model.log_prob_terms(x, hooked_view(z_seen, grad_scale, q.event_dim, 1))
        log_q = q.log_prob(z_seen)  # [K, B]
        self.model, self.guide, self.x, self.q = model, guide, x, q
        super().__init__(log_lik, log_prior, log_q, scale, latents={"z": z}, grad_scale=grad_scale)

    def log_q_stop(self) -> Tensor:
        direct = self.q.log_prob(self.latents["z"].detach())  # d log q / dphi at fixed z
        return self.log_q - direct + direct.detach()

    def model_at_detached(self) -> tuple[Tensor, Tensor]:
        return self.model.log_prob_terms(self.x, self.latents["z"].detach())

    def kl(self) -> Tensor:
        try:
            kl = kl_divergence(self.q, self.model.prior(self.x.shape[0]))  # [B]
        except NotImplementedError:
            return self.log_q - self.log_prior
        return kl.expand_as(self.log_q)

    def non_reparameterized(self) -> list[str]:
        return [] if self.q.has_rsample else ["z"]
