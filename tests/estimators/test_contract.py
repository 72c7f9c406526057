"""One contract over every registered estimator: the pyro.infer.ELBO interface, honestly."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from models import DTYPE, linear_gaussian

from pyrovae import ModelStructureError, estimators

NAMES = estimators.names()


@pytest.mark.parametrize("name", NAMES)
def test_is_a_pyro_elbo_with_a_float_loss(name, lg):
    est = estimators.make(name, num_particles=3)
    assert isinstance(est, pyro.infer.ELBO)
    model, guide = lg(perturb=0.3)
    x = model.sample(6)
    loss = est.loss(model, guide, x)
    assert isinstance(loss, float)
    dl = est.differentiable_loss(model, guide, x)
    assert dl.shape == () and dl.requires_grad


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_differentiable_loss_share_the_value(name, lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(6)
    est = estimators.make(name, num_particles=4)
    torch.manual_seed(11)
    a = est.loss(model, guide, x, num_data=30)
    torch.manual_seed(11)
    b = est.differentiable_loss(model, guide, x, num_data=30).item()
    assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_mini_batch_scale_multiplies_the_summed_bound(name, lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(4)
    est = estimators.make(name, num_particles=5)
    torch.manual_seed(2)
    full = est.loss(model, guide, x)
    torch.manual_seed(2)
    scaled = est.loss(model, guide, x, num_data=37)
    assert scaled == pytest.approx(37 / 4 * full, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_particles_are_one_vectorized_pass(name):
    model, guide = linear_gaussian(perturb=0.3)
    calls = {"model": 0, "guide": 0}

    def counted(fn, key):
        def run(*a, **k):
            calls[key] += 1
            return fn(*a, **k)

        return run

    est = estimators.make(name, num_particles=50, max_plate_nesting=1)
    est.differentiable_loss(counted(model, "model"), counted(guide, "guide"), model.sample(3))
    # one pass each, whatever K; STL and DReG may replay the guide once, PIWAE and SUMO's variance
    # objective the model once (at stopped particles)
    # GDReG re-evaluates both at leaf copies of the latents (one more pass of each)
    assert calls["model"] <= (2 if name in ("piwae", "sumo", "gdreg") else 1)
    assert calls["guide"] <= (3 if name == "gdreg" else 2)


@pytest.mark.parametrize("name", NAMES)
def test_svi_with_the_global_param_store(name):
    """A plain-function model and guide with pyro.param, as in Pyro's tutorials."""
    model_nn, _ = linear_gaussian()
    x = model_nn.sample(20)

    def model(x):
        W, b = model_nn.W.detach(), model_nn.b.detach()
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(torch.zeros(2, dtype=DTYPE), 1.0).expand([x.shape[0], 2])
            z = pyro.sample("z", prior.to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + b, model_nn.s).to_event(1), obs=x)

    def guide(x):
        A = pyro.param("A", torch.zeros(2, 3, dtype=DTYPE))
        sd = pyro.param("sd", torch.ones(2, dtype=DTYPE), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x @ A.T, sd).to_event(1))

    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss=estimators.make(name, num_particles=4))
    losses = [svi.step(x) for _ in range(150)]
    assert all(isinstance(v, float) for v in losses)
    assert sum(losses[-10:]) < sum(losses[:10])


@pytest.mark.parametrize("name", NAMES)
def test_module_local_idiom_with_a_torch_optimizer(name, lg):
    model, guide = lg(perturb=0.5)
    x = model.sample(20)
    with pyro.settings.context(module_local_params=True):
        loss_fn = estimators.make(name, num_particles=4)(model, guide)
        params = list(loss_fn.parameters())
        assert len(params) == 5  # W, b, A, c, log_sd
        opt = torch.optim.Adam(params, lr=0.02)
        start = loss_fn(x).item()
        for _ in range(100):
            opt.zero_grad()
            loss_fn(x).backward()
            opt.step()
        assert loss_fn(x).item() < start


def _outside_plate(x):
    pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)


