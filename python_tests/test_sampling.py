"""generate_rays, sample_along_rays, sample_pdf, fine_samples against their references."""

from __future__ import annotations


import pytest
import torch

import jeancore.ops as ops
from jeancore.ops.reference import sample_along_rays_reference, sample_pdf_reference

from conftest import requires_cuda


def random_rays(n, *, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g, dtype=dtype)
    d = torch.randn(n, 3, generator=g, dtype=dtype)
    near = torch.rand(n, generator=g, dtype=dtype) + 0.5
    far = near + torch.rand(n, generator=g, dtype=dtype) * 3 + 0.1
    return o, d, near, far


def random_rotation(g, dtype=torch.float64):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


# ---------------------------------------------------------------- generate_rays
def test_generate_rays_conventions_on_axes():
    c2w = torch.eye(3, 4, dtype=torch.float64)
    pix = torch.tensor([[50.0, 40.0], [60.0, 40.0], [50.0, 30.0]], dtype=torch.float64)
    o, d = ops.generate_rays(c2w, 100.0, 100.0, 50.0, 40.0, pix, convention="opengl")
    torch.testing.assert_close(d[0], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    assert d[1, 0] > 0 and d[2, 1] > 0  # right of centre: +x; above centre (smaller v): +y
    _, d_cv = ops.generate_rays(c2w, 100.0, 100.0, 50.0, 40.0, pix, convention="opencv")
    torch.testing.assert_close(d_cv[0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert d_cv[1, 0] > 0 and d_cv[2, 1] < 0  # OpenCV: y points down
    assert torch.all(o == 0)


@pytest.mark.parametrize("convention", ["opengl", "opencv"])
def test_generate_rays_hit_projected_points(convention):
    """Project world points with a known pinhole camera; the rays through those pixels pass
    through the points at depth t = camera-space depth."""
    g = torch.Generator().manual_seed(1)
    rot = random_rotation(g)
    centre = torch.randn(3, generator=g, dtype=torch.float64)
    c2w = torch.cat([rot, centre[:, None]], dim=1)
    fx, fy, cx, cy = 500.0, 480.0, 225.0, 230.0
    depth = torch.rand(64, generator=g, dtype=torch.float64) * 3 + 1
    xy = torch.randn(64, 2, generator=g, dtype=torch.float64) * 0.3
    sign = -1.0 if convention == "opengl" else 1.0  # camera looks down -z (GL) or +z (CV)
    cam = torch.stack([xy[:, 0] * depth, sign * xy[:, 1] * depth, sign * depth], dim=-1)
    world = cam @ rot.T + centre
    # pinhole projection: u = fx x/z + cx; v = fy y/z + cy in OpenCV axes (GL flips y and z)
    u = fx * xy[:, 0] + cx
    v = fy * xy[:, 1] + cy
    o, d = ops.generate_rays(c2w, fx, fy, cx, cy, torch.stack([u, v], -1), convention=convention)
    torch.testing.assert_close(o + depth[:, None] * d, world)


def test_generate_rays_batched():
    g = torch.Generator().manual_seed(2)
    c2w = torch.stack([torch.cat([random_rotation(g), torch.randn(3, 1, generator=g,
                                                                  dtype=torch.float64)], 1)
                       for _ in range(4)])
    pix = torch.rand(10, 2, generator=g, dtype=torch.float64) * 100
    o, d = ops.generate_rays(c2w, 90.0, 90.0, 50.0, 50.0, pix)
    assert o.shape == d.shape == (4, 10, 3)
    for b in range(4):
        ob, db = ops.generate_rays(c2w[b], 90.0, 90.0, 50.0, 50.0, pix)
        torch.testing.assert_close(d[b], db)
        torch.testing.assert_close(o[b], ob)
    with pytest.raises(ValueError, match="convention"):
        ops.generate_rays(c2w, 1.0, 1.0, 0.0, 0.0, pix, convention="blender")
    with pytest.raises(ValueError, match="c2w"):
        ops.generate_rays(c2w[:, :, :3], 1.0, 1.0, 0.0, 0.0, pix)


# ---------------------------------------------------------------- sample_along_rays
@pytest.mark.parametrize("n,s", [(1, 1), (5, 2), (300, 64), (64, 192)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_along_rays_matches_reference(n, s, dtype):
    o, d, near, far = random_rays(n, dtype=dtype, seed=n + s)
    t, pts = ops.sample_along_rays(o, d, near, far, s)
    t_ref, pts_ref = sample_along_rays_reference(o, d, near, far, s)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t, t_ref, **tol)
    torch.testing.assert_close(pts, pts_ref, **tol)
    # stratified: the same jitter draws as the wrapper (same seed) reproduce the reference
    t, pts = ops.sample_along_rays(o, d, near, far, s, stratified=True,
                                   generator=torch.Generator().manual_seed(7))
    jitter = torch.rand((n, s), generator=torch.Generator().manual_seed(7), dtype=dtype)
    t_ref, pts_ref = sample_along_rays_reference(o, d, near, far, s, jitter)
    torch.testing.assert_close(t, t_ref, **tol)
    torch.testing.assert_close(pts, pts_ref, **tol)


def test_stratified_samples_sorted_in_bounds_and_reproducible():
    o, d, near, far = random_rays(500, seed=3)
    t1, _ = ops.sample_along_rays(o, d, near, far, 32, stratified=True,
                                  generator=torch.Generator().manual_seed(0))
    t2, _ = ops.sample_along_rays(o, d, near, far, 32, stratified=True,
                                  generator=torch.Generator().manual_seed(0))
    t3, _ = ops.sample_along_rays(o, d, near, far, 32, stratified=True,
                                  generator=torch.Generator().manual_seed(1))
    assert torch.equal(t1, t2) and not torch.equal(t1, t3)
    assert torch.all(t1[:, 1:] >= t1[:, :-1])
    assert torch.all(t1 >= near[:, None]) and torch.all(t1 <= far[:, None])
    t_even, _ = ops.sample_along_rays(o, d, near, far, 32)
    # every stratified depth lies within half a spacing of its evenly spaced depth
    half = (far - near)[:, None] / 31 / 2
    assert torch.all((t1 - t_even).abs() <= half + 1e-12)


def test_sample_along_rays_edge_cases():
    o, d, near, far = random_rays(6, seed=4)
    t, pts = ops.sample_along_rays(o, d, near, near, 8)  # near == far
    torch.testing.assert_close(t, near[:, None].expand(6, 8))
    t, _ = ops.sample_along_rays(o, d, near, far, 1)
    torch.testing.assert_close(t[:, 0], near)
    t, pts = ops.sample_along_rays(o[:0], d[:0], near[:0], far[:0], 16)
    assert t.shape == (0, 16) and pts.shape == (0, 16, 3)
    t, _ = ops.sample_along_rays(o, d, 2.0, 6.0, 5)  # Python-number bounds
    torch.testing.assert_close(t[0], torch.linspace(2.0, 6.0, 5, dtype=torch.float64))
    nc_o = torch.cat([o, o], dim=1)[:, ::2]
    assert not nc_o.is_contiguous()
    torch.testing.assert_close(ops.sample_along_rays(nc_o, d, near, far, 4)[1],
                               ops.sample_along_rays(nc_o.contiguous(), d, near, far, 4)[1])


def test_sample_along_rays_gradients():
    o, d, near, far = random_rays(20, seed=5)
    v = torch.randn(20, 12, 3, dtype=torch.float64)
    grads = []
    for fn in (ops.sample_along_rays, sample_along_rays_reference):
        oo, dd = o.clone().requires_grad_(), d.clone().requires_grad_()
        _, pts = fn(oo, dd, near, far, 12)
        grads.append(torch.autograd.grad((pts * v).sum(), [oo, dd]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    oo, dd = o.clone().requires_grad_(), d.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ops.sample_along_rays(a, b, near, far, 4)[1],
                                    (oo, dd))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(rays_d=torch.zeros(6, 2, dtype=torch.float64)), ValueError, "rays_d must have shape"),
        (dict(near=torch.zeros(5, dtype=torch.float64)), ValueError, "near must have shape"),
        (dict(rays_o=torch.zeros(6, 3, dtype=torch.float16)), TypeError, "float32 or float64"),
        (dict(far=torch.ones(6)), TypeError, "dtype"),
        (dict(rays_o=[[0.0, 0.0, 0.0]] * 6), TypeError, "torch.Tensor"),
    ],
)
def test_sample_along_rays_errors(kwargs, exc, match):
    o, d, near, far = random_rays(6)
    args = dict(rays_o=o, rays_d=d, near=near, far=far, n_samples=4)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        ops.sample_along_rays(**args)


# ---------------------------------------------------------------- sample_pdf
def random_pdf(n, s, *, dtype=torch.float64, seed=0, sparse=False):
    g = torch.Generator().manual_seed(seed)
    bins = torch.sort(torch.rand(n, s + 1, generator=g, dtype=dtype) * 5 + 1, dim=-1).values
    w = torch.rand(n, s, generator=g, dtype=dtype)
    if sparse:  # realistic NeRF weights: mostly ~0 with a few peaks
        w = w * (torch.rand(n, s, generator=g, dtype=dtype) > 0.85)
    return bins, w


@pytest.mark.parametrize("n,s,k", [(1, 1, 1), (4, 3, 5), (300, 62, 128), (64, 126, 64)])
@pytest.mark.parametrize("sparse", [False, True])
def test_sample_pdf_matches_nerf_reference(n, s, k, sparse):
    bins, w = random_pdf(n, s, seed=n + s + k, sparse=sparse)
    out = ops.sample_pdf(bins, w, k)
    u = torch.linspace(0, 1, k, dtype=torch.float64)
    torch.testing.assert_close(out, sample_pdf_reference(bins, w, u), rtol=1e-10, atol=1e-10)
    out = ops.sample_pdf(bins, w, k, stratified=True, generator=torch.Generator().manual_seed(3))
    jit = torch.rand((n, k), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    u = (torch.arange(k, dtype=torch.float64) + jit) / k
    torch.testing.assert_close(out, sample_pdf_reference(bins, w, u), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", [9, 17, 51])
def test_sample_pdf_float32_close_to_float64(seed):
    """float32 agrees with float64 except at NeRF's discontinuities: where u falls within float32
    rounding of a CDF entry next to a near-empty bin, or a bin's probability is within rounding
    of the 1e-5 threshold, float32 may legitimately take the other branch. Those points are
    rare (seen: at most 1 in 32768); anything more is a real error."""
    bins, w = random_pdf(256, 63, seed=seed, sparse=True)
    out32 = ops.sample_pdf(bins.float(), w.float(), 128).double()
    out64 = ops.sample_pdf(bins, w, 128)
    close = (out32 - out64).abs() <= 1e-4 + 1e-4 * out64.abs()
    assert (~close).sum() <= 2, f"{int((~close).sum())} of {close.numel()} samples differ"
    assert torch.all(out32 >= bins[:, :1].double() - 1e-5) and torch.all(out32 <= bins[:, -1:] + 1e-5)


def test_sample_pdf_follows_the_weights():
    """All weight in one bin: the samples concentrate there (up to the 1e-5 floor of NeRF)."""
    bins = torch.linspace(0, 10, 11, dtype=torch.float64).expand(5, 11).contiguous()
    w = torch.zeros(5, 10, dtype=torch.float64)
    w[:, 6] = 1.0
    out = ops.sample_pdf(bins, w, 64, stratified=True, generator=torch.Generator().manual_seed(0))
    inside = (out >= 6) & (out <= 7)
    assert inside.double().mean() > 0.95
    assert torch.all(out[:, 1:] >= out[:, :-1])  # stratified u are sorted, so samples are
    assert torch.all(out >= 0) and torch.all(out <= 10)
    # empirical CDF matches the PDF: with equal weights the samples are uniform on [0, 10]
    out = ops.sample_pdf(bins, torch.ones_like(w), 1001)
    torch.testing.assert_close(out[0], torch.linspace(0, 10, 1001, dtype=torch.float64))


def test_sample_pdf_no_gradient_and_errors():
    bins, w = random_pdf(8, 5)
    w.requires_grad_()
    assert not ops.sample_pdf(bins, w, 4).requires_grad
    with pytest.raises(ValueError, match=r"bins must have shape"):
        ops.sample_pdf(bins[:, :-1], w, 4)
    with pytest.raises(ValueError, match="n_samples"):
        ops.sample_pdf(bins, w, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.sample_pdf(bins.half(), w.half(), 4)
    out = ops.sample_pdf(bins[:0], w[:0], 4)
    assert out.shape == (0, 4)


def test_fine_samples_and_merge():
    o, d, near, far = random_rays(50, seed=6)
    t, _ = ops.sample_along_rays(o, d, near, far, 64)
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(50, 64, generator=g, dtype=torch.float64)
    t_all = ops.fine_samples(t, weights, 128)
    assert t_all.shape == (50, 192)
    assert torch.all(t_all[:, 1:] >= t_all[:, :-1])
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    fine = sample_pdf_reference(mids, weights[:, 1:-1], torch.linspace(0, 1, 128, dtype=torch.float64))
    torch.testing.assert_close(t_all, torch.sort(torch.cat([t, fine], -1), -1).values)
    with pytest.raises(ValueError, match="S >= 3"):
        ops.fine_samples(t[:, :2], weights[:, :2], 4)


# ---------------------------------------------------------------- CUDA
@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_sampling_matches_cpu(dtype):
    o, d, near, far = random_rays(4096, dtype=dtype, seed=8)
    gen_cpu = torch.Generator().manual_seed(0)
    jitter = torch.rand((4096, 64), generator=gen_cpu, dtype=dtype)
    t_c, p_c = torch.ops.jeancore.sample_along_rays(o, d, near, far, 64, jitter)
    t_g, p_g = torch.ops.jeancore.sample_along_rays(o.cuda(), d.cuda(), near.cuda(), far.cuda(),
                                                     64, jitter.cuda())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(t_g.cpu(), t_c, **tol)
    torch.testing.assert_close(p_g.cpu(), p_c, **tol)
    bins, w = random_pdf(4096, 63, dtype=dtype, sparse=True)
    u = (torch.arange(128, dtype=dtype) + torch.rand((4096, 128), dtype=dtype)) / 128
    out_c = torch.ops.jeancore.sample_pdf(bins, w, u)
    out_g = torch.ops.jeancore.sample_pdf(bins.cuda(), w.cuda(), u.cuda())
    torch.testing.assert_close(out_g.cpu(), out_c, **tol)


def test_nan_propagates_in_sampling():
    o, d, near, far = random_rays(4, seed=12)
    near = near.clone()
    near[1] = float("nan")
    t, pts = ops.sample_along_rays(o, d, near, far, 8)
    assert torch.isnan(t[1]).all() and torch.isfinite(t[[0, 2, 3]]).all()
    bins, w = random_pdf(4, 6, seed=13)
    w[2, 3] = float("nan")
    out = ops.sample_pdf(bins, w, 8)
    assert torch.isnan(out[2]).all() and torch.isfinite(out[[0, 1, 3]]).all()
