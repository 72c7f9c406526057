"""Model families beyond one Gaussian latent: the latent layers, the guide and the prior of a run.

Each is declared by config keys and is one file here: ``gaussian.py`` (the one-Gaussian-latent
VAE's model and guide, which the others build on), ``hierarchical.py`` (stochastic layers
``latents = [100, 50]``, Gaussian or Bernoulli units), ``flows.py`` (flow guides: ``guide = "iaf"``
or ``"spline"``), ``vamp.py`` and ``mixture.py`` (learned priors: ``prior = "vamp"`` or
``"mog"``; their p(z) is ``gaussian_mixture.py``, a mixture of diagonal Gaussians whose log
density is a matrix product), ``plugin.py`` (a guide or prior from a plugin:
``guide = "my_module:MyGuide"``); ``family.py`` holds the keys (:class:`Family`), refuses a
combination that cannot work and builds the pair. Every family is a plain Pyro model/guide pair,
so every estimator that applies runs on it (traced, or on the fast path where the family provides
one).
"""

from .family import FAMILIES, FLOWS, GUIDES, LATENTS, MIXTURES, PRIORS, Family, build, check_family, plugin_origins
from .flows import FlowGuide, FlowLayer
from .gaussian import VAEGuide, VAEModel, check_device
from .gaussian_mixture import DiagonalGaussianMixture
from .hierarchical import HierarchicalGuide, HierarchicalModel
from .mixture import MixturePriorModel
from .plugin import GUIDES as GUIDE_PLUGINS
from .plugin import PRIORS as PRIOR_PLUGINS
from .plugin import GuideNetwork, PluginGuide, PluginPriorModel, PriorNetwork
from .vamp import VampPriorModel

__all__ = [
    "FAMILIES",
    "DiagonalGaussianMixture",
    "FLOWS",
    "GUIDES",
    "GUIDE_PLUGINS",
    "LATENTS",
    "MIXTURES",
    "PRIORS",
    "PRIOR_PLUGINS",
    "Family",
    "FlowGuide",
    "FlowLayer",
    "GuideNetwork",
    "HierarchicalGuide",
    "HierarchicalModel",
    "MixturePriorModel",
    "PluginGuide",
    "PluginPriorModel",
    "PriorNetwork",
    "VAEGuide",
    "VAEModel",
    "VampPriorModel",
    "build",
    "check_device",
    "check_family",
    "plugin_origins",
]
