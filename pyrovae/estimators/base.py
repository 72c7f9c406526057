"""The estimator contract: a ``pyro.infer.ELBO`` computed from per-data-point log weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pyro.infer import ELBO
from pyro.util import warn_if_nan
from torch import Tensor

from ..errors import ConfigError
from ..registry import Registry
from .draw import draw
from .fast_path import fast_path
from .traced import TracedLogWeights, guess_max_plate_nesting
from .weights import LogWeights

WARMUP_UNITS = ("steps", "epochs")


def scaled_sum(per_point: Tensor, scale: float | Tensor) -> Tensor:
    """Sum of per-point values times the mini-batch scale N / B, applied outside every logsumexp."""
    if isinstance(scale, Tensor):
        return (per_point * scale).sum()
    return per_point.sum() * scale


class Estimator(ELBO):
    """A variational bound and a gradient estimator for it, as a drop-in ``pyro.infer.ELBO``.

    Works with any model/guide pair whose data points sit in a ``pyro.plate`` at dim -1 that
    encloses every sample site. Particles are drawn in one vectorized plate. Each data point's
    bound comes from unscaled log probabilities; the mini-batch scale multiplies the sum.

    - ``loss(model, guide, *args, **kwargs)``: the negated bound, a float (never a surrogate).
    - ``differentiable_loss(...)``: a scalar tensor with that value whose gradient is the
      estimator's: ``-(bound + (S - stop(S)))`` for the estimator's surrogate S.
    - ``loss_and_grads(...)``: runs backward on it and returns the float, for ``pyro.infer.SVI``.
    - ``bound(...)``: the per-data-point bound, ``[B]``, without gradient.

    Subclasses define ``point_bound`` and, where the gradient differs from the bound's own,
    ``point_surrogate``, both per data point from a :class:`LogWeights`.

    Args:
        num_particles: K, particles per data point.
        max_plate_nesting: plates the model nests (the data plate counts one); found by one
            RNG-neutral run of model and guide when None, unless they declare it.
        kl_weight: beta in lw = log p(x | z) + beta (log p(z) - log q(z | x)) for the gradient
            (beta-VAE weighting); the reported bound always uses beta = 1, and the scaled
            objective of the last step is kept in ``last_objective`` for logging.
        kl_warmup, kl_warmup_unit, kl_warmup_start: KL warm-up: beta rises linearly from
            ``kl_warmup_start`` to ``kl_weight`` over ``kl_warmup`` "steps" or "epochs".
        fast_path: compute the log weights directly, without tracing, for a model and guide
            that offer it (pyrovae's VAE; :mod:`pyrovae.estimators.fast_path`; the same numbers);
            False always traces. None takes ``Estimator.fast_path_default`` (True).
    """

    name: ClassVar[str]
    # class-wide flags an instance may override (RWS sets them from its wake_phi)
    supports_score_function: bool = False  # non-reparameterized guide sites
    needs_grad_scale: bool = False
    detach_latents: bool = False
    fast_path_default: ClassVar[bool] = True  # False makes every estimator trace (debugging)

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: int | None = None,
        kl_weight: float = 1.0,
        kl_warmup: int = 0,
        kl_warmup_unit: str = "steps",
        kl_warmup_start: float = 0.0,
        fast_path: bool | None = None,
    ) -> None:
        if not isinstance(num_particles, int) or isinstance(num_particles, bool) or num_particles < 1:
            raise ConfigError(f"num_particles must be an integer >= 1, got {num_particles!r}")
        if max_plate_nesting is not None and (not isinstance(max_plate_nesting, int) or max_plate_nesting < 1):
            raise ConfigError(f"max_plate_nesting must be an integer >= 1 (the data plate), got {max_plate_nesting!r}")
        if not float(kl_weight) >= 0 or not float(kl_warmup_start) >= 0:
            raise ConfigError(f"kl_weight and kl_warmup_start must be >= 0, got {kl_weight!r}, {kl_warmup_start!r}")
        if not isinstance(kl_warmup, int) or kl_warmup < 0:
            raise ConfigError(f"kl_warmup must be an integer >= 0, got {kl_warmup!r}")
        if kl_warmup_unit not in WARMUP_UNITS:
            raise ConfigError(f"unknown kl_warmup_unit {kl_warmup_unit!r}; valid: {', '.join(WARMUP_UNITS)}")
        super().__init__(num_particles=num_particles)
        self.max_plate_nesting = max_plate_nesting
        self.kl_weight = float(kl_weight)
        self.kl_warmup, self.kl_warmup_unit = kl_warmup, kl_warmup_unit
        self.kl_warmup_start = float(kl_warmup_start)
        self.num_steps = 0  # gradient steps taken (differentiable_loss calls); the trainer sets it on resume
        self.epoch = 0  # completed epochs, set by the trainer (or you) for an epoch schedule
        self.last_objective: Tensor | None = None
        self.fast_path = type(self).fast_path_default if fast_path is None else bool(fast_path)
        self._nesting: dict[tuple[int, int], int] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_particles={self.num_particles})"

    # -- shared machinery ---------------------------------------------------------------------
    def plate_nesting(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> int:
        if self.max_plate_nesting is not None:
            return self.max_plate_nesting
        key = (id(model), id(guide))
        if key not in self._nesting:
            self._nesting[key] = guess_max_plate_nesting(model, guide, args, kwargs)
        return self._nesting[key]

    def log_weights(
        self,
        model: Callable,
        guide: Callable,
        args: tuple,
        kwargs: dict,
        *,
        num_particles: int | None = None,
        for_gradient: bool = True,
    ) -> LogWeights:
        """Draw the particles; ``for_gradient`` adds the gradient machinery the estimator needs."""
        producer = fast_path(model, guide, args, kwargs) if self.fast_path else None
        w = draw(
            model,
            guide,
            args,
            kwargs,
            fast=producer or False,
            num_particles=num_particles or self.num_draws,
            max_plate_nesting=None if producer else self.plate_nesting(model, guide, args, kwargs),
            detach_latents=self.detach_latents,
            grad_scale_latents=for_gradient and self.needs_grad_scale,
            one_scale=None if self.carries_site_scales else f"estimator {self.name!r}",
        )
        if for_gradient and not self.supports_score_function:
            w.require_reparam(self.name)
        return w

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple:
        """Pyro's hook: the model and guide traces of one vectorized draw."""
        w = TracedLogWeights(
            model,
            guide,
            args,
            kwargs,
            num_particles=self.num_draws,
            max_plate_nesting=self.plate_nesting(model, guide, args, kwargs),
        )
        return w.model_trace, w.guide_trace

    # -- what subclasses define ---------------------------------------------------------------
    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:  # pragma: no cover
        """The bound per data point, ``[B]``, from the log weights at ``kl_weight``."""
        raise NotImplementedError

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor | None:
        """Per data point, ``[B]``: a tensor whose gradient is the estimator's; None when that
        is the gradient of the bound itself (at ``kl_weight``)."""
        return None

    def current_kl_weight(self) -> float:
        """beta now: linear from ``kl_warmup_start`` to ``kl_weight`` over ``kl_warmup`` steps or
        epochs (``kl_warmup_unit``), then constant (Bowman et al. 2016; Sonderby et al. 2016)."""
        if self.kl_warmup == 0:
            return self.kl_weight
        t = self.num_steps if self.kl_warmup_unit == "steps" else self.epoch
        frac = min(1.0, t / self.kl_warmup)
        return self.kl_warmup_start + frac * (self.kl_weight - self.kl_warmup_start)

    @property
    def reports_bound(self) -> bool:
        """Whether the value reported is a lower bound on log p(x) (Renyi with alpha < 0 is not)."""
        return True

    @property
    def estimates(self) -> str:
        """What the bound is, so that :func:`pyrovae.testing.check_estimator` can hold it to a
        reference: ``"elbo"``, ``"iwae"`` (IWAE(K)), or ``"bound"`` (a bound of its own, whose
        reference gradient is the path derivative of :meth:`bound_objective`)."""
        return "bound"

    @property
    def unbiased_gradient(self) -> bool:
        """Whether the gradient of ``differentiable_loss`` is unbiased for the gradient of the
        expected bound (what ``estimates`` names). Not with a KL weight or warm-up (the gradient is
        then of another objective), nor for an estimator that ascends something else (RWS)."""
        return self.kl_weight == 1.0 and self.kl_warmup == 0

    @property
    def carries_site_scales(self) -> bool:
        """Whether the bound is linear in the log weights (an ELBO), so that sites scaled differently
        (a ``poutine.scale`` around part of the model) each carry their own scale, as in Pyro's
        ``Trace_ELBO``. An importance-weighted bound is not defined then: the others refuse."""
        return False

    @property
    def num_draws(self) -> int:
        """Particles drawn per data point (M * K for the multi-sample estimators)."""
        return self.num_particles

    # -- pyro.infer.ELBO interface ------------------------------------------------------------
    def bound(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Tensor:
        """The bound of each data point, ``[B]`` (unscaled, kl_weight 1, no gradient)."""
        with torch.no_grad():
            return self.point_bound(self.log_weights(model, guide, args, kwargs, for_gradient=False))

    def bound_objective(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Tensor:
        """The negated scaled bound, as ``loss`` reports it, with the bound's own path derivative
        as its gradient (reparameterized sites): the reference a gradient estimator is held to."""
        w = self.log_weights(model, guide, args, kwargs, for_gradient=False)
        return -scaled_sum(self.point_bound(w), w.scale)

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The negated bound (summed over the batch and scaled by N / B), as a float."""
        with torch.no_grad():
            w = self.log_weights(model, guide, args, kwargs, for_gradient=False)
            loss = -scaled_sum(self.point_bound(w), w.scale).item()
        # pyro annotates warn_if_nan's value as numbers.Number, which a float is not to mypy
        warn_if_nan(loss, "loss")  # type: ignore[call-overload]
        return loss

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Tensor:
        kl_weight = self.current_kl_weight()
        self.num_steps += 1
        return self.objective(model, guide, args, kwargs, kl_weight)

    def objective(self, model: Callable, guide: Callable, args: tuple, kwargs: dict, kl_weight: float) -> Tensor:
        """``differentiable_loss`` at a given beta, without touching the step counter: a pure
        function of the parameters and the noise, which torch.compile can capture once."""
        return self._objective(self.log_weights(model, guide, args, kwargs), kl_weight)

    def _objective(self, w: LogWeights, kl_weight: float) -> Tensor:
        """The negated scaled bound with the gradient of the estimator's surrogate, from a draw."""
        bound = self.point_bound(w)
        surrogate = self.point_surrogate(w, kl_weight)
        if self.kl_weight != 1.0 or self.kl_warmup > 0:  # the scaled objective, for logging
            with torch.no_grad():
                scaled = bound if kl_weight == 1.0 else self.point_bound(w, kl_weight)
                self.last_objective = scaled_sum(scaled.detach(), w.scale)
        if surrogate is None:
            if kl_weight == 1.0:
                return -scaled_sum(bound, w.scale)
            surrogate = self.point_bound(w, kl_weight)
        s = scaled_sum(surrogate, w.scale)
        return -(scaled_sum(bound.detach(), w.scale) + (s - s.detach()))

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:  # as Pyro's: a loss with no path to a parameter is only reported
            loss.backward(retain_graph=self.retain_graph)
        value = loss.item()
        # pyro annotates warn_if_nan's value as numbers.Number, which a float is not to mypy
        warn_if_nan(value, "loss")  # type: ignore[call-overload]
        return value


def path_surrogate(
    w: LogWeights, a: Tensor, b: Tensor, kl_weight: float, *, c: Tensor | None = None, stop_q: bool
) -> Tensor:
    """The surrogate most path-derivative estimators share, per data point ``[B]``:

        S = sum_k stop(a_k) [log p(x | z_k) + beta log p(z_k)] - beta sum_k stop(b_k) log q(z_k | x)

    with the model's view of z_k carrying the gradient factor ``c_k`` (needs log weights built
    with ``grad_scale_latents``) and log q taken with stopped guide parameters when ``stop_q``.
    Then theta gets sum_k a_k grad_theta log p(x, z_k), and phi gets
    sum_k a_k c_k (d log p / dz_k)(dz_k / dphi) - beta sum_k b_k grad_phi log q(z_k | x) (the path
    part only when ``stop_q``). DReG, sticking the landing, RWS with DReG wake-phi and PIWAE are
    choices of (a, b, c).
    """
    if c is not None:
        w.scale_latent_grads(c)
    log_q = w.log_q_stop() if stop_q else w.log_q
    log_p = w.log_lik + kl_weight * w.log_prior if kl_weight != 1.0 else w.log_lik + w.log_prior
    return (a.detach() * log_p).sum(0) - kl_weight * (b.detach() * log_q).sum(0)


REGISTRY: Registry[Estimator] = Registry("estimator", base=ELBO)  # a plugin may be any pyro.infer.ELBO
register = REGISTRY.register
