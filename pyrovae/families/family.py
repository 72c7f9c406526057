"""A model family: the latent layers, the guide and the prior of a VAE, declared by config keys.

:class:`Family` holds the keys; :func:`check_family` refuses a combination that cannot work, in
one line with the valid choices; :func:`build` makes the model/guide pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, TypedDict

from ..errors import ConfigError
from ..likelihoods import Likelihood
from ..networks import MLPDecoder, MLPEncoder, Shapes
from ..plugins import Origin
from .flows import FlowGuide, FlowLayer
from .gaussian import VAEGuide, VAEModel
from .hierarchical import HierarchicalGuide, HierarchicalModel
from .mixture import MixturePriorModel
from .plugin import GUIDES as GUIDE_PLUGINS
from .plugin import PRIORS as PRIOR_PLUGINS
from .plugin import PluginGuide, PluginPriorModel, is_plugin, make_guide, make_prior, origin_of, valid_words
from .vamp import VampPriorModel

LATENTS = ("gaussian", "bernoulli")
GUIDES = ("gaussian", "iaf", "spline")
PRIORS = ("gaussian", "vamp", "mog")
FLOWS = ("iaf", "spline")
MIXTURES = ("vamp", "mog")

# name: (what it is, the config keys it reads)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "latents=[d1,d2,...]": ("stochastic layers, bottom-up guide (Burda et al. 2016)", ("latents", "hidden")),
    "latent=bernoulli": ("binary units, a sigmoid belief net (Mnih & Rezende 2016)", ("latents", "z_dim")),
    "guide=iaf": ("inverse autoregressive flow guide (Kingma et al. 2016)", ("flow_layers", "flow_hidden")),
    "guide=spline": ("neural spline autoregressive flow guide (Durkan et al. 2019)", ("flow_layers", "flow_hidden")),
    "prior=vamp": ("VampPrior: the guide at learned pseudo-inputs (Tomczak & Welling 2018)", ("prior_components",)),
    "prior=mog": ("a learned mixture of Gaussians prior", ("prior_components",)),
}


class _FlowOptions(TypedDict):
    flow: str
    flow_layers: int
    flow_hidden: tuple[int, ...]


@dataclass(frozen=True)
class Family:
    """The model family keys of a config (see :mod:`pyrovae.config` for each one's meaning)."""

    latents: tuple[int, ...] = ()
    latent: str = "gaussian"
    guide: str = "gaussian"
    flow_layers: int = 2
    flow_hidden: tuple[int, ...] = (200,)
    prior: str = "gaussian"
    prior_components: int = 500

    @classmethod
    def of(cls, values: Any) -> Family:
        """The family keys read off any object that has them as attributes (a run's config), lists
        as tuples."""
        keys = {f.name: getattr(values, f.name) for f in fields(cls)}
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in keys.items()}
        return cls(**kwargs)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @property
    def reparameterized(self) -> bool:
        """Whether every latent can be reparameterized (Bernoulli units cannot: estimators need
        score-function terms for them)."""
        return self.latent != "bernoulli"

    @property
    def closed_form_kl(self) -> bool:
        """Whether KL(q || p) has a closed form at every layer (not with a flow guide or a mixture
        prior)."""
        return self.guide == "gaussian" and self.prior == "gaussian"  # not a flow, mixture or plugin

    @property
    def is_default(self) -> bool:
        """Whether this is pyrovae's VAE: one Gaussian latent layer, Gaussian guide, N(0, I) prior."""
        return len(self.latents) <= 1 and (self.latent, self.guide, self.prior) == ("gaussian",) * 3


def plugin_origins(cfg: Family) -> dict[str, Origin | None]:
    """The origins of a plugin guide and prior (None where the family's own is used)."""
    return {"guide": origin_of(GUIDE_PLUGINS, cfg.guide, GUIDES), "prior": origin_of(PRIOR_PLUGINS, cfg.prior, PRIORS)}


