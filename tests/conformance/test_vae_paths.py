"""pyrovae's VAE on the fast path and traced: the same numbers for the same noise, exact at the
posterior, for generated sizes, data-plate forms and dtypes (a linear-Gaussian VAE, whose exact
log p(x) and posterior are known)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from models import linear_gaussian_vae, takes_fast_path

from .cases import CASES, grad_list, make, tolerance


@given(
    d=st.integers(1, 3), extra=st.integers(0, 3), batch=st.integers(1, 5), num_data=st.sampled_from([None, 7, 40]),
    dtype=st.sampled_from([torch.float64, torch.float32]), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_fast_and_traced_paths_agree_and_are_exact_at_the_posterior(d, extra, batch, num_data, dtype, seed):
    model, guide = linear_gaussian_vae(perturb=0.0, d=d, D=d + extra, seed=seed)
    x = model.sample(batch, seed=seed + 1)
    kwargs = {} if num_data is None or num_data < batch else {"num_data": num_data}
    scale = kwargs.get("num_data", batch) / batch
    exact = model.log_px(x).sum().item() * scale
    model, guide, x = model.to(dtype), guide.to(dtype), x.to(dtype)
    params = list(model.parameters()) + list(guide.parameters())
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    for case in CASES:
        fast, traced = make(case, 3, fast_path=True), make(case, 3, fast_path=False)
        assert takes_fast_path(fast, model, guide, (x,), kwargs)
        out = []
        for est in (fast, traced):
            torch.manual_seed(seed)
            loss = est.differentiable_loss(model, guide, x, **kwargs)
            out.append((loss.item(), grad_list(loss, params)))
        (lf, gf), (lt, gt) = out
        assert lf == pytest.approx(lt, rel=rtol, abs=rtol), case
        for a, b in zip(gf, gt, strict=True):
            assert torch.allclose(a, b, rtol=rtol * 10, atol=rtol * 10 * (1 + b.abs().max().item())), case
        if case != "analytic_elbo":
            assert lf == pytest.approx(-exact, abs=tolerance(dtype, abs(exact))), case
