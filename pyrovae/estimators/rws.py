"""Reweighted wake-sleep, with mini-batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, path_surrogate, register, scaled_sum
from .simulated import ReplayValues, simulate_data
from .structure import counted_guide_sites, require_density
from .traced import SubsamplePin, TracedLogWeights, site_log_prob
from .weights import LogWeights, logmeanexp

WAKE_PHI = ("rws", "dreg", "none")


@register("rws")
class ReweightedWakeSleep(Estimator):
    """Reweighted wake-sleep: the model and the guide ascend different objectives.

    The reported value is IWAE(K). With z_k ~ q(z | x) and w~_k their normalized weights:

    - wake-theta: sum_k stop(w~_k) grad_theta log p(x, stop z_k) (the IWAE model gradient);
    - wake-phi, ``wake_phi="rws"``: sum_k stop(w~_k) grad_phi log q(stop z_k | x), which fits q to
      the posterior (an inclusive KL); works for guide sites that cannot be reparameterized;
    - wake-phi, ``wake_phi="dreg"``: sum_k stop(w~_k - w~_k^2) (d lw'_k / dz_k)(dz_k / dphi), the
      doubly reparameterized form (Tucker et al. 2019), routed to phi only;
    - sleep-phi, ``sleep_phi=True``: (z, x) ~ p_theta, one draw per data point, and
      grad_phi log q(z | x); with a wake-phi as well, the two are averaged. It needs the data as
      the model's first argument and one observed site.

    Mini-batches work: each data point's weights come from its own particles and the N / B scale
    multiplies the sum (Pyro's ``ReweightedWakeSleep`` does not support subsampling).

    References: Bornschein & Bengio 2015, "Reweighted Wake-Sleep"; Le et al. 2019, "Revisiting
    Reweighted Wake-Sleep for Models with Stochastic Control Flow"; Tucker et al. 2019.
    """

    supports_score_function = True  # with wake_phi="rws" nothing is reparameterized

    def __init__(self, num_particles: int = 1, wake_phi: str = "rws", sleep_phi: bool = False, **kwargs: Any) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        if wake_phi not in WAKE_PHI:
            raise ConfigError(f"unknown wake_phi {wake_phi!r}; valid: {', '.join(WAKE_PHI)}")
        if wake_phi == "none" and not sleep_phi:
            raise ConfigError("rws needs a wake_phi or sleep_phi=True to train the guide")
        self.wake_phi, self.sleep_phi = wake_phi, bool(sleep_phi)
        dreg = wake_phi == "dreg"
        # RWS never differentiates through z, except for DReG's path derivative
        self.detach_latents = not dreg
        self.needs_grad_scale = dreg
        self.supports_score_function = not dreg

    @property
    def estimates(self) -> str:
        return "iwae"

    @property
    def unbiased_gradient(self) -> bool:
        return False  # the guide ascends wake-phi (or sleep-phi), not the bound

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return logmeanexp(w.log_w(kl_weight), 0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        wt = w.log_w(kl_weight).softmax(0).detach()  # [K, B]
        phi_weight = 0.5 if self.sleep_phi and self.wake_phi != "none" else 1.0
        if self.wake_phi == "dreg":
            # theta: a = w~ (wake-theta); phi: a c - b = w~(1 - w~) on each path term
            b = phi_weight * (wt - wt * wt)
            c = phi_weight * (1.0 - wt)
            return path_surrogate(w, wt, b, kl_weight, c=c, stop_q=True)
        # z is detached here: log p reaches theta only, log q reaches phi only
        s = (wt * (w.log_lik + kl_weight * w.log_prior)).sum(0)
        if self.wake_phi == "rws":
            s = s + phi_weight * (wt * w.log_q).sum(0)
        return s

    def objective(self, model: Callable, guide: Callable, args: tuple, kwargs: dict, kl_weight: float) -> Tensor:
        w = self.log_weights(model, guide, args, kwargs)
        loss = self._objective(w, kl_weight)
        if not self.sleep_phi:
            return loss
        phi_weight = 0.5 if self.wake_phi != "none" else 1.0
        pin = w.pin if isinstance(w, TracedLogWeights) else SubsamplePin()
        log_q, scale = self._sleep_log_q(model, guide, args, kwargs, pin)
        s = phi_weight * scaled_sum(log_q, scale)
        return loss - (s - s.detach())

    def _sleep_log_q(self, model: Callable, guide: Callable, args: tuple, kwargs: dict, pin: SubsamplePin) -> tuple:
        """log q(z | x) at one (z, x) ~ p_theta per data point, ``[B]``, and the batch scale.

        The dream covers the wake phase's data points (``pin``), one dreamt point for each, and
        the guide sees the dreamt x in place of the data (:func:`~pyrovae.estimators.simulated.simulate_data`:
        as the model's first argument, or written at the plate's indices; a model that transforms
        its data is refused with one line rather than hand the guide a scrambled x). The guide is
        run at the dreamt latents; one whose log q cannot be evaluated there (auxiliary sites, a
        point mass) is refused with one line.
        """
        nesting = self.plate_nesting(model, guide, args, kwargs)
        d = simulate_data(model, args, kwargs, pin, "rws's sleep_phi")
        with pin:
            replayed = poutine.trace(ReplayValues(d.latents)(guide)).get_trace(*d.args, **kwargs)
        q_sites = counted_guide_sites(replayed, guide)
        require_density(q_sites, "rws's sleep_phi", "use wake_phi alone (sleep_phi=false)")
        log_q: float | Tensor = 0.0
        for name in d.latents.nodes:
            log_q = log_q + site_log_prob(replayed.nodes[name], nesting)
        return torch.as_tensor(log_q).reshape(-1), d.scale