def check_family(cfg: Family, architecture: str = "mlp", z_dim: int = 50) -> None:
    """The family's own checks: names, sizes, combinations (without the estimator)."""
    if cfg.latent not in LATENTS:
        raise ConfigError(f"unknown latent {cfg.latent!r}; valid: {', '.join(LATENTS)}")
    for key, registry, valid in (("guide", GUIDE_PLUGINS, GUIDES), ("prior", PRIOR_PLUGINS, PRIORS)):
        value = getattr(cfg, key)
        if is_plugin(registry, value, valid):
            registry.get(value)  # one line if it does not import or is not a guide or prior network
        elif value not in valid:
            raise ConfigError(f"unknown {key} {value!r}; valid: {valid_words(registry, valid)}")
    if any(d < 1 for d in cfg.latents):
        raise ConfigError(f"latents sizes must be >= 1, got {list(cfg.latents)}")
    bottom = cfg.latents[0] if cfg.latents else z_dim
    if cfg.flow_layers < 1 or not cfg.flow_hidden or any(h < 1 for h in cfg.flow_hidden):
        raise ConfigError(
            f"flow_layers must be >= 1 and flow_hidden a non-empty list of sizes >= 1, got "
            f"{cfg.flow_layers} and {list(cfg.flow_hidden)}"
        )
    if cfg.guide in FLOWS and any(h < bottom for h in cfg.flow_hidden):
        raise ConfigError(
            f"flow_hidden sizes (each flow step's MADE widths) must be >= the flowed layer's size "
            f"({bottom}), got {list(cfg.flow_hidden)}"
        )
    if cfg.prior_components < 1:
        raise ConfigError(f"prior_components must be >= 1, got {cfg.prior_components}")
    if cfg.is_default:
        return
    if architecture != "mlp":
        raise ConfigError(
            f"latents/latent/guide/prior other than one gaussian layer use the mlp architecture, "
            f"got architecture {architecture!r}"
        )
    if cfg.latent == "bernoulli":
        if cfg.guide != "gaussian" or cfg.prior != "gaussian":
            raise ConfigError(
                f"bernoulli latents take guide 'gaussian' and prior 'gaussian' (their Bernoulli "
                f"counterparts), got guide {cfg.guide!r}, prior {cfg.prior!r}: flows and mixture "
                "priors need continuous latents"
            )
    if cfg.prior in MIXTURES and len(cfg.latents) > 1:
        raise ConfigError(
            f"prior {cfg.prior!r} is one layer's prior; use latents of one size (or z_dim), "
            f"got latents {list(cfg.latents)}"
        )
    plugins = [k for k in ("guide", "prior") if getattr(cfg, k) not in {"guide": GUIDES, "prior": PRIORS}[k]]
    if plugins and len(cfg.latents) > 1:
        raise ConfigError(
            f"a plugin {' and '.join(plugins)} is one layer's; use latents of one size (or z_dim), got latents "
            f"{list(cfg.latents)}"
        )
    if cfg.prior == "vamp" and cfg.guide != "gaussian":
        raise ConfigError(
            f"prior 'vamp' with guide {cfg.guide!r}: the VampPrior is a mixture of the guide's "
            "gaussian; valid with vamp: guide 'gaussian'"
        )


def build(
    family: Family, x_dim: int, z_dim: int, likelihood: Likelihood, hidden: Sequence[int], activation: str, name: str
) -> tuple[VAEModel | HierarchicalModel, VAEGuide | FlowGuide | HierarchicalGuide | PluginGuide]:
    """The (model, guide) pair of ``family``; parameter names start with ``name``."""
    check_family(family, "mlp", z_dim)
    model_name, guide_name = f"{name}.model", f"{name}.guide"
    flow: _FlowOptions = {"flow": family.guide, "flow_layers": family.flow_layers, "flow_hidden": family.flow_hidden}
    model: VAEModel | HierarchicalModel
    guide: VAEGuide | FlowGuide | HierarchicalGuide | PluginGuide
    if len(family.latents) > 1 or family.latent != "gaussian":
        latents = family.latents or (z_dim,)
        model = HierarchicalModel(x_dim, latents, likelihood, hidden, activation, family.latent, name=model_name)
        guide = HierarchicalGuide(
            x_dim, latents, hidden, activation, family.latent, likelihood.input_scale, name=guide_name
        )
        if family.guide in FLOWS:  # q(z_1 | x) a flow; the layers above stay Gaussian
            guide.layers[0] = FlowLayer(
                FlowGuide(x_dim, latents[0], hidden, activation, **flow, name=f"{guide_name}.flow")
            )
        return model, guide
    d = family.latents[0] if family.latents else z_dim
    shapes = Shapes(x_dim, d, likelihood.num_params, tuple(hidden), activation, None, likelihood.input_scale)
    if family.guide not in GUIDES:
        guide = PluginGuide(make_guide(family.guide, shapes), guide_name)
    elif family.guide in FLOWS:
        guide = FlowGuide(x_dim, d, hidden, activation, likelihood.input_scale, **flow, name=guide_name)
    else:
        guide = VAEGuide(MLPEncoder(x_dim, d, hidden, activation, input_scale=likelihood.input_scale), guide_name)
    decoder = MLPDecoder(d, likelihood.num_params * x_dim, hidden, activation)
    if family.prior == "vamp":
        model = VampPriorModel(
            decoder, likelihood, d, model_name, guide=guide, x_dim=x_dim, num_components=family.prior_components
        )
    elif family.prior not in PRIORS:
        model = PluginPriorModel(decoder, likelihood, d, model_name, make_prior(family.prior, shapes))
    elif family.prior == "mog":
        model = MixturePriorModel(decoder, likelihood, d, model_name, num_components=family.prior_components)
    else:
        model = VAEModel(decoder, likelihood, d, model_name)
    return model, guide
