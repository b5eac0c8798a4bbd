"""The operators are registered with the dispatcher: meta (fake) shapes, torch.compile, build info."""

from __future__ import annotations

import pytest
import torch

import jeancore
import jeancore.ops as ops
from jeancore import _C
from jeancore.ops.reference import composite_reference

OP_NAMES = ["sample_along_rays", "sample_pdf", "composite_forward", "composite_backward", "dtw"]


def test_build_info():
    assert _C.__version__ == jeancore.__version__
    assert isinstance(_C.with_cuda(), bool)
    for name in OP_NAMES:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"jeancore::{name}", "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"jeancore::{name}", "CUDA") == _C.with_cuda()


def test_meta_shapes():
    m = dict(device="meta")
    t, pts = torch.ops.jeancore.sample_along_rays(torch.empty(5, 3, **m), torch.empty(5, 3, **m),
                                                  torch.empty(5, **m), torch.empty(5, **m), 7, None)
    assert t.shape == (5, 7) and pts.shape == (5, 7, 3) and t.device.type == "meta"
    out = torch.ops.jeancore.sample_pdf(torch.empty(4, 9, **m), torch.empty(4, 8, **m),
                                        torch.empty(16, **m))
    assert out.shape == (4, 16)
    color, depth, opacity, weights = torch.ops.jeancore.composite_forward(
        torch.empty(3, 6, **m), torch.empty(3, 6, 3, **m), torch.empty(3, 6, **m),
        torch.empty(3, 3, **m), torch.empty(3, 3, **m), True)
    assert (color.shape, depth.shape, opacity.shape, weights.shape) == ((3, 3), (3,), (3,), (3, 6))
    dist, path, length = torch.ops.jeancore.dtw(
        torch.empty(100, **m), torch.zeros(2, dtype=torch.int64, **m),
        torch.zeros(2, dtype=torch.int64, **m), torch.zeros(2, dtype=torch.int64, **m),
        torch.zeros(2, dtype=torch.int64, **m), 0, -1, 19)
    assert dist.shape == (2,) and path.shape == (2, 19, 2) and length.shape == (2,)


def test_torch_compile_traces_the_ops():
    """A NeRF-style render step compiled with torch.compile (aot_eager: traces through the fake
    implementations and autograd) matches eager, values and gradients."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    rays_o, rays_d = torch.randn(64, 3, generator=g), torch.randn(64, 3, generator=g)
    bg = torch.rand(3, generator=g)
    w_net = torch.randn(3, 4, generator=g)

    def render(w_net):
        t, pts = ops.sample_along_rays(rays_o, rays_d, 2.0, 6.0, 32)
        raw = pts @ w_net
        sigma, rgb = torch.relu(raw[..., 0]), torch.sigmoid(raw[..., 1:])
        return ops.composite(sigma, rgb, t, rays_d, bg)[0]

    compiled = torch.compile(render, backend="aot_eager")
    w1 = w_net.clone().requires_grad_()
    w2 = w_net.clone().requires_grad_()
    out_c, out_e = compiled(w1), render(w2)
    torch.testing.assert_close(out_c, out_e)
    (g1,), (g2,) = torch.autograd.grad(out_c.sum(), [w1]), torch.autograd.grad(out_e.sum(), [w2])
    torch.testing.assert_close(g1, g2)


def test_ops_reachable_directly_and_differentiable_wrapper():
    """torch.ops.jeancore.composite_forward is the same computation the wrapper runs."""
    g = torch.Generator().manual_seed(1)
    sigma = torch.rand(8, 5, generator=g)
    rgb = torch.rand(8, 5, 3, generator=g)
    t = torch.sort(torch.rand(8, 5, generator=g), -1).values
    d = torch.randn(8, 3, generator=g)
    bg = torch.rand(8, 3, generator=g)
    raw = torch.ops.jeancore.composite_forward(sigma, rgb, t, d, bg, True)
    for a, b in zip(raw, composite_reference(sigma, rgb, t, d, bg)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="contiguous"):
        torch.ops.jeancore.composite_forward(sigma.t().contiguous().t(), rgb, t, d, bg, True)
