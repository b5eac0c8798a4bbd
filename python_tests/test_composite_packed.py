"""composite_packed(): fused forward/backward against the padded pure-torch reference and the
dense composite()."""

from __future__ import annotations

import pytest
import torch

import jeancore.ops as ops
from jeancore.ops.reference import composite_packed_reference

from conftest import requires_cuda


def make_packed(n_rays, max_samples, *, dtype=torch.float64, seed=0, empty_share=0.2,
                sigma_scale=3.0):
    """Random packed samples: ragged rays (some without samples), sorted intervals."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, max_samples + 1, (n_rays,), generator=g)
    counts[torch.rand(n_rays, generator=g) < empty_share] = 0
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts)
    m = int(counts.sum())
    starts = torch.rand(m, generator=g, dtype=dtype) * 4 + 2
    # sort each ray's starts: a key of ray index + position in [0, 1)
    order = torch.argsort(ray_indices.to(dtype) + (starts - 2) / 4.001)
    t_starts = starts[order]
    t_ends = t_starts + torch.rand(m, generator=g, dtype=dtype) * 0.3
    sigma = (torch.randn(m, generator=g, dtype=dtype) * sigma_scale).relu_()
    rgb = torch.rand(m, 3, generator=g, dtype=dtype)
    bg = torch.rand(n_rays, 3, generator=g, dtype=dtype)
    return sigma, rgb, t_starts, t_ends, ray_indices, bg


def run_both(inputs, n_rays, *, background="per_ray", early_stop=0.0, seed=1, outputs=4):
    """Outputs and gradients (sigma, rgb[, background]) of the kernel and the reference for a
    random cotangent on the first `outputs` outputs."""
    sigma, rgb, ts, te, ri, bg = inputs
    results = []
    for fn in (ops.composite_packed, composite_packed_reference):
        s = sigma.detach().clone().requires_grad_()
        c = rgb.detach().clone().requires_grad_()
        b = {"per_ray": bg, "one": bg[0] if len(bg) else torch.rand(3, dtype=bg.dtype),
             None: None}[background]
        leaves = [s, c]
        if b is not None:
            b = b.detach().clone().requires_grad_()
            leaves.append(b)
        out = fn(s, c, ts, te, ri, n_rays, background=b, early_stop=early_stop)
        g = torch.Generator().manual_seed(seed)
        loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device, o.dtype)).sum()
                   for o in out[:outputs])
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        results.append(([o.detach() for o in out], grads))
    return results


@pytest.mark.parametrize("background", ["per_ray", "one", None])
@pytest.mark.parametrize("n,s", [(1, 1), (7, 3), (64, 16), (300, 48)])
def test_matches_reference_float64(n, s, background):
    inputs = make_packed(n, s, seed=n * s)
    (out, grads), (ref, ref_grads) = run_both(inputs, n, background=background)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_matches_reference_float32():
    inputs = make_packed(512, 64, dtype=torch.float32, seed=3)
    (out, grads), _ = run_both(inputs, 512)
    _, (ref, ref_grads) = run_both([x.double() if x.is_floating_point() else x for x in inputs], 512)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


def test_gradient_without_weights_output():
    """The single-walk backward (total from the saved outputs) is exact too."""
    inputs = make_packed(200, 30, seed=5)
    (_, grads), (_, ref_grads) = run_both(inputs, 200, outputs=3)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("background", [True, False])
def test_gradcheck(background):
    sigma, rgb, ts, te, ri, bg = make_packed(6, 5, seed=11, empty_share=0.3)
    sigma = (sigma + 0.2).requires_grad_()  # away from the ReLU kink
    rgb.requires_grad_()
    bg.requires_grad_()

    def fn(sigma, rgb, bg):
        return ops.composite_packed(sigma, rgb, ts, te, ri, 6, background=bg if background else None)

    assert torch.autograd.gradcheck(fn, (sigma, rgb, bg), eps=1e-6, atol=1e-7)


def test_agrees_with_dense_composite():
    """Every ray with the same depths: intervals [t_i, t_{i+1}] and [t_{S-1}, t_{S-1} + 1e10]
    with unit directions are the dense composite's samples (last_sample_is_background=False)."""
    g = torch.Generator().manual_seed(2)
    n, s = 96, 24
    t = torch.sort(torch.rand(s, generator=g, dtype=torch.float64) * 4 + 2).values.expand(n, s)
    sigma = torch.rand(n, s, generator=g, dtype=torch.float64) * 2
    rgb = torch.rand(n, s, 3, generator=g, dtype=torch.float64)
    rays_d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    bg = torch.rand(n, 3, generator=g, dtype=torch.float64)
    ts = t.reshape(-1)
    te = torch.cat([t[:, 1:], t[:, -1:] + 1e10], dim=1).reshape(-1)
    ri = torch.arange(n).repeat_interleave(s)
    leaves_d = [x.clone().requires_grad_() for x in (sigma, rgb, bg)]
    leaves_p = [x.clone().requires_grad_() for x in (sigma, rgb, bg)]
    c_d, depth_d, a_d, w_d = ops.composite(leaves_d[0], leaves_d[1], t, rays_d, leaves_d[2],
                                           last_sample_is_background=False)
    c_p, a_p, depth_p, w_p = ops.composite_packed(
        leaves_p[0].reshape(-1), leaves_p[1].reshape(-1, 3), ts, te, ri, n, background=leaves_p[2])
    torch.testing.assert_close(c_p, c_d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a_p, a_d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w_p, w_d.reshape(-1), rtol=1e-12, atol=1e-12)
    # depth: the dense one weights the sample positions, the packed one the interval midpoints
    torch.testing.assert_close(depth_p, (w_d * (ts + te).view(n, s) / 2).sum(-1), rtol=1e-10, atol=0)
    gd = torch.autograd.grad((c_d ** 2).sum() + a_d.sum(), leaves_d)
    gp = torch.autograd.grad((c_p ** 2).sum() + a_p.sum(), leaves_p)
    for a, b in zip(gp, gd):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("early_stop", [1e-4, 0.1, 0.5])
