"""A flow guide: a diagonal-Gaussian base from the encoder, then conditional autoregressive flows.

The encoder maps x to the base N(mu(x), diag sigma(x)^2) and a context h(x); each of T flow steps
is an autoregressive bijection conditioned on h (Kingma et al. 2016 feed the encoder's extra output
h into every step):

    z_0 = mu(x) + sigma(x) * eps,   z_t = f_t(z_{t-1}; h(x)),   z = z_T,
    log q(z | x) = log N(z_0; mu(x), diag sigma(x)^2) - sum_t log |det df_t / dz_{t-1}|.

``flow="iaf"``: f_t(z)_i = m_i + exp(s_i) z_i, with (m, log s) = MADE(z_{<i}, h), so log |det| =
sum_i s_i (Pyro's ``ConditionalAffineAutoregressive``: the unstable form, Kingma et al.'s eq. 10,
with log s clipped to [-5, 3]). ``flow="spline"``: f_t(z)_i = g_i(z_i), a monotone rational spline
on [-bound, bound] (identity outside) whose bins, slopes (and, for ``order="linear"``, lambdas)
come from MADE(z_{<i}, h) (Pyro's ``ConditionalSplineAutoregressive``, with slope 1 at the box's
edges: :class:`ConditionalSplineFlow`). Both are inverse autoregressive: sampling, and log q at a
value just sampled (Pyro caches each step's pre-image), take one pass per step; log q at any other
value (a model draw for RWS's sleep phase, ``z.detach()``) inverts each step sequentially, z_dim
passes per step (z_dim = 32: ~15x an ELBO step for IAF, ~70x for splines).

The path derivative that STL and DReG need, d log q_stop(z) / dz at a value just sampled with the
parameters stopped, needs no inversion (:meth:`FlowDistribution.score_at_sample`): with z_0 the
base draw and z_t = f_t(z_{t-1}) the sampled chain, J_t = df_t/dz_{t-1} (triangular in the
step's variable order) and r_t = d log |det J_t| / dz_{t-1}, both at z_{t-1},

    g_0 = d log N(z_0; mu, sigma) / dz_0,   g_t = J_t^-T (g_{t-1} - r_t),   d log q(z) / dz = g_T,

one triangular solve a step (:func:`flow_step_solve`: blocked back-substitution through the
MADE's weights at the chain's points; exact, no series, no inversion).

The variable order alternates between steps (reversed every other step) through each net's
``permutation``, not through separate permutation transforms, so that nets whose output layers are
zero (:meth:`FlowGuide.zero_init`) make the whole flow the identity and q the base Gaussian.

References: Kingma et al. 2016, "Improving Variational Inference with Inverse Autoregressive Flow";
Germain et al. 2015, "MADE: Masked Autoencoder for Distribution Estimation"; Durkan et al. 2019,
"Neural Spline Flows"; Dolatabadi, Erfani & Leckie 2020, "Invertible Generative Modeling using
Linear Rational Splines".
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from functools import partial
from typing import cast

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import (
    AffineAutoregressive,
    ConditionalAffineAutoregressive,
    ConditionalSplineAutoregressive,
    SplineAutoregressive,
)
from pyro.distributions.transforms.spline import ConditionalSpline, ConditionedSpline
from pyro.nn import ConditionalAutoRegressiveNN
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..networks import MLPEncoder
from ..networks.mlp import activation as make_activation
from ..plates import DataPlate, register_module

FLOWS = ("iaf", "spline")
SPLINE_ORDERS = ("linear", "quadratic")
MIN_SLOPE = 1e-3  # the spline's smallest slope, Pyro's and Durkan et al.'s min_derivative
_names = itertools.count()


# -- the spline step, with slope 1 where the spline meets the identity ------------------------------
class _UnitEdgeSpline(ConditionedSpline):
    """Pyro's rational spline with slope exactly 1 at the box's edges. Pyro pads the edge slopes
    with 1 - min_derivative (a kink where the spline meets the identity, and no parameters give
    the identity); Durkan et al.'s reference code pads with 1. The minimum slope is applied to the
    interior slopes instead (:meth:`_UnitSlopeConditionalSpline._params`)."""

    def spline_op(self, x: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        return super().spline_op(x, min_derivative=0.0, **kwargs)


class _UnitSlopeConditionalSpline(ConditionalSpline):
    """Pyro's conditional spline whose interior slopes are MIN_SLOPE + (1 - MIN_SLOPE) softplus(u) /
    log 2: 1 at net output u = 0, so that zero outputs (equal bins, slopes 1) give the identity."""

    def _params(self, context: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        w, h, d, lam = super()._params(context)  # d = softplus(u)
        return w, h, MIN_SLOPE + (1.0 - MIN_SLOPE) * d / math.log(2.0), lam

    def condition(self, context: Tensor) -> _UnitEdgeSpline:
        return _UnitEdgeSpline(partial(self._params, context), bound=self.bound, order=self.order)


class _SplineAutoregressive(SplineAutoregressive):
    def __init__(self, input_dim: int, autoregressive_nn, count_bins: int, bound: float, order: str) -> None:
        super().__init__(input_dim, autoregressive_nn, count_bins=count_bins, bound=bound, order=order)
        self.spline = _UnitSlopeConditionalSpline(autoregressive_nn, input_dim, count_bins, bound, order)


class ConditionalSplineFlow(ConditionalSplineAutoregressive):
    """Pyro's ``ConditionalSplineAutoregressive`` with unit slopes at the box's edges (see
    :class:`_UnitEdgeSpline`): one neural-spline step, conditioned on a context."""

    def condition(self, context: Tensor) -> SplineAutoregressive:
        cond_nn = partial(self.nn, context=context)
        cond_nn.permutation = self.nn.permutation  # type: ignore[attr-defined]
        cond_nn.get_permutation = self.nn.get_permutation  # type: ignore[attr-defined]
        return _SplineAutoregressive(self.input_dim, cond_nn, **self.kwargs)


FlowStep = ConditionalAffineAutoregressive | ConditionalSplineFlow  # one step of a FlowGuide


# -- the path derivative: d log q / dz at a sampled point, one triangular solve a step --------------
def _masked_weight(layer: nn.Module) -> Tensor:
    """A MADE layer's effective weight (Pyro's ``MaskedLinear``): mask * weight, ``[out, in]``."""
    return cast(Tensor, layer.mask) * cast(Tensor, layer.weight)


def _made_forward(net: ConditionalAutoRegressiveNN, context: Tensor, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """The MADE ``net`` at inputs x ``[*S, d]`` and context ``[*S', c]`` (broadcast), as Pyro's
    ``_forward`` computes it: (the hidden pre-activations, the output ``[*S, M * d]``). The first
    layer's context part is taken once per context row, not once per particle."""
    first = net.layers[0]
    w = _masked_weight(first)  # [H0, c + d]: Pyro's input is cat([context, x])
    c = context.shape[-1]
    a = F.linear(context, w[:, :c], cast(Tensor, first.bias)) + F.linear(x, w[:, c:])  # [*S, H0]
    pre = [a]
    for layer in net.layers[1:-1]:
        pre.append(layer(net.f(pre[-1])))
    return pre, net.layers[-1](net.f(pre[-1]))


def _made_outputs(net: ConditionalAutoRegressiveNN, theta: Tensor) -> Tensor | tuple[Tensor, ...]:
    """``theta [*S, M, d]`` shaped as the MADE returns its parameters (Pyro's ``_forward``)."""
    if net.output_multiplier == 1:
        return theta[..., 0, :]
    if net.count_params == 1:
        return theta
    if net.all_ones:
        return tuple(theta.unbind(-2))
    return tuple(theta[..., s, :] for s in net.param_slices)


def _elementwise(step: FlowStep, params: Tensor | tuple[Tensor, ...]) -> AffineAutoregressive | SplineAutoregressive:
    """The flow step with its MADE replaced by fixed ``params``: x -> y elementwise given them."""
    if isinstance(step, ConditionalSplineFlow):
        return _SplineAutoregressive(step.input_dim, lambda _: params, **step.kwargs)
    return AffineAutoregressive(lambda _: params, **step.kwargs)


def _activation_slope(f: nn.Module, a: Tensor) -> Tensor:
    """f'(a) elementwise for the MADE's nonlinearity ``f``."""
    a = a.detach().requires_grad_()
    with torch.enable_grad():
        (slope,) = torch.autograd.grad(f(a).sum(), a)
    return slope


def _pullback_rows(net: ConditionalAutoRegressiveNN, pre: list[Tensor], rows: Tensor) -> Tensor:
    """Cotangent rows ``[R, N, H_last]`` on the MADE's last hidden output, at N points whose hidden
    pre-activations are ``pre`` (each ``[N, H_i]``), pulled back to its first hidden output,
    ``[R, N, H_0]`` (nothing to do with one hidden layer)."""
    for i in range(len(pre) - 1, 0, -1):
        rows = (rows * _activation_slope(net.f, pre[i])) @ _masked_weight(net.layers[i])
    return rows


def _batched_rows(a: Tensor, w: Tensor) -> Tensor:
    """``a [b, N, M] @ w [b, M, H]`` -> ``[b, N, H]``: a sum of M outer products when M is tiny
    (IAF's M = 2, where a batched matmul with inner size 2 is many times slower), bmm otherwise."""
    if a.shape[-1] > 4:
        return torch.bmm(a, w)
    rows = a[..., :1] * w[:, None, 0]
    for m in range(1, a.shape[-1]):
        rows.addcmul_(a[..., m : m + 1], w[:, None, m])
    return rows


def flow_step_solve(step: FlowStep, context: Tensor, x: Tensor, v: Tensor, block: int = 8) -> Tensor:
    """g ``[*S, d]`` with J^T g = v - r for one autoregressive flow step (IAF or spline, as
    :class:`FlowGuide` builds them) at inputs ``x [*S, d]``, its parameters stopped: J = dy/dx
    (lower triangular in the net's variable order), r = d log |det J| / dx, ``v [*S, d]``.

    With theta = MADE(x), J = diag(dy/dx | theta) + U W_in, U = (dy/dtheta)(dtheta/da_0) the
    outputs' cotangents at the first hidden pre-activation a_0 and W_in the masked input weights.
    Back-substitution over blocks of ``block`` variables, last first: each block forms its rows
    of U and its own triangular block of J^T and solves it, the later blocks entering through
    c = U^T g ``[N, H_0]``; so J is never formed whole and the step never inverted.
    """
    net, d, shape = cast(ConditionalAutoRegressiveNN, step.nn), x.shape[-1], v.shape
    with torch.no_grad():
        pre, out = _made_forward(net, context, x)
        pre = [a.flatten(0, -2) for a in pre]  # [N, H_i], N = prod(S)
    theta = out.unflatten(-1, (-1, d)).requires_grad_()  # [*S, M, d]
    x = x.detach().requires_grad_()
    with torch.enable_grad():
        elementwise = _elementwise(step, _made_outputs(net, theta))
        y = elementwise(x)
        logdet = elementwise.log_abs_det_jacobian(x, y)
        dy_dx, dy_dtheta = torch.autograd.grad(y.sum(), (x, theta), retain_graph=True)
        dl_dx, dl_dtheta = torch.autograd.grad(logdet.sum(), (x, theta), allow_unused=True)
    with torch.no_grad():
        dy_dx, a_t = dy_dx.flatten(0, -2), dy_dtheta.flatten(0, -3).permute(2, 0, 1)  # [N, d], [d, N, M]
        w_out = _masked_weight(net.layers[-1]).unflatten(0, (-1, d)).transpose(0, 1)  # [d, M, H]
        slope = _activation_slope(net.f, pre[0])  # [N, H_0]
        w_in = _masked_weight(net.layers[0])[:, -d:]  # [H_0, d]
        c = _pullback_rows(net, pre, (dl_dtheta.flatten(0, -3).flatten(-2) @ w_out.transpose(0, 1).flatten(0, 1))[None])
        rhs = v.reshape(-1, d) - (c[0] * slope) @ w_in  # v - r, the part of r through theta; [N, d]
        if dl_dx is not None:
            rhs = rhs - dl_dx.reshape(-1, d)
        order = net.permutation  # position k holds variable order[k]
        if len(pre) == 1 and a_t.shape[-1] <= 4:  # one hidden layer, few parameters a variable (IAF)
            g = _substitute_by_products(order, rhs, dy_dx, a_t, w_out, slope, w_in, block)
        else:
            g = _substitute_by_rows(net, pre, order, rhs, dy_dx, a_t, w_out, slope, w_in, block)
    return g.view(shape)


def _substitute_by_rows(
    net: ConditionalAutoRegressiveNN,
    pre: list[Tensor],
    order: Tensor,
    rhs: Tensor,
    dy_dx: Tensor,
    a_t: Tensor,
    w_out: Tensor,
    slope: Tensor,
    w_in: Tensor,
    block: int,
) -> Tensor:
    """Back-substitution for :func:`flow_step_solve`, last block first, forming each block's rows
    of U ``[b, N, H_0]`` (pulled back through every hidden layer): any MADE."""
    g, c = torch.empty_like(rhs), torch.zeros_like(slope)
    d = rhs.shape[-1]
    for end in range(d, 0, -block):
        idx = order[max(end - block, 0) : end]
        u_b = _pullback_rows(net, pre, _batched_rows(a_t[idx], w_out[idx])).mul_(slope)  # [b, N, H_0]
        w_b = w_in[:, idx]  # [H_0, b]
        jac_bb = (u_b @ w_b).permute(1, 0, 2) + torch.diag_embed(dy_dx[:, idx])  # [N, b, b], lower triangular
        r_b = rhs[:, idx] - c @ w_b  # [N, b]
        g_b = torch.linalg.solve_triangular(jac_bb.transpose(-1, -2), r_b.unsqueeze(-1), upper=True)
        g[:, idx] = g_b.squeeze(-1)
        c = c + torch.bmm(g_b.transpose(-1, -2), u_b.transpose(0, 1)).squeeze(-2)  # [N, H_0]
    return g


def _substitute_by_products(
    order: Tensor, rhs: Tensor, dy_dx: Tensor, a_t: Tensor, w_out: Tensor, slope: Tensor, w_in: Tensor, block: int
) -> Tensor:
    """The same back-substitution for a MADE with one hidden layer and M <= 4 parameters a variable
    (IAF: M = 2), without U. Below the diagonal of each block (the diagonal is dy/dx),
    J[n, i, j] = sum_m a[n, i, m] T[n, (i, j), m] with T = slope @ R and
    R[h, ((i, j), m)] = W_out[(m, i), h] W_in[h, j] over every block's pairs j < i, a product of the
    weights alone: all diagonal blocks are ONE matrix product ``[N, H] x [H, P M]`` before the
    sequential part, which is then a solve and c = U^T g = sum_m (a_m g) @ W_out_m (times the
    slope) a block; no ``[b, N, H]`` tensor is formed. The variables are put in the net's order
    once and padded in front to whole blocks (unit diagonal, zero right-hand side: zero there)."""
    n, d = rhs.shape
    pad = -d % block
    rhs = F.pad(rhs.index_select(1, order), (pad, 0))  # [N, D], D = d + pad
    dy_dx = F.pad(dy_dx.index_select(1, order), (pad, 0), value=1.0)
    a = F.pad(a_t.index_select(0, order).permute(1, 0, 2), (0, 0, pad, 0))  # [N, D, M]
    w_out = F.pad(w_out.index_select(0, order), (0, 0, 0, 0, pad, 0))  # [D, M, H]
    w_in = F.pad(w_in.index_select(1, order), (pad, 0))  # [H, D]
    later, earlier, dest = _block_pairs(d + pad, block, rhs.device)  # [P], [P], [P + D]
    r = (w_out.index_select(0, later).permute(2, 0, 1) * w_in.index_select(1, earlier)[..., None]).flatten(1)
    below = ((slope @ r).view(n, -1, a.shape[-1]) * a.index_select(1, later)).sum(-1)  # [N, P]
    blocks = rhs.new_zeros(n, (d + pad) * block).index_copy_(1, dest, torch.cat([below, dy_dx], 1))
    jt = blocks.view(n, -1, block, block).permute(1, 0, 3, 2).contiguous()  # [nb, N, b, b]: J^T, upper
    g, c = torch.empty_like(rhs), torch.zeros_like(slope)
    for k in range(jt.shape[0] - 1, -1, -1):
        s = slice(k * block, (k + 1) * block)
        r_b = rhs[:, s] - (c * slope) @ w_in[:, s]  # [N, b]
        g_b = torch.linalg.solve_triangular(jt[k], r_b.unsqueeze(-1), upper=True).squeeze(-1)
        g[:, s] = g_b
        c = c + torch.einsum("nbm,bmh->nh", a[:, s] * g_b.unsqueeze(-1), w_out[s])  # [N, H_0], before the slope
    return g[:, pad:].index_select(1, torch.argsort(order))  # back from the net's order


@functools.lru_cache(maxsize=64)
def _block_pairs(size: int, block: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """For ``size`` positions in blocks of ``block``: the pairs (i, j), j < i, inside each block
    (rows ``later``, columns ``earlier``), and where each pair's value, then each position's
    diagonal value, lands in the blocks laid out flat, ``[size // block, block, block]``."""
    pairs = [(i, j) for start in range(0, size, block) for i in range(start, start + block) for j in range(start, i)]
    both = torch.tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2)  # [P, 2]; P = 0 for blocks of one
    later, earlier = both[:, 0], both[:, 1]
    diagonal = torch.arange(size, device=device)

    def flat(i: Tensor, j: Tensor) -> Tensor:
        return (i // block) * block * block + (i % block) * block + j % block

    return later, earlier, torch.cat([flat(later, earlier), flat(diagonal, diagonal)])


class FlowDistribution(dist.TransformedDistribution):
    """q(z | x) of a :class:`FlowGuide`: its base Gaussian through the conditioned ``transforms``,
    which are ``steps`` (the guide's flow modules) conditioned on ``context``; plus
    :meth:`score_at_sample`. An expanded copy is a plain ``TransformedDistribution``."""

    def __init__(self, base: dist.TorchDistribution, transforms: list, steps: list[FlowStep], context: Tensor) -> None:
        super().__init__(base, transforms)
        self.steps, self.context = steps, context
        self._chain: list[Tensor] = []

    def expand(self, batch_shape, _instance=None):
        """A plain ``TransformedDistribution``, expanded (its draws are not this one's)."""
        return dist.TransformedDistribution(self.base_dist, self.transforms).expand(batch_shape, _instance)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """As ``TransformedDistribution.rsample``, keeping the chain z_0, ..., z_T for the score."""
        x = self.base_dist.rsample(sample_shape)
        chain = [x]
        for transform in self.transforms:
            x = transform(x)
            chain.append(x)
        self._chain = chain
        return x

    def score_at_sample(self, value: Tensor) -> Tensor | None:
        """d log q(z | x) / dz at z = ``value`` with the parameters stopped, ``[*S, d]`` (no
        graph), when ``value`` is the last :meth:`rsample` (the module docstring's recursion);
        None for any other value."""
        if not self._chain or value is not self._chain[-1]:
            return None
        with torch.no_grad():
            z0 = self._chain[0].detach().requires_grad_()
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self.base_dist.log_prob(z0).sum(), z0)
            for step, x in zip(self.steps, self._chain[:-1], strict=True):
                g = flow_step_solve(step, self.context, x.detach(), g)
        return g


# -- the encoder --------------------------------------------------------------------------------------
class ContextEncoder(nn.Module):
    """x ``[B, x_dim]`` -> (mu, sigma, h): pyrovae's MLP encoder (``self.gaussian``, an
    :class:`~pyrovae.networks.MLPEncoder`) for the base Gaussian, and its last hidden layer as the
    context h ``[B, hidden[-1]]`` (x itself, scaled, without hidden layers). A separate linear map
    to h would add nothing: each flow net's first layer is linear in h."""

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int], act: str, input_scale: float) -> None:
        super().__init__()
        self.gaussian = MLPEncoder(x_dim, z_dim, tuple(hidden), act, input_scale=input_scale)
        self.context_dim = hidden[-1] if hidden else x_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        g = self.gaussian
        x = x * g.input_scale if g.input_scale != 1.0 else x
        h = g.body(x) if g.body is not None else x
        loc, scale = g.head(h)
        return loc, scale, h