def _guide_outside(x):
    pyro.sample("z", dist.Normal(0.0, 1.0))


def _model_z(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)


def _model_zw(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("w", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)


def _guide_z(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(0.0, 1.0))


def _guide_zv(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("v", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "model, guide, message",
    [
        (_outside_plate, _guide_outside, "not inside a plate at dim=-1"),
        (_model_zw, _guide_z, "the model samples 'w' but the guide does not"),
        (_model_z, _guide_zv, "the guide samples 'v' which the model does not"),
    ],
)
def test_structures_an_estimator_cannot_handle_fail_clearly(name, model, guide, message):
    est = estimators.make(name, num_particles=2, max_plate_nesting=1)
    with pytest.raises(ModelStructureError, match=message):
        est.loss(model, guide, torch.zeros(3))


def test_observed_guide_sites_are_conditioning_not_latents():
    """A guide site given data adds nothing to log q (Pyro's Trace_ELBO subtracts it)."""
    model, guide = linear_gaussian()
    x = model.sample(3)

    def guide_with_observed(x, num_data=None):
        guide(x, num_data)
        with pyro.plate("aux_data", x.shape[0], dim=-1):
            pyro.sample("aux", dist.Normal(torch.zeros(3, dtype=DTYPE), 1.0), obs=x[:, 0])

    loss = estimators.make("iwae", num_particles=3).loss(model, guide_with_observed, x)
    assert loss == pytest.approx(-model.log_px(x).sum().item(), abs=1e-9)


def test_unknown_names_and_options_list_the_valid_ones():
    from pyrovae import ConfigError

    with pytest.raises(ConfigError, match="unknown estimator 'iwea'; valid estimators: .*iwae"):
        estimators.make("iwea")
    with pytest.raises(ConfigError, match="has no option 'num_particle'; valid options: num_particles"):
        estimators.make("iwae", num_particle=3)
    with pytest.raises(ConfigError, match="num_particles must be an integer >= 1"):
        estimators.make("iwae", num_particles=0)


# -- score-function terms for guide sites that cannot be reparameterized ------------------------
X_MIX = torch.tensor([0.3, -1.2, 2.0])


def _mix_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(0.3))
        pyro.sample("x", dist.Normal(2 * z - 1, 1.0), obs=x)


def _mix_guide(logit):
    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=logit.expand(x.shape[0])))

    return guide


def _log_joint(x, z):
    return dist.Bernoulli(0.3).log_prob(z) + dist.Normal(2 * z - 1, 1.0).log_prob(x)


def _exact_bound(name, logit, x):
    """The bound by enumeration over z (K = 2 for IWAE), differentiable in the logit."""
    q = dist.Bernoulli(logits=logit)
    zs = torch.tensor([0.0, 1.0])
    lw = torch.stack([_log_joint(x, z) - q.log_prob(z) for z in zs])  # [2, B]
    pz = torch.stack([q.log_prob(z).exp() for z in zs])  # [2, 1]
    if name == "elbo":
        return (pz * lw).sum(0).sum()
    total = 0.0
    for i in range(2):
        for j in range(2):
            total = total + pz[i] * pz[j] * (torch.logaddexp(lw[i], lw[j]) - torch.log(torch.tensor(2.0)))
    return total.sum()


@pytest.mark.parametrize("name, k", [("elbo", 1), ("iwae", 2)])
def test_score_function_gradient_is_unbiased_for_discrete_guide_sites(name, k):
    logit = torch.tensor([0.4], requires_grad=True)
    exact = torch.autograd.grad(_exact_bound(name, logit, X_MIX), logit)[0]
    reps = 300000  # score-function gradients are noisy: many draws for a tight check
    x = X_MIX.repeat(reps)  # reps independent copies of the 3 points, as one batch
    loss = estimators.make(name, num_particles=k, max_plate_nesting=1).differentiable_loss(
        _mix_model, _mix_guide(logit), x
    )
    (g,) = torch.autograd.grad(-loss / reps, logit)
    assert g.item() == pytest.approx(exact.item(), abs=0.04)