def test_early_stop(early_stop):
    inputs = make_packed(128, 40, seed=7, sigma_scale=6.0)
    (out, grads), (ref, ref_grads) = run_both(inputs, 128, early_stop=early_stop)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    # the dropped samples: the first one whose transmittance fell below early_stop, and after
    weights = out[3]
    full = ops.composite_packed(*inputs[:5], 128)[3]
    dropped = (weights == 0) & (full > 0)
    assert bool(dropped.any())
    sigma, _, ts, te, ri, _ = inputs
    x = sigma.relu() * (te - ts)
    for r in torch.unique(ri[dropped])[:10].tolist():
        sel = ri == r
        trans = torch.exp(-(torch.cumsum(x[sel], 0) - x[sel]))
        assert torch.equal(weights[sel] == 0, (trans < early_stop) | (full[sel] == 0))
    # opacity differs from the full sum by less than early_stop (what is left after stopping)
    assert float((ops.composite_packed(*inputs[:5], 128)[1] - out[1]).abs().max()) <= early_stop


def test_rays_without_samples_and_empty_inputs():
    sigma, rgb, ts, te, ri, bg = make_packed(20, 6, seed=9, empty_share=0.5)
    color, opacity, depth, _ = ops.composite_packed(sigma, rgb, ts, te, ri, 23, background=bg[:1].expand(23, 3))
    empty = torch.bincount(ri, minlength=23) == 0
    assert int(empty.sum()) >= 4  # rays 20..22 and the ones drawn empty
    assert torch.all(opacity[empty] == 0) and torch.all(depth[empty] == 0)
    torch.testing.assert_close(color[empty], bg[:1].expand(int(empty.sum()), 3))
    e = torch.zeros(0, dtype=torch.float64)
    s = e.clone().requires_grad_()
    out = ops.composite_packed(s, torch.zeros(0, 3, dtype=torch.float64), e, e,
                               torch.zeros(0, dtype=torch.int64), 5)
    assert [tuple(o.shape) for o in out] == [(5, 3), (5,), (5,), (0,)]
    assert torch.all(out[0] == 0)  # no background: black
    (g,) = torch.autograd.grad(out[0].sum() + out[1].sum(), s)
    assert g.shape == (0,)
    out = ops.composite_packed(e, torch.zeros(0, 3, dtype=torch.float64), e, e,
                               torch.zeros(0, dtype=torch.int64), 0)
    assert [tuple(o.shape) for o in out] == [(0, 3), (0,), (0,), (0,)]


