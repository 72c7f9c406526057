"""The thermodynamic variational objective: a Riemann sum of the thermodynamic integral."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, register
from .weights import LogWeights

PARTITIONS = ("linear", "log", "moments")
TVO_GRADIENTS = ("covariance", "reparam")
MOMENT_GRID = 101  # betas on which the moment-spaced partition interpolates the curve E_beta[lw]


def fixed_partition(kind: str, num_partitions: int, beta_min: float) -> Tensor:
    """0 = beta_0 < ... < beta_S = 1, float64: evenly spaced, or log-uniform from beta_1 = beta_min."""
    if kind == "linear" or num_partitions == 1:  # one interval is [0, 1] whatever the spacing (the ELBO)
        return torch.linspace(0.0, 1.0, num_partitions + 1, dtype=torch.float64)
    inner = torch.logspace(torch.log10(torch.tensor(beta_min)).item(), 0.0, num_partitions, dtype=torch.float64)
    return torch.cat([inner.new_zeros(1), inner])


def heated_means(lw: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """Self-normalized estimates of E_{pi_beta}[lw] from K draws of q, with pi_beta proportional to
    q^(1 - beta) p^beta: weights softmax_k(beta lw_k). Returns (weights ``[S, K, B]``, means ``[S, B]``)."""
    heated = betas.to(lw)[:, None, None] * lw  # [S, K, B]
    wt = heated.softmax(1)
    return wt, (wt * lw).sum(1)


def moment_partition(lw: Tensor, num_partitions: int) -> Tensor:
    """Moment spacing (Brekelmans et al. 2020): the betas at which the batch's mean E_beta[lw]
    passes S evenly spaced values between its ends, interpolated on a grid of betas (float64, on
    the device of ``lw``: no host sync)."""
    grid = torch.linspace(0.0, 1.0, MOMENT_GRID, dtype=torch.float64, device=lw.device)
    _, means = heated_means(lw.detach().double(), grid)
    curve = torch.cummax(means.mean(1), 0).values  # E_beta[lw] rises in beta; cummax irons out noise
    steps = torch.linspace(0.0, 1.0, num_partitions + 1, dtype=torch.float64, device=lw.device)
    targets = curve[0] + steps * (curve[-1] - curve[0])
    i = torch.searchsorted(curve, targets).clamp(1, MOMENT_GRID - 1)
    lo, hi = curve[i - 1], curve[i]
    frac = torch.where(hi > lo, (targets - lo) / (hi - lo).clamp_min(1e-300), torch.zeros_like(targets))
    betas = grid[i - 1] + frac.clamp(0.0, 1.0) * (grid[i] - grid[i - 1])
    betas = torch.cat([betas.new_zeros(1), betas[1:-1], betas.new_ones(1)])
    return torch.cummax(betas, 0).values


@register("tvo")
class TVO(Estimator):
    """The thermodynamic variational objective (Masrani, Le & Wood 2019), a lower bound.

    log p(x) = integral_0^1 E_{pi_beta}[lw] d beta with pi_beta proportional to q^(1-beta) p^beta,
    and E_{pi_beta}[lw] rises in beta. On a partition 0 = beta_0 < ... < beta_S = 1 the left
    Riemann sum TVO_L = sum_{s<S} (beta_{s+1} - beta_s) E_{beta_s}[lw] is a lower bound (S = 1 is
    the ELBO) and the right sum TVO_U an upper bound; each E_beta is estimated from the same K
    draws of q with self-normalized weights softmax_k(beta lw_k) (consistent in K, not exact at
    small K). ``loss`` reports -TVO_L; :meth:`upper` gives TVO_U per point.

    Partitions (``partition``): "linear"; "log" (log-uniform from ``beta_min`` to 1, with 0 in
    front); "moments" (Brekelmans et al. 2020: betas where the batch's E_beta[lw] is evenly
    spaced, re-chosen from each draw without gradient).

    Gradients (``gradient``): "covariance", the paper's score-function form
    grad E_beta[f] = E_beta[grad f] + Cov_beta(f, grad log pi~_beta) at stopped particles
    (log pi~_beta = (1 - beta) log q + beta log p), with the K / (K - 1) correction of the authors'
    code: needs no reparameterization, so it trains discrete latents; "reparam" differentiates the
    estimated sum through reparameterized particles. Neither is unbiased for the gradient of
    TVO_L (the self-normalized estimates are biased), which ``unbiased_gradient`` says.

    References: Masrani, Le & Wood 2019, "The Thermodynamic Variational Objective"; Brekelmans,
    Masrani, Wood, Ver Steeg & Galstyan 2020, "All in the Exponential Family: Bregman Duality in
    Thermodynamic Variational Inference".
    """

    def __init__(
        self,
        num_particles: int = 2,
        num_partitions: int = 5,
        partition: str = "log",
        beta_min: float = 0.1,
        gradient: str = "covariance",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        if partition not in PARTITIONS:
            raise ConfigError(f"tvo: unknown partition {partition!r}; valid: {', '.join(PARTITIONS)}")
        if gradient not in TVO_GRADIENTS:
            raise ConfigError(f"tvo: unknown gradient {gradient!r}; valid: {', '.join(TVO_GRADIENTS)}")
        if isinstance(num_partitions, bool) or not isinstance(num_partitions, int) or num_partitions < 1:
            raise ConfigError(f"tvo: num_partitions must be an integer >= 1, got {num_partitions!r}")
        if not 0.0 < float(beta_min) < 1.0:
            raise ConfigError(f"tvo: beta_min (the log partition's beta_1) must lie in (0, 1), got {beta_min!r}")
        self.num_partitions, self.partition, self.beta_min = num_partitions, partition, float(beta_min)
        self.gradient = gradient
        covariance = gradient == "covariance"
        self.supports_score_function = covariance
        self.detach_latents = covariance

    def __repr__(self) -> str:
        return (f"TVO(num_particles={self.num_particles}, num_partitions={self.num_partitions}, "
                f"partition={self.partition!r}, gradient={self.gradient!r})")  # fmt: skip

    @property
    def unbiased_gradient(self) -> bool:
        return False  # self-normalized estimates of E_beta: biased for the gradient of TVO_L

    def betas(self, lw: Tensor) -> Tensor:
        """The partition for this draw, float64: ``[S + 1]`` from 0 to 1."""
        if self.partition == "moments":
            return moment_partition(lw, self.num_partitions)
        return fixed_partition(self.partition, self.num_partitions, self.beta_min)

    def sums(self, lw: Tensor) -> tuple[Tensor, Tensor]:
        """(TVO_L, TVO_U) per data point, ``[B]`` each."""
        betas = self.betas(lw)
        _, means = heated_means(lw, betas)
        widths = (betas[1:] - betas[:-1]).to(lw)[:, None]
        return (widths * means[:-1]).sum(0), (widths * means[1:]).sum(0)

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return self.sums(w.log_w(kl_weight))[0]

    def point_upper(self, w: LogWeights) -> Tensor:
        """TVO_U per data point, ``[B]``: an upper bound on log p(x) (in the large-K limit)."""
        return self.sums(w.log_w())[1]

    def upper(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> Tensor:
        """TVO_U of each data point, ``[B]`` (unscaled, no gradient), beside :meth:`bound`."""
        with torch.no_grad():
            return self.point_upper(self.log_weights(model, guide, args, kwargs, for_gradient=False))

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor | None:
        if self.gradient == "reparam":
            return None
        lw = w.log_w(kl_weight)  # at stopped particles: theta through log p, phi through log q
        betas = self.betas(lw)
        wt, means = heated_means(lw.detach(), betas)
        wt = wt[:-1]  # [S, K, B], the left sum's betas
        b = betas[:-1].to(lw)[:, None, None]
        log_pi = w.log_q + b * lw  # [S, K, B]: log q + beta lw, (1 - beta) log q + beta log p at kl_weight 1
        k = w.num_particles
        correction = k / (k - 1) if k > 1 else 1.0
        centred = wt * (lw.detach() - means[:-1, None, :])
        per_beta = (wt * lw).sum(1) + correction * (centred * log_pi).sum(1)  # [S, B]
        widths = (betas[1:] - betas[:-1]).to(lw)[:, None]
        return (widths * per_beta).sum(0)
