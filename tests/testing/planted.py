"""Planted faults: estimators and likelihoods with one mistake each, which the kit must name."""

from __future__ import annotations

import torch

from pyrovae.estimators import Estimator, LogWeights, logmeanexp, scaled_sum
from pyrovae.likelihoods.bernoulli import BernoulliLikelihood


class IWAELike(Estimator):
    """IWAE(K), the honest part every planted estimator shares."""

    @property
    def estimates(self) -> str:
        return "iwae"

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> torch.Tensor:
        return logmeanexp(w.log_w(kl_weight), 0)


class SurrogateLoss(IWAELike):
    """loss() reports the value of the self-normalized surrogate sum_k w~_k lw_k, not the bound."""

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            w = self.log_weights(model, guide, args, kwargs, for_gradient=False)
            lw = w.log_w()
            return -scaled_sum((lw.softmax(0) * lw).sum(0), w.scale).item()


class ScaleInsideLogsumexp(IWAELike):
    """The mini-batch scale N / B multiplies the log weights inside the log-mean-exp."""

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> torch.Tensor:
        return logmeanexp(w.log_w(kl_weight) * w.scale, 0)

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return -self.point_bound(self.log_weights(model, guide, args, kwargs, for_gradient=False)).sum().item()

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return -self.point_bound(self.log_weights(model, guide, args, kwargs)).sum()


class UndeclaredBias(IWAELike):
    """Reports IWAE(K) but follows the ELBO's gradient, and declares nothing."""

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> torch.Tensor:
        return w.log_w(kl_weight).mean(0)


class BreaksUnderSubsampleSize(IWAELike):
    """Takes N / B from its arguments, (x, idx): right for subsample=idx, 1 under subsample_size."""

    def _scale(self, args: tuple) -> float:
        return args[0].shape[0] / len(args[1]) if len(args) > 1 and args[1] is not None else 1.0

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            w = self.log_weights(model, guide, args, kwargs, for_gradient=False)
            return -(self.point_bound(w).sum() * self._scale(args)).item()

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return -(self.point_bound(self.log_weights(model, guide, args, kwargs)).sum() * self._scale(args))


class Unpicklable(IWAELike):
    """Holds a lambda."""

    def __init__(self, num_particles: int = 1, **kwargs) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        self.transform = lambda lw: lw

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> torch.Tensor:
        return logmeanexp(self.transform(w.log_w(kl_weight)), 0)


class VarGradOverK(Estimator):
    """The tutorial's VarGrad with the sample variance normalized by K, not K - 1: the guide's
    gradient is then (K - 1) / K of the ELBO's."""

    supports_score_function = True
    detach_latents = True

    @property
    def estimates(self) -> str:
        return "elbo"

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> torch.Tensor:
        return w.log_w(kl_weight).mean(0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> torch.Tensor:
        log_p = w.log_lik + kl_weight * w.log_prior
        lw = log_p.detach() - kl_weight * w.log_q
        return log_p.mean(0) - 0.5 * (lw - lw.mean(0)).pow(2).mean(0)


class Unnormalized(BernoulliLikelihood):
    """A Bernoulli whose log_prob is off by a constant."""

    def forward(self, params):
        d = super().forward(params)
        log_prob = d.log_prob
        d.log_prob = lambda x: log_prob(x) + 0.1
        return d


class WrongSampler(BernoulliLikelihood):
    """A Bernoulli that samples at other logits than it scores."""

    def forward(self, params):
        d = super().forward(params)
        shifted = super().forward(params + 1.0)
        d.sample = shifted.sample
        return d


class AcceptsAnything(BernoulliLikelihood):
    """A Bernoulli whose data check lets grey levels through."""

    def support_error(self, x):
        return None


class UntypedOption(BernoulliLikelihood):
    def __init__(self, x_dim: int, temperature=1.0) -> None:
        super().__init__(x_dim)
        self.temperature = temperature