def test_known_values():
    """Two samples of one ray, alpha = 1 - e^-1 each: weights (1 - 1/e, (1 - 1/e)/e)."""
    sigma = torch.tensor([1.0, 2.0], dtype=torch.float64)
    ts = torch.tensor([1.0, 2.0], dtype=torch.float64)
    te = torch.tensor([2.0, 2.5], dtype=torch.float64)
    rgb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    color, opacity, depth, w = ops.composite_packed(sigma, rgb, ts, te, torch.zeros(2, dtype=torch.int64), 1,
                                                    background=torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    a = 1 - torch.exp(torch.tensor(-1.0, dtype=torch.float64))
    torch.testing.assert_close(w, torch.stack([a, a * (1 - a)]))
    torch.testing.assert_close(opacity[0], a + a * (1 - a))
    torch.testing.assert_close(color[0], torch.stack([a, a * (1 - a), (1 - a) ** 2]))
    torch.testing.assert_close(depth[0], 1.5 * a + 2.25 * a * (1 - a))


@pytest.mark.parametrize(
    "change,exc,match",
    [
        (lambda x: x.__setitem__(0, x[0].half()), TypeError, "float32 or float64"),
        (lambda x: x.__setitem__(1, x[1].float()), TypeError, "dtype"),
        (lambda x: x.__setitem__(1, x[1][:, :2]), ValueError, "rgb must have shape"),
        (lambda x: x.__setitem__(2, x[2][:-1]), ValueError, "t_starts must have shape"),
        (lambda x: x.__setitem__(3, x[3][None]), ValueError, "t_ends must have 1 dimensions"),
        (lambda x: x.__setitem__(4, x[4].int()), TypeError, "ray_indices must be int64"),
        (lambda x: x.__setitem__(4, x[4].flip(0)), ValueError, "ray_indices must be sorted"),
        (lambda x: x.__setitem__(4, x[4] + 100), ValueError, r"ray_indices must be in \[0, n_rays\)"),
        (lambda x: x.__setitem__(4, x[4] - 1), ValueError, r"ray_indices must be in \[0, n_rays\)"),
        (lambda x: x.__setitem__(5, x[5][:, :2]), ValueError, "background must have shape"),
        (lambda x: x.__setitem__(5, torch.ones(4, dtype=torch.float64)), ValueError, r"background must be \[3\]"),
        (lambda x: x.__setitem__(0, x[0].tolist()), TypeError, "sigma must be a torch.Tensor"),
    ],
)
def test_bad_input_errors(change, exc, match):
    inputs = list(make_packed(8, 4, seed=1, empty_share=0.0))
    change(inputs)
    *samples, bg = inputs
    with pytest.raises(exc, match=match):
        ops.composite_packed(*samples, 8, background=bg)


def test_bad_scalars():
    sigma, rgb, ts, te, ri, _ = make_packed(8, 4, seed=1, empty_share=0.0)
    with pytest.raises(ValueError, match="early_stop must be in"):
        ops.composite_packed(sigma, rgb, ts, te, ri, 8, early_stop=1.0)
    with pytest.raises(ValueError, match="n_rays must be >= 0"):
        ops.composite_packed(sigma, rgb, ts, te, ri, -1)
    with pytest.raises(TypeError, match="n_rays must be an int"):
        ops.composite_packed(sigma, rgb, ts, te, ri, 8.0)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("early_stop", [0.0, 1e-3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype, early_stop):
    inputs = make_packed(4096, 64, dtype=dtype, seed=21)
    (out_c, g_c), _ = run_both(inputs, 4096, early_stop=early_stop)
    (out_g, g_g), _ = run_both([x.cuda() for x in inputs], 4096, early_stop=early_stop)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(out_g, out_c):
        torch.testing.assert_close(a.cpu(), b, **tol)
    for a, b in zip(g_g, g_c):
        torch.testing.assert_close(a.cpu(), b, **(dict(rtol=1e-3, atol=1e-4) if dtype == torch.float32 else tol))
    with pytest.raises(ValueError, match="sorted"):
        sigma, rgb, ts, te, ri, bg = [x.cuda() for x in inputs]
        ops.composite_packed(sigma, rgb, ts, te, ri.flip(0), 4096)
