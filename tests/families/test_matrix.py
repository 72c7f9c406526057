"""Every family x every estimator configuration (tests/conformance/cases.py), float64.

Where the config check allows the pair: the loss is finite, every parameter gets a finite gradient
and both the decoder and the guide a nonzero one, the reported ``loss`` is the negated bound summed
and scaled by N / B for the same noise (and ``differentiable_loss`` has that value), and on the
fast path the traced path gives the same loss and gradients. Where it refuses the pair, the
refusal is one ConfigError line from ``pyrovae.run.check_config`` naming what does work, and the estimator
itself, called directly, refuses what it cannot compute.
"""

import pytest
import torch
from models import takes_fast_path

from pyrovae import VAE, config, estimators
from pyrovae.errors import ConfigError, ModelStructureError
from pyrovae.run import check_config

from ..conformance.cases import CASES, make
from .test_config import SETTINGS, family_keys

X_DIM, BATCH, NUM_DATA, K = 12, 5, 40, 3
SIZES = {"z_dim": 4, "hidden": [8], "flow_hidden": [16], "prior_components": 3}  # flow_hidden >= latents[0]
# estimators that take score functions: what bernoulli latents train with
SCORE_FUNCTION = {"elbo", "elbo[kl_weight]", "iwae", "rws", "rws[sleep]", "tvo", "vargrad", "vimco"}
CONTINUOUS_ONLY = {"guide": ("iaf", "spline"), "prior": ("vamp", "mog")}  # no closed-form KL


def refusal(setting: str, case: str) -> str | None:
    """The piece of the one line that refuses this pair, or None where it is allowed."""
    keys = family_keys(setting)
    if keys.get("latent") == "bernoulli" and case not in SCORE_FUNCTION:
        return "valid with latent 'bernoulli': elbo, iwae, rws, tvo, vargrad, vimco"
    if CASES[case][0] == "analytic_elbo" and any(keys.get(k) in v for k, v in CONTINUOUS_ONLY.items()):
        return "needs a closed-form KL"
    return None


PAIRS = [(s, c) for s in sorted(SETTINGS) for c in sorted(CASES)]
ALLOWED = [p for p in PAIRS if refusal(*p) is None]
REFUSED = [p for p in PAIRS if refusal(*p) is not None]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cfg_of(setting: str, case: str) -> config.Config:
    name, options = CASES[case]
    return config.from_dict({**SIZES, **family_keys(setting), "estimator": name,
                             "num_particles": make(case, K).num_particles, "estimator_options": options})  # fmt: skip


def vae_and_data(setting: str, seed: int = 0):
    torch.manual_seed(seed)
    vae = VAE(x_dim=X_DIM, **{**SIZES, **family_keys(setting)}).double()
    g = torch.Generator().manual_seed(seed + 1)
    return vae, torch.bernoulli(torch.full((BATCH, X_DIM), 0.4, dtype=torch.float64), generator=g)


def step(est, vae, x, seed: int = 3):
    torch.manual_seed(seed)
    loss = est.differentiable_loss(vae.model, vae.guide, x, num_data=NUM_DATA)
    return loss, torch.autograd.grad(loss, list(vae.parameters()), allow_unused=True)


@pytest.mark.parametrize(("setting", "case"), ALLOWED)
def test_cell(setting, case):
    check_config(cfg_of(setting, case))
    vae, x = vae_and_data(setting)
    est = make(case, K)
    assert takes_fast_path(est, vae.model, vae.guide, (x,), {"num_data": NUM_DATA})  # every family is untraced

    loss, grads = step(est, vae, x)
    assert torch.isfinite(loss)
    names = [n for n, _ in vae.named_parameters()]
    for name, g in zip(names, grads, strict=True):
        assert g is not None, f"{name} gets no gradient"
        assert torch.isfinite(g).all(), f"{name} gets a non-finite gradient"
    guide_ids = {id(p) for p in vae.guide.parameters()}
    reached = dict(zip(map(id, vae.parameters()), grads, strict=True))
    decoder = [reached[id(p)] for p in vae.model.parameters() if id(p) not in guide_ids]
    guide = [reached[id(p)] for p in vae.guide.parameters()]
    assert decoder and any(g.abs().sum() > 0 for g in decoder), "the model's parameters get no gradient"
    assert guide and any(g.abs().sum() > 0 for g in guide), "the guide's parameters get no gradient"

    # the reported loss is the negated bound, summed and scaled by N / B, for the same noise
    torch.manual_seed(3)
    reported = est.loss(vae.model, vae.guide, x, num_data=NUM_DATA)
    torch.manual_seed(3)
    bound = est.bound(vae.model, vae.guide, x)
    assert bound.shape == (BATCH,) and torch.isfinite(bound).all()
    assert reported == pytest.approx(-bound.sum().item() * NUM_DATA / BATCH, rel=1e-12)
    assert loss.item() == pytest.approx(reported, rel=1e-12)

    if True:  # the same noise through Pyro's tracing gives the same numbers
        t_loss, t_grads = step(make(case, K, fast_path=False), vae, x)
        assert loss.item() == pytest.approx(t_loss.item(), rel=1e-9)
        for name, a, b in zip(names, grads, t_grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize(("setting", "case"), REFUSED)
def test_refused_cell(setting, case):
    with pytest.raises(ConfigError) as e:
        check_config(cfg_of(setting, case))
    assert "\n" not in str(e.value) and refusal(setting, case) in str(e.value), str(e.value)
    if family_keys(setting).get("latent") == "bernoulli":  # called directly: no reparameterized latents
        vae, x = vae_and_data(setting)
        with pytest.raises(ModelStructureError, match="needs reparameterized guide sites"):
            step(make(case, K), vae, x)


def test_every_estimator_is_in_the_matrix():
    assert {name for name, _ in CASES.values()} == set(estimators.names())
    assert {c for _, c in ALLOWED} == set(CASES)  # each estimator runs on some family