def _made(z_dim: int, context_dim: int, hidden: Sequence[int], param_dims: list[int], reverse: bool, act: str):
    order = torch.arange(z_dim)
    return ConditionalAutoRegressiveNN(
        z_dim,
        context_dim,
        list(hidden),
        param_dims=param_dims,
        # pyro annotates permutation as the legacy torch.LongTensor type; an int64 Tensor is what it takes
        permutation=order.flip(0) if reverse else order,  # type: ignore[arg-type]
        nonlinearity=make_activation(act),
    )


class FlowGuide(nn.Module):
    """q(z | x): a Gaussian base from the encoder followed by ``flow_layers`` conditional
    autoregressive flows (see the module docstring), at the latent site ``z``.

    ``distribution(x)`` is q(z | x), a reparameterized ``TransformedDistribution`` (batch ``[B]``,
    event ``[z_dim]``), so the estimators' fast path applies with pyrovae's ``VAEModel``;
    ``forward`` samples it in the data plate; ``code(x)`` is the flow at the base mean.

    Args:
        x_dim, z_dim: data and latent sizes.
        hidden, activation, input_scale: the encoder MLP (as pyrovae's VAE); ``activation`` is
            also the flow nets' nonlinearity.
        flow: "iaf" (affine) or "spline" (neural spline).
        flow_layers: T, the number of flow steps.
        flow_hidden: hidden sizes of each step's MADE net, each >= z_dim; ``[10 * z_dim]`` by
            default (Pyro's).
        count_bins, bound, order: the spline's bins on [-bound, bound] and its order ("linear":
            Dolatabadi et al.; "quadratic": Durkan et al.'s rational-quadratic).
        identity_init: start from the identity flow (:meth:`zero_init`); Pyro's random
            initialization otherwise.
        encoder, context_dim: your own encoder, ``encoder(x) -> (mu, sigma, h)`` with mu, sigma
            ``[B, z_dim]`` and h ``[B, context_dim]`` (then ``hidden``, ``activation`` and
            ``input_scale`` are unused).
        name: prefix of the parameters' names in Pyro's param store; unique by default.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        input_scale: float = 1.0,
        flow: str = "iaf",
        flow_layers: int = 2,
        flow_hidden: Sequence[int] | None = None,
        count_bins: int = 8,
        bound: float = 3.0,
        order: str = "linear",
        identity_init: bool = False,
        encoder: nn.Module | None = None,
        context_dim: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if flow not in FLOWS:
            raise ConfigError(f"unknown flow {flow!r}; valid: {', '.join(FLOWS)}")
        if order not in SPLINE_ORDERS:
            raise ConfigError(f"unknown spline order {order!r}; valid: {', '.join(SPLINE_ORDERS)}")
        if not isinstance(flow_layers, int) or isinstance(flow_layers, bool) or flow_layers < 0:
            raise ConfigError(f"flow_layers must be an integer >= 0, got {flow_layers!r}")
        flow_hidden = tuple(flow_hidden) if flow_hidden is not None else (10 * z_dim,)
        if not flow_hidden or any(h < z_dim for h in flow_hidden):
            raise ConfigError(f"flow_hidden must be non-empty sizes >= z_dim ({z_dim}), got {list(flow_hidden)}")
        if (encoder is None) != (context_dim is None):
            raise ConfigError("give encoder and context_dim (the size of its h) together, or neither")
        if encoder is None:
            encoder = ContextEncoder(x_dim, z_dim, hidden, activation, input_scale)
            context_dim = encoder.context_dim
        assert context_dim is not None
        self.encoder = encoder
        self.z_dim, self.flow = z_dim, flow
        steps: list[nn.Module] = []
        for t in range(flow_layers):
            if flow == "iaf":
                steps.append(
                    ConditionalAffineAutoregressive(
                        _made(z_dim, context_dim, flow_hidden, [1, 1], t % 2 == 1, activation)
                    )
                )
            else:
                k = count_bins
                param_dims = [k, k, k - 1, k] if order == "linear" else [k, k, k - 1]
                made = _made(z_dim, context_dim, flow_hidden, param_dims, t % 2 == 1, activation)
                steps.append(ConditionalSplineFlow(z_dim, made, count_bins=k, bound=bound, order=order))
        self.flows = nn.ModuleList(steps)
        self.pyro_name = name if name is not None else f"flowguide{next(_names)}"
        self._plate = DataPlate()
        if identity_init:
            self.zero_init()

    @torch.no_grad()
    def zero_init(self) -> FlowGuide:
        """Zero every flow net's output layer: each step is then the identity (IAF: m = 0, s = 0;
        spline: equal bins, slopes 1) and q(z | x) the base Gaussian. Returns the guide."""
        for step in self._flow_steps():
            last = step.nn.layers[-1]
            last.weight.zero_()
            last.bias.zero_()
        return self

    def _flow_steps(self) -> list[FlowStep]:
        """The steps ``__init__`` put in ``self.flows``, typed (an ``nn.ModuleList`` holds plain modules)."""
        return cast(list[FlowStep], list(self.flows))

    def _steps(self, h: Tensor) -> list:
        return [step.condition(h) for step in self._flow_steps()]

    def distribution(self, x: Tensor) -> dist.TorchDistribution:
        loc, scale, h = self.encoder(x)  # [B, z_dim], [B, z_dim], [B, context_dim]
        return FlowDistribution(dist.Normal(loc, scale).to_event(1), self._steps(h), self._flow_steps(), h)

    def forward(self, x: Tensor, num_data: int | None = None, batch_size: int | None = None) -> Tensor:
        register_module(self.pyro_name, self)
        with self._plate(x.shape[0], num_data, x.device):
            return pyro.sample("z", self.distribution(x))

    @torch.no_grad()
    def posterior_mean(self, x: Tensor, num_samples: int = 1000) -> dict[str, Tensor]:
        """E_q[z | x], ``[B, z_dim]``, by the mean of ``num_samples`` draws (no closed form): for a
        unit with posterior scale near 1 its Monte Carlo variance is about 1 / num_samples, a tenth
        of the active-unit threshold at the default."""
        return {"z": self.distribution(x).sample((num_samples,)).mean(0)}

    def code(self, x: Tensor) -> dict[str, Tensor]:
        """A representative code, ``[B, z_dim]``: the flow applied to the base mean mu(x)."""
        z, _, h = self.encoder(x)
        for step in self._steps(h):
            z = step(z)
        return {"z": z}


class FlowLayer(nn.Module):
    """A flow guide as one conditional layer of a hierarchical guide: features h -> q(z | h).

    :class:`~pyrovae.families.hierarchical.HierarchicalGuide` calls ``layer(h)`` for q(z_l | h)
    and ``layer.mean(h)`` for its representative code; this gives it the flow's ``distribution``
    and ``code``, so q(z_1 | x) of a stack of layers can be a flow (the layers above stay Gaussian).
    """

    def __init__(self, flow: FlowGuide) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, h: Tensor) -> dist.TorchDistribution:
        return self.flow.distribution(h)

    def mean(self, h: Tensor) -> Tensor:
        return self.flow.code(h)["z"]
