"""composite(): fused forward/backward against the pure-torch reference (AD-NeRF raw2outputs)."""

from __future__ import annotations

import pytest
import torch

import jeancore.ops as ops
from jeancore.ops.reference import composite_reference

from conftest import requires_cuda

MODES = [True, False]  # last_sample_is_background


def make_rays(n, s, *, dtype=torch.float64, device="cpu", seed=0, sigma_scale=3.0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    sigma = (torch.randn(n, s, generator=g, dtype=dtype) * sigma_scale).relu_()
    rgb = torch.rand(n, s, 3, generator=g, dtype=dtype)
    t = torch.sort(torch.rand(n, s, generator=g, dtype=dtype) * 4 + 2, dim=-1).values
    rays_d = torch.randn(n, 3, generator=g, dtype=dtype)
    bg = torch.rand(n, 3, generator=g, dtype=dtype)
    return [x.to(device) for x in (sigma, rgb, t, rays_d, bg)]


def run_both(inputs, last_bg, cotangent_seed=1):
    """Outputs and gradients (sigma, rgb, background) of fast and reference paths for a random
    cotangent on all four outputs."""
    results = []
    for fn in (ops.composite, composite_reference):
        xs = [x.detach().clone().requires_grad_(i in (0, 1, 4)) for i, x in enumerate(inputs)]
        out = fn(*xs, last_sample_is_background=last_bg)
        g = torch.Generator(device="cpu").manual_seed(cotangent_seed)
        vs = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device, o.dtype) for o in out]
        loss = sum((o * v).sum() for o, v in zip(out, vs))
        grads = torch.autograd.grad(loss, [xs[0], xs[1], xs[4]])
        results.append(([o.detach() for o in out], grads))
    return results


@pytest.mark.parametrize("last_bg", MODES)
@pytest.mark.parametrize("n,s", [(1, 1), (7, 2), (64, 16), (300, 64), (128, 192)])
def test_matches_reference_float64(n, s, last_bg):
    (out, grads), (ref, ref_grads) = run_both(make_rays(n, s, seed=n * s), last_bg)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("last_bg", MODES)
def test_matches_reference_float32(last_bg):
    inputs = make_rays(512, 128, dtype=torch.float32, seed=3)
    (out, grads), _ = run_both(inputs, last_bg)
    # Reference in float64: the float32 kernel must be close to the exact answer.
    _, (ref, ref_grads) = run_both([x.double() for x in inputs], last_bg)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("last_bg", MODES)
