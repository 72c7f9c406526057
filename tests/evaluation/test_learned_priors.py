"""The log-likelihood of the learned-prior families (VampPrior, mixture of Gaussians): the fast
evaluation (the prior's matrix-product density, the pseudo-inputs encoded once per call) gives the
number of the plain computation, and never serves stale pseudo-inputs to training."""

import math

import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae import estimators
from pyrovae.families.vamp import VampPriorModel

from ..families.test_priors import binary, mixture, vamp

NUM_SAMPLES, CHUNK = 40, 7  # six chunks, the last one short


def plain_prior(model):
    """p(z) the generic way: Pyro's MixtureSameFamily over the components, batch [], event [z_dim]."""
    if isinstance(model, VampPriorModel):
        components = model.guide.distribution(model.inputs())  # batch [C], event [z_dim]
        logits = model.pseudo_inputs.new_zeros(components.batch_shape)
    else:
        components = dist.Normal(model.locs, model.log_scales.exp()).to_event(1)
        logits = model.logits
    return dist.MixtureSameFamily(dist.Categorical(logits=logits), components)


def plain_log_likelihood(model, guide, x, seed):
    """log (1/K) sum_k p(x, z_k) / q(z_k | x), written out with the same draws as the estimate."""
    torch.manual_seed(seed)
    log_w = []
    with torch.no_grad():
        for start in range(0, NUM_SAMPLES, CHUNK):
            q = guide.distribution(x)
            z = q.rsample((min(CHUNK, NUM_SAMPLES - start),))  # [k, B, z_dim]
            log_lik = model.likelihood(model.decoder(z)).log_prob(x)
            log_w.append(log_lik + plain_prior(model).log_prob(z) - q.log_prob(z))  # [k, B]
    return torch.logsumexp(torch.cat(log_w), 0) - math.log(NUM_SAMPLES)


def estimate(model, guide, x, seed):
    torch.manual_seed(seed)
    return pyrovae.log_likelihood(model, guide, x, num_samples=NUM_SAMPLES, chunk_size=CHUNK)


@pytest.mark.parametrize("make", [vamp, mixture], ids=["vamp", "mog"])
def test_the_estimate_is_the_plain_computations(make):
    model, guide = make()
    x = binary(5)
    fast = estimate(model, guide, x, seed=11)
    assert fast.dtype == torch.float64 and fast.shape == (5,)
    assert torch.allclose(fast, plain_log_likelihood(model, guide, x, seed=11), rtol=0, atol=1e-10)
    torch.manual_seed(11)  # the traced path (a wrapped model: no fast path, no fixed_parameters)
    traced = pyrovae.log_likelihood(lambda *a, **k: model(*a, **k), guide, x, num_samples=NUM_SAMPLES, chunk_size=CHUNK)
    assert torch.allclose(fast, traced, rtol=0, atol=1e-10)


def count_encodings(guide, rows):
    """A list that gets one entry each time the guide's encoder sees ``rows`` inputs."""
    calls = []
    guide.encoder.register_forward_hook(lambda m, args, out: calls.append(1) if args[0].shape[0] == rows else None)
    return calls


def test_pseudo_inputs_are_encoded_once_per_evaluation():
    model, guide = vamp(num_components=4)
    calls = count_encodings(guide, rows=4)
    estimate(model, guide, binary(5), seed=0)  # six chunks
    assert len(calls) == 1
    assert model.held is None  # nothing held after the evaluation
    estimate(model, guide, binary(5), seed=0)
    assert len(calls) == 2  # a new evaluation encodes again


def test_a_whole_evaluation_encodes_them_once_over_its_batches():
    """evaluate_model (what `pyrovae evaluate` and a comparison cell run): one encoding of the
    pseudo-inputs for all batches and all its measures (ELBO, IWAE bound, IS log p(x))."""
    model, guide = vamp(num_components=4)
    calls = count_encodings(guide, rows=4)
    batches = [binary(5), binary(5), binary(5)]
    pyrovae.evaluation.evaluate_model(model, guide, batches, num_particles=3, num_samples=20, chunk_size=7,
                                      elbo_particles=5)  # fmt: skip
    assert len(calls) == 1 and model.held is None


def test_gradients_inside_the_scope_go_through_fresh_encodings():
    model, guide = vamp(num_components=4)
    z = torch.randn(3, 5, 3, dtype=torch.float64)
    with model.fixed_parameters():
        with torch.no_grad():
            held = model.prior(5).log_prob(z)
        value = model.prior(5).log_prob(z)
        (grad,) = torch.autograd.grad(value.sum(), [model.pseudo_inputs])
    assert torch.equal(held, value.detach()) and (grad != 0).any()


def test_training_after_an_evaluation_moves_the_pseudo_inputs_and_the_next_evaluation_sees_them():
    model, guide = vamp(num_components=4)
    x = binary(8)
    before = estimate(model, guide, x, seed=2)
    start = model.pseudo_inputs.detach().clone()
    params = list(torch.nn.ModuleList([model, guide]).parameters())
    opt = torch.optim.Adam(params, lr=0.05)
    iwae = estimators.make("iwae", num_particles=4)
    for _ in range(3):
        opt.zero_grad()
        iwae.differentiable_loss(model, guide, x).backward()
        assert model.pseudo_inputs.grad is not None and (model.pseudo_inputs.grad != 0).any()
        opt.step()
    assert not torch.equal(model.pseudo_inputs, start)
    after = estimate(model, guide, x, seed=2)
    assert not torch.allclose(after, before)
    assert torch.allclose(after, plain_log_likelihood(model, guide, x, seed=2), rtol=0, atol=1e-10)
