"""The operators are registered with the dispatcher: meta (fake) shapes, torch.compile, build info."""

from __future__ import annotations

import pytest
import torch

import jeancore
import jeancore.ops as ops
from jeancore import _C
from jeancore.ops.reference import composite_reference

OP_NAMES = ["sample_along_rays", "sample_pdf", "composite_forward", "composite_backward", "dtw", "dtw_local_cost",
            "composite_packed_forward", "composite_packed_backward", "hash_encode",
            "hash_encode_backward", "march_rays"]


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


def test_meta_shapes_of_the_radiance_field_ops():
    m = dict(device="meta")
    offsets, res = torch.tensor([0, 27, 91]), torch.tensor([2, 9])
    out = torch.ops.jeancore.hash_encode(torch.empty(10, 3, **m), torch.empty(91, 2, **m), offsets, res)
    assert out.shape == (10, 4) and out.device.type == "meta"
    g = torch.ops.jeancore.hash_encode_backward(torch.empty(10, 4, **m), torch.empty(10, 3, **m),
                                                torch.empty(91, 2, **m), offsets, res)
    assert g.shape == (91, 2)
    color, opacity, depth, weights, offs = torch.ops.jeancore.composite_packed_forward(
        torch.empty(12, **m), torch.empty(12, 3, **m), torch.empty(12, **m), torch.empty(12, **m),
        torch.empty(12, dtype=torch.int64, **m), 5, None, 0.0)
    assert (color.shape, opacity.shape, depth.shape, weights.shape, offs.shape) == \
        ((5, 3), (5,), (5,), (12,), (6,))
    assert offs.dtype == torch.int64
    # march_rays has a data-dependent number of samples: an unbacked size under fake tensors
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    with FakeTensorMode(shape_env=ShapeEnv()):
        ri, ts, te = torch.ops.jeancore.march_rays(
            torch.empty(7, 3), torch.empty(7, 3), torch.empty(7), torch.empty(7),
            torch.empty(4, 4, 4, dtype=torch.bool), [0.0, 0.0, 0.0, 1.0, 1.0, 1.0], 0.1, None)
    assert ri.dtype == torch.int64 and ts.shape == te.shape == ri.shape
    assert isinstance(ri.shape[0], torch.SymInt)


def test_torch_compile_traces_the_packed_pipeline():
    """Hash encoding -> density and colour -> packed compositing under torch.compile
    (aot_eager) matches eager, values and gradients (the samples come from march_rays outside
    the compiled region, as in a training step)."""
    torch._dynamo.reset()
    grid = ops.HashGrid(3, n_levels=4, log2_table_size=8, base_resolution=2, max_resolution=16)
    g = torch.Generator().manual_seed(0)
    rays_o = torch.rand(32, 3, generator=g) * 0.2 + 0.4
    rays_d = torch.nn.functional.normalize(torch.randn(32, 3, generator=g), dim=-1)
    ri, ts, te = ops.march_rays(rays_o, rays_d, 0.0, 1.0, torch.ones(8, 8, 8, dtype=torch.bool),
                                (0, 0, 0, 1, 1, 1), 0.05)
    w = torch.randn(grid.output_dim, 4, generator=g)

    def render(emb):
        pts = rays_o[ri] + rays_d[ri] * ((ts + te) / 2)[:, None]
        h = ops.hash_encode(pts, emb, grid.offsets, grid.resolutions) @ w
        return ops.composite_packed(h[:, 0].exp(), torch.sigmoid(h[:, 1:]), ts, te, ri, 32)[0]

    compiled = torch.compile(render, backend="aot_eager")
    e1 = grid.embeddings.detach().clone().normal_().requires_grad_()
    e2 = e1.detach().clone().requires_grad_()
    out_c, out_e = compiled(e1), render(e2)
    torch.testing.assert_close(out_c, out_e)
    (g1,), (g2,) = torch.autograd.grad(out_c.sum(), [e1]), torch.autograd.grad(out_e.sum(), [e2])
    torch.testing.assert_close(g1, g2)


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
