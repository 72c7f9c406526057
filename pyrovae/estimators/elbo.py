"""The Monte Carlo ELBO with K particles."""

from __future__ import annotations

from torch import Tensor

from .base import Estimator, register
from .weights import LogWeights


@register("elbo")
class MonteCarloELBO(Estimator):
    """ELBO = (1/K) sum_k lw_k, lw_k = log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x).

    Reparameterized sites give the pathwise gradient; a guide site that cannot be
    reparameterized adds the score-function term stop(lw_k) * log q(z_k | x), with the data
    point's own log weight as its learning signal (a site in a plate inside the data plate: the
    terms of that plate element only, which alone can depend on it), and its direct term
    d log q / dphi at fixed z (zero in expectation) is left out, all as in Pyro's ``Trace_ELBO``.

    References: Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; Ranganath et al. 2014,
    "Black Box Variational Inference".
    """

    supports_score_function = True

    @property
    def carries_site_scales(self) -> bool:
        return True

    @property
    def estimates(self) -> str:
        return "elbo"

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return w.log_w(kl_weight).mean(0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor | None:
        if w.log_q_score is None:
            return None
        assert w.log_q_unreparam is not None  # it defaults to log_q_score
        lw = w.log_w(kl_weight)  # [K, B]
        # as Pyro's Trace_ELBO: the direct term -d log q / dphi of those sites (zero in expectation)
        # is left out; their score carries the learning signal lw
        direct = kl_weight * w.log_q_unreparam
        return (lw + (direct - direct.detach()) + w.score_term(kl_weight)).mean(0)
