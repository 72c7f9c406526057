"""A prior's transport: the velocity field that moves its samples when its parameters move.

For a distribution r_theta with a reparameterization z = T_theta(eps), the continuity equation
d r / d theta = -div(r v) holds with the velocity v(z) = dT_theta / dtheta at eps = T_theta^-1(z).
:func:`transport` gives, at a value z, a *view* of z: a tensor whose value is z and whose
derivative in the distribution's parameters is v(z), so that stop(g) . view is a surrogate for
g . v. With it, a score term E_q[f d log r / d theta] at samples of another distribution q becomes
a path term (Bauer & Mnih 2021, the generalized DReG identity; integrate the continuity equation
by parts against q f):

    E_q[f d log r / d theta] = E_q[(f (grad_z log q - grad_z log r) + grad_z f) . v].

Known fields:
- a Normal (any batch shape, inside ``Independent``): v = dloc + dscale (z - loc) / scale;
- a mixture of diagonal Gaussians (``MixtureSameFamily`` of ``Independent(Normal)`` components,
  and pyrovae's ``DiagonalGaussianMixture``, by matrix products): the components' fields weighted
  by their responsibilities at z, v = sum_c r_c(z) v_c(z), which solves the mixture's continuity
  equation for the component parameters. The mixture weights move mass between components, which
  no local field does: their score term stays as it is (unbiased), so the *direct* density that
  the caller removes is the one with the weights stopped.

Anything else has no known field: :func:`transport` returns None and its score term is kept.

References: Bauer & Mnih 2021, "Generalized Doubly Reparameterized Gradient Estimators" (ICML);
Jankowiak & Obermeyer 2018, "Pathwise Derivatives Beyond the Reparameterization Trick" (the
velocity field of the transport equation).
"""

from __future__ import annotations

from typing import NamedTuple

import pyro.distributions as dist
from torch import Tensor
from torch.distributions import Distribution, Independent, MixtureSameFamily, Normal

from ..families.gaussian_mixture import DiagonalGaussianMixture


class Transport(NamedTuple):
    """``view``: value z, derivative v(z) in the transported parameters (shape of z);
    ``direct``: the distribution whose log density carries exactly the transported parameters'
    dependence at fixed z (the rest stopped), for the caller to remove."""

    view: Tensor
    direct: Distribution


def _normal_view(loc: Tensor, scale: Tensor, value: Tensor) -> Tensor:
    return loc + scale * ((value - loc) / scale).detach()  # value z; d/dloc 1, d/dscale eps


def _moves(*params: Tensor) -> bool:
    return any(p.requires_grad for p in params)


def transport(r: Distribution, value: Tensor) -> Transport | None:
    """The transport of ``r`` at ``value`` (see the module docstring), or None where no field is
    known or no parameter of ``r`` has a gradient."""
    if isinstance(r, DiagonalGaussianMixture):
        return _diagonal_mixture(r, value)
    if isinstance(r, Independent):
        inner = transport(r.base_dist, value)
        return None if inner is None else Transport(inner.view, r)
    if isinstance(r, Normal):
        return Transport(_normal_view(r.loc, r.scale, value), r) if _moves(r.loc, r.scale) else None
    if isinstance(r, MixtureSameFamily):
        return _mixture(r, value)
    return None


def _mixture(r: MixtureSameFamily, value: Tensor) -> Transport | None:
    """Components ``Independent(Normal)`` with batch ``[..., C]``, event ``[z_dim]``: elementwise
    over ``[..., C, z_dim]``."""
    comp = r.component_distribution
    if not isinstance(comp, Independent) or comp.reinterpreted_batch_ndims != 1:
        return None
    if not isinstance(comp.base_dist, Normal):
        return None
    loc, scale = comp.base_dist.loc, comp.base_dist.scale
    if not _moves(loc, scale):
        return None
    z = value.unsqueeze(-2)  # [..., 1, z_dim] against the components' [..., C, z_dim]
    logits = r.mixture_distribution.logits
    resp = (comp.log_prob(z) + logits).softmax(-1).detach()  # [..., C]
    view = (resp.unsqueeze(-1) * _normal_view(loc, scale, z)).sum(-2)  # [..., z_dim]
    direct = dist.MixtureSameFamily(dist.Categorical(logits=logits.detach()), comp)
    return Transport(view, direct)


def _diagonal_mixture(r: DiagonalGaussianMixture, value: Tensor) -> Transport | None:
    """The same field by matrix products over ``[N, C]`` (N points): with responsibilities R,
    view = R loc + z * (R (scale / stop scale)) - R (scale stop(loc) / stop(scale)), whose value
    is z (rows of R sum to one) and whose derivatives are R (loc) and R eps (scale)."""
    loc, scale = r.component_loc, r.component_scale  # [C, z_dim]
    if not _moves(loc, scale):
        return None
    resp = r.component_log_probs(value.detach()).softmax(-1).to(value.dtype).detach()  # [N, C]
    z = value.reshape(-1, value.shape[-1])  # [N, z_dim]
    ratio = scale / scale.detach()
    view = resp @ loc + z * (resp @ ratio) - resp @ (ratio * loc.detach())  # [N, z_dim]
    direct = DiagonalGaussianMixture(r.mixture_logits.detach(), loc, scale).expand(r.batch_shape)
    # value exactly z (the rounding of sum_c R_c is left out of the value, which is never read)
    view = value.detach() + (view.reshape(value.shape) - view.reshape(value.shape).detach())
    return Transport(view, direct)