def test_gradient_without_weights_output(last_bg):
    """The single-walk backward (weights unused: total from the saved outputs) is also exact."""
    inputs = make_rays(200, 48, seed=5)
    grads = []
    for fn in (ops.composite, composite_reference):
        xs = [x.clone().requires_grad_(i in (0, 1, 4)) for i, x in enumerate(inputs)]
        color, depth, opacity, _ = fn(*xs, last_sample_is_background=last_bg)
        loss = (color ** 2).sum() + 0.3 * depth.sum() - 2.0 * opacity.sum()
        grads.append(torch.autograd.grad(loss, [xs[0], xs[1], xs[4]]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("last_bg", MODES)
def test_gradcheck(last_bg):
    sigma, rgb, t, rays_d, bg = make_rays(6, 5, seed=11)
    sigma = sigma + 0.2  # away from the ReLU kink, where finite differences are not defined
    sigma.requires_grad_()
    rgb.requires_grad_()
    bg.requires_grad_()

    def fn(sigma, rgb, bg):
        return ops.composite(sigma, rgb, t, rays_d, bg, last_sample_is_background=last_bg)

    assert torch.autograd.gradcheck(fn, (sigma, rgb, bg), eps=1e-6, atol=1e-7)


def test_background_shape_3_broadcasts_and_sums_gradient():
    sigma, rgb, t, rays_d, _ = make_rays(32, 8, seed=2)
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    color = ops.composite(sigma, rgb, t, rays_d, bg)[0]
    (g,) = torch.autograd.grad(color.sum(), bg)
    bg_ref = bg.detach().clone().requires_grad_()
    color_ref = composite_reference(sigma, rgb, t, rays_d, bg_ref)[0]
    (g_ref,) = torch.autograd.grad(color_ref.sum(), bg_ref)
    torch.testing.assert_close(color, color_ref.detach())
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("last_bg", MODES)
def test_zero_density_gives_background(last_bg):
    sigma, rgb, t, rays_d, bg = make_rays(16, 10, seed=4)
    color, depth, opacity, weights = ops.composite(torch.zeros_like(sigma), rgb, t, rays_d, bg,
                                                   last_sample_is_background=last_bg)
    torch.testing.assert_close(color, bg)
    assert torch.all(opacity == 0)
    if last_bg:  # all weight on the opaque background sample at the far end
        assert torch.all(weights[:, :-1] == 0) and torch.all(weights[:, -1] == 1)
        torch.testing.assert_close(depth, t[:, -1])
    else:
        assert torch.all(weights == 0) and torch.all(depth == 0)


@pytest.mark.parametrize("last_bg", MODES)
def test_huge_density_at_first_sample(last_bg):
    sigma, rgb, t, rays_d, bg = make_rays(16, 10, seed=6)
    sigma = torch.zeros_like(sigma)
    sigma[:, 0] = 1e6
    color, depth, opacity, weights = ops.composite(sigma, rgb, t, rays_d, bg,
                                                   last_sample_is_background=last_bg)
    torch.testing.assert_close(color, rgb[:, 0])
    torch.testing.assert_close(depth, t[:, 0])
    torch.testing.assert_close(opacity, torch.ones_like(opacity))
    assert torch.all(weights[:, 1:] == 0)


def test_one_sample_per_ray():
    sigma, rgb, t, rays_d, bg = make_rays(9, 1, seed=7)
    sigma = sigma + 1.0
    color, _, opacity, weights = ops.composite(sigma, rgb, t, rays_d, bg)
    torch.testing.assert_close(color, bg)  # the only sample is the background
    assert torch.all(opacity == 0) and torch.all(weights == 1)
    color, _, opacity, _ = ops.composite(sigma, rgb, t, rays_d, bg, last_sample_is_background=False)
    torch.testing.assert_close(color, rgb[:, 0])  # interval 1e10: opaque
    torch.testing.assert_close(opacity, torch.ones_like(opacity))


@pytest.mark.parametrize("last_bg", MODES)
def test_zero_rays(last_bg):
    sigma, rgb, t, rays_d, bg = make_rays(0, 12)
    sigma.requires_grad_()
    out = ops.composite(sigma, rgb, t, rays_d, bg, last_sample_is_background=last_bg)
    assert [tuple(o.shape) for o in out] == [(0, 3), (0,), (0,), (0, 12)]
    (g,) = torch.autograd.grad(out[0].sum(), sigma)
    assert g.shape == (0, 12)


def test_near_equals_far_gives_zero_intervals():
    sigma, rgb, _, rays_d, bg = make_rays(8, 6, seed=8)
    t = torch.full_like(sigma, 3.0)
    color, _, opacity, _ = ops.composite(sigma, rgb, t, rays_d, bg)
    torch.testing.assert_close(color, bg)  # no foreground interval has length
    assert torch.all(opacity == 0)


def test_non_contiguous_inputs():
    sigma, rgb, t, rays_d, bg = make_rays(40, 12, seed=9)
    nc = [sigma.t().contiguous().t(), rgb.transpose(0, 1).contiguous().transpose(0, 1),
          t[:, :].t().contiguous().t(), torch.cat([rays_d, rays_d], 1)[:, ::2], bg.t().contiguous().t()]
    assert not any(x.is_contiguous() for x in (nc[0], nc[1], nc[3]))
    for a, b in zip(ops.composite(*nc), composite_reference(sigma, rgb, t, rays_d, bg)):
        torch.testing.assert_close(a, b)


def test_nan_propagates_to_its_ray_only():
    sigma, rgb, t, rays_d, bg = make_rays(10, 8, seed=10)
    sigma[3, 2] = float("nan")
    color, depth, opacity, _ = ops.composite(sigma, rgb, t, rays_d, bg)
    assert torch.isnan(color[3]).all() and torch.isnan(depth[3]) and torch.isnan(opacity[3])
    ok = torch.arange(10) != 3
    ref = composite_reference(sigma[ok], rgb[ok], t[ok], rays_d[ok], bg[ok])
    torch.testing.assert_close(color[ok], ref[0])


def test_negative_density_is_relu():
    sigma, rgb, t, rays_d, bg = make_rays(20, 8, seed=12)
    neg = -torch.rand_like(sigma)
    for a, b in zip(ops.composite(neg, rgb, t, rays_d, bg), ops.composite(neg.relu(), rgb, t, rays_d, bg)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "change,exc,match",
    [
        (lambda x: x.__setitem__(0, x[0].half()), TypeError, "float32 or float64"),
        (lambda x: x.__setitem__(0, x[0].to(torch.int32)), TypeError, "float32 or float64"),
        (lambda x: x.__setitem__(1, x[1].float()), TypeError, "dtype"),
        (lambda x: x.__setitem__(1, x[1][:, :, :2]), ValueError, r"rgb must have shape"),
        (lambda x: x.__setitem__(2, x[2][:, :-1]), ValueError, r"t must have shape"),
        (lambda x: x.__setitem__(3, x[3][:-1]), ValueError, r"rays_d must have shape"),
        (lambda x: x.__setitem__(4, x[4][:, :2]), ValueError, r"background must have shape"),
        (lambda x: x.__setitem__(4, torch.ones(4, dtype=torch.float64)), ValueError, r"background must be \[3\]"),
        (lambda x: x.__setitem__(0, x[0][0]), ValueError, "sigma must have 2 dimensions"),
        (lambda x: x.__setitem__(0, x[0].tolist()), TypeError, "sigma must be a torch.Tensor"),
        (lambda x: (x.__setitem__(0, x[0][:, :0]), x.__setitem__(1, x[1][:, :0]), x.__setitem__(2, x[2][:, :0])),
         ValueError, "at least one sample"),
    ],
)
def test_bad_input_errors(change, exc, match):
    inputs = make_rays(5, 4)
    change(inputs)
    with pytest.raises(exc, match=match):
        ops.composite(*inputs)


@pytest.mark.cuda
@requires_cuda
def test_wrong_device_error():
    inputs = make_rays(5, 4)
    inputs[1] = inputs[1].cuda()
    with pytest.raises(ValueError, match="device"):
        ops.composite(*inputs)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("last_bg", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(last_bg, dtype):
    inputs = make_rays(2048, 192, dtype=dtype, seed=21)
    (out_cpu, g_cpu), _ = run_both(inputs, last_bg)
    (out_gpu, g_gpu), _ = run_both([x.cuda() for x in inputs], last_bg)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(out_gpu, out_cpu):
        torch.testing.assert_close(a.cpu(), b, **tol)
    for a, b in zip(g_gpu, g_cpu):
        torch.testing.assert_close(a.cpu(), b, **(dict(rtol=1e-3, atol=1e-4) if dtype == torch.float32 else tol))
