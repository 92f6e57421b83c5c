"""The speed tricks of genai.kernels equal the functions they replace, in value and gradient."""

import pytest
import torch
import torch.nn.functional as F

from genai.kernels import softplus


def test_softplus_gradient_is_the_sigmoid_and_runs_in_fp32_under_autocast():
    v = torch.linspace(-120, 120, 2001, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(softplus, (v[::100].detach().clone().requires_grad_(),))
    (d,) = torch.autograd.grad(softplus(v).sum(), v)
    torch.testing.assert_close(d, torch.sigmoid(v.detach()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert softplus(torch.ones(3, dtype=torch.bfloat16)).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_softplus_equals_torch_softplus_in_value_and_gradient(dtype):
    """fp32 inputs, and the bf16 inputs autocast gives the VAE's likelihoods (computed in fp32)."""
    noise = torch.randn(4000, generator=torch.Generator().manual_seed(0)) * 5
    v = torch.cat([torch.linspace(-100, 100, 4001), noise]).to(dtype).requires_grad_()
    ours = softplus(v)
    ref = F.softplus(v.float())
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=2e-7, atol=2e-7)
    grad = torch.randn(v.shape, generator=torch.Generator().manual_seed(1))
    (d_ours,) = torch.autograd.grad(ours, v, grad, retain_graph=True)
    (d_ref,) = torch.autograd.grad(ref, v, grad)
    assert d_ours.dtype == dtype
    torch.testing.assert_close(d_ours, d_ref)
