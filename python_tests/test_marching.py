"""march_rays(): the skipping kernel gives exactly the samples of the brute-force definition;
OccupancyGrid: update, visibility, state."""

from __future__ import annotations

import math

import pytest
import torch

import jeancore.ops as ops
from jeancore.ops.reference import march_rays_reference

from conftest import requires_cuda

AABBS = [(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), (-0.5, 0.0, 2.0, 1.5, 0.7, 3.1)]


def random_rays(n, aabb, *, dtype=torch.float64, seed=0, spread=2.5):
    """Rays from around the box (some inside it) in random directions, a few axis-aligned,
    some not normalised."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(aabb[:3], dtype=dtype), torch.tensor(aabb[3:], dtype=dtype)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    o = centre + (torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1) * half * spread
    target = centre + (torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1) * half
    d = target - o
    d = d / d.norm(dim=-1, keepdim=True) * (0.5 + torch.rand(n, 1, generator=g, dtype=dtype))
    d[: n // 8, 1:] = 0.0  # along x
    d[n // 8: n // 4, :2] = 0.0  # along z
    d[n // 4: n // 4 + 4] = -d[n // 4: n // 4 + 4]  # pointing away
    near = torch.rand(n, generator=g, dtype=dtype) * 0.5
    far = near + torch.rand(n, generator=g, dtype=dtype) * 6
    return o, d, near, far


def random_grid(res, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(res, res, res, generator=g) < p


def assert_same_samples(args, jitter, step):
    got = ops.march_rays(*args, step, jitter=jitter)
    want = march_rays_reference(*args, step, jitter)
    assert got[0].shape == want[0].shape, (got[0].shape, want[0].shape)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and torch.equal(a, b)
    return got


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("res,p", [(1, 1.0), (5, 0.3), (16, 0.05), (33, 0.5), (64, 0.01)])
@pytest.mark.parametrize("aabb", AABBS)
def test_equals_brute_force(dtype, res, p, aabb):
    o, d, near, far = random_rays(300, aabb, dtype=dtype, seed=res)
    occ = random_grid(res, p, seed=res + 1)
    jitter = torch.rand(300, generator=torch.Generator().manual_seed(res), dtype=dtype)
    for step, jit in ((0.013, jitter), (0.004, None)):
        ray_indices, ts, te = assert_same_samples((o, d, near, far, occ, aabb), jit, step)
        assert bool((te - ts > 0).all())
        if ray_indices.numel() > 1:
            assert bool((ray_indices[1:] >= ray_indices[:-1]).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("res", [100, 128])
def test_structured_grids_exercise_the_block_levels(dtype, res):
    """Large empty regions (whole 8^3 and 32^3 blocks, partial blocks at the far faces when R
    is not a multiple of 32) around a spherical shell and a few isolated cells."""
    aabb = AABBS[1]
    idx = (torch.arange(res, dtype=torch.float64) + 0.5) / res * 2 - 1
    x, y, z = torch.meshgrid(idx, idx, idx, indexing="ij")
    r = (x ** 2 + y ** 2 + z ** 2).sqrt()
    occ = (r > 0.55) & (r < 0.6)
    occ |= random_grid(res, 2e-5, seed=res)
    o, d, near, far = random_rays(400, aabb, dtype=dtype, seed=res + 7)
    jitter = torch.rand(400, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ri, _, _ = assert_same_samples((o, d, near, far, occ, aabb), jitter, 0.002)
    assert ri.numel() > 400


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_cell_empty_or_occupied(dtype):
    aabb = AABBS[1]
    o, d, near, far = random_rays(200, aabb, dtype=dtype, seed=3)
    empty = torch.zeros(12, 12, 12, dtype=torch.bool)
    ri, ts, te = ops.march_rays(o, d, near, far, empty, aabb, 0.01)
    assert ri.numel() == ts.numel() == te.numel() == 0 and ts.dtype == dtype
    full = ~empty
    ri, ts, te = assert_same_samples((o, d, near, far, full, aabb), None, 0.01)
    # with every cell occupied the samples are the candidates with a midpoint in the aabb
    lo, hi = torch.tensor(aabb[:3], dtype=dtype), torch.tensor(aabb[3:], dtype=dtype)
    mid = o[ri] + d[ri] * ((ts + te) * 0.5)[:, None]
    assert bool(((mid >= lo) & (mid <= hi)).all())
    assert ri.numel() > 1000


def test_rays_that_miss_or_start_inside():
    aabb = AABBS[0]
    occ = torch.ones(8, 8, 8, dtype=torch.bool)
    o = torch.tensor([[3.0, 3.0, 3.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.2, -0.3, 0.9],
                      [1.0, 0.0, -5.0]], dtype=torch.float64)
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.0, -0.8],
                      [0.0, 0.0, 1.0]], dtype=torch.float64)  # away, away, inside, inside, on a face
    ri, ts, te = assert_same_samples((o, d, 0.0, 10.0, occ, aabb), None, 0.05)
    counts = torch.bincount(ri, minlength=5).tolist()
    assert counts[0] == 0 and counts[1] == 0
    assert counts[2] == 20  # from the centre to z = 1: midpoints 0.025 .. 0.975
    assert counts[3] > 0 and ts[ri == 3][0] == 0.0  # starts inside: the first candidate is kept
    assert counts[4] == 40  # along the face x = 1 (borders are inside)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_midpoints_exactly_on_cell_borders(dtype):
    """Midpoints at exact binary fractions land on cell borders and the aabb's faces; a
    checkerboard grid makes every border decision visible in the samples."""
    aabb = (0.0, 0.0, 0.0, 1.0, 1.0, 1.0)
    idx = torch.arange(4)
    occ = ((idx[:, None, None] + idx[None, :, None] + idx[None, None, :]) % 2) == 0
    o = torch.tensor([[0.25, 0.5, -1.0], [0.0, 0.0, -1.0], [0.5, 0.75, 2.0], [-1.0, 0.25, 0.5],
                      [1.0, 1.0, 1.0]], dtype=dtype)
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0],
                      [-1.0, -1.0, -1.0]], dtype=dtype)
    jitter = torch.full((5,), 0.5, dtype=dtype)  # midpoints at (k + 1) * step from near
    ri, ts, te = assert_same_samples((o, d, 0.0, 3.0, occ, aabb), jitter, 0.125)
    assert ri.numel() > 0


def test_far_origins_and_small_steps_float32():
    """Large coordinates (rounding of the midpoint) and many candidates per cell: the skipping
    must still agree with the definition bit for bit."""
    aabb = (-1.5, -1.5, -2.0, 1.5, 1.5, 1.0)  # a head-sized box, cameras about 10 away
    g = torch.Generator().manual_seed(4)
    n = 400
    o = torch.tensor([0.0, 0.0, 10.2]) + torch.randn(n, 3, generator=g) * 0.3
    target = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([1.2, 1.2, 1.0])
    d = torch.nn.functional.normalize(target - o, dim=-1)
    occ = random_grid(32, 0.2, seed=5)
    jitter = torch.rand(n, generator=g)
    assert_same_samples((o, d, 9.0, 12.4, occ, aabb), jitter, 0.0025)
    far_o = o * 100.0
    assert_same_samples((far_o, d, 1010.0, 1030.0, occ, aabb), jitter, 0.01)


def test_zero_rays_and_number_arguments():
    occ = torch.ones(4, 4, 4, dtype=torch.bool)
    e = torch.zeros(0, 3)
    ri, ts, te = ops.march_rays(e, e, 0.0, 1.0, occ, AABBS[0], 0.1)
    assert ri.shape == ts.shape == te.shape == (0,)
    o, d, near, far = random_rays(50, AABBS[0], seed=8)
    a = ops.march_rays(o, d, 0.2, 4.0, occ, torch.tensor(AABBS[0]), torch.tensor(0.05, dtype=torch.float64))
    b = ops.march_rays(o, d, torch.full((50, 1), 0.2, dtype=torch.float64),
                       torch.tensor(4.0, dtype=torch.float64), occ, AABBS[0], 0.05)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def _args():
    o, d, near, far = random_rays(10, AABBS[0], seed=1)
    return [o, d, near, far, torch.ones(4, 4, 4, dtype=torch.bool), AABBS[0], 0.1]


@pytest.mark.parametrize("change,exc,match", [
    (lambda a: a.__setitem__(0, a[0].float()), TypeError, "dtype"),
    (lambda a: a.__setitem__(0, a[0][:, :2]), ValueError, r"rays_o must have shape \[N, 3\]"),
    (lambda a: a.__setitem__(1, a[1][:-1]), ValueError, "rays_d must have shape"),
    (lambda a: a.__setitem__(2, a[2][:-1]), ValueError, "near must have shape"),
    (lambda a: a.__setitem__(4, a[4].float()), TypeError, "occupancy must be a bool tensor"),
    (lambda a: a.__setitem__(4, torch.ones(4, 4, 5, dtype=torch.bool)), ValueError, "cubic grid"),
    (lambda a: a.__setitem__(5, (0, 0, 0, 1, 1)), ValueError, "aabb must have 6 numbers"),
    (lambda a: a.__setitem__(5, (0, 0, 0, 1, -1, 1)), ValueError, "min < max"),
    (lambda a: a.__setitem__(5, (0, 0, 0, 1, float("inf"), 1)), ValueError, "finite"),
    (lambda a: a.__setitem__(5, "box"), TypeError, "aabb must be 6 numbers"),
    (lambda a: a.__setitem__(6, -0.1), ValueError, "step_size must be a finite number > 0"),
    (lambda a: a.__setitem__(6, 0.0), ValueError, "step_size must be a finite number > 0"),
    (lambda a: a.__setitem__(6, float("nan")), ValueError, "step_size"),
    (lambda a: a.__setitem__(6, "0.1"), TypeError, "step_size must be a number"),
])
def test_bad_input_errors(change, exc, match):
    args = _args()
    change(args)
    with pytest.raises(exc, match=match):
        ops.march_rays(*args)


def test_bad_jitter():
    args = _args()
    with pytest.raises(ValueError, match="jitter must have 1 dimensions"):
        ops.march_rays(*args, jitter=torch.rand(10, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"jitter must have shape \[N\]"):
        ops.march_rays(*args, jitter=torch.rand(9, dtype=torch.float64))
    with pytest.raises(TypeError, match="jitter has dtype"):
        ops.march_rays(*args, jitter=torch.rand(10))


def test_nan_rays_get_no_samples():
    o, d, near, far, occ, aabb, step = _args()
    o[3, 0] = float("nan")
    far[5] = float("nan")
    ri, _, _ = ops.march_rays(o, d, near, far, occ, aabb, step)
    assert not bool(((ri == 3) | (ri == 5)).any())
    ok = torch.ones(10, dtype=torch.bool)
    ok[[3, 5]] = False
    ref = march_rays_reference(o[ok], d[ok], near[ok], far[ok], occ, aabb, step)
    assert ri.numel() == ref[0].numel()


# ------------------------------------------------------------------------- OccupancyGrid
def sphere_sigma(points, radius=0.5):
    return (points.norm(dim=-1) < radius).float() * 100.0


def test_update_schedule_and_ema():
    grid = OccupancyGrid = ops.OccupancyGrid(AABBS[0], 8, update_every=4, decay=0.5,
                                             threshold=0.01)
    assert bool(grid.occupied.all())  # nothing skipped before the first update
    calls = []

    def const(value):
        def fn(p):
            calls.append(p.shape[0])
            return torch.full((p.shape[0], 1), value)
        return fn

    assert not grid.update(3, const(1.0)) and calls == []
    assert grid.update(0, const(2.0), warmup_steps=10) and calls == [512]  # warm-up: all cells
    assert torch.all(grid.ema == 2.0)
    assert grid.update(4, const(0.0), warmup_steps=10)
    assert torch.all(grid.ema == 1.0)  # max(decay * ema, 0)
    assert bool(OccupancyGrid.occupied.all())  # 1.0 > min(mean = 1.0, 0.01)
    # after warm-up: a quarter of the cells uniformly + a quarter of the occupied ones
    calls.clear()
    assert grid.update(12, const(0.0), warmup_steps=10, generator=torch.Generator().manual_seed(0))
    assert calls == [128 + 128]
    touched = grid.ema < 1.0
    assert 0 < int(touched.sum()) <= 256
    torch.testing.assert_close(grid.ema[touched], torch.full((int(touched.sum()),), 0.5))


def test_update_finds_a_sphere_and_thresholds():
    grid = ops.OccupancyGrid(AABBS[0], 16, update_every=1, threshold=1.0)
    grid.update(0, sphere_sigma, generator=torch.Generator().manual_seed(1))
    centres = grid.cell_centers().view(16, 16, 16, 3)
    dist = centres.norm(dim=-1)
    half_diag = (2.0 / 16) * 3 ** 0.5 / 2
    assert bool(grid.occupied[dist < 0.5 - half_diag].all())      # fully inside
    assert not bool(grid.occupied[dist > 0.5 + half_diag].any())  # fully outside
    # occupied = ema > min(mean(ema), threshold): here the threshold (1.0) is below the mean
    assert torch.equal(grid.occupied, grid.ema > min(float(grid.ema.mean()), 1.0))
    assert 0.0 < grid.fraction_occupied < 0.1
    # marching through the grid: samples only near the sphere, as the definition says
    o, d, near, far = random_rays(200, AABBS[0], seed=2)
    a = grid.march(o, d, near, far, 0.01)
    b = march_rays_reference(o, d, near, far, grid.occupied, AABBS[0], 0.01)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    mid = o[a[0]] + d[a[0]] * ((a[1] + a[2]) / 2)[:, None]
    assert float(mid.norm(dim=-1).max()) < 0.5 + 2 * half_diag


def test_mark_invisible_one_camera():
    """One OpenGL camera at z = 4 looking down -z with a narrow field of view: cells on the
    axis stay visible, cells far off the axis and beyond far do not."""
    grid = ops.OccupancyGrid(AABBS[0], 16)
    c2w = torch.eye(4)[None].clone()
    c2w[0, 2, 3] = 4.0
    fx = fy = 400.0
    share = grid.mark_invisible(c2w, (fx, fy, 50.0, 50.0), (100, 100), 3.2, 4.5)
    centres = grid.cell_centers().view(16, 16, 16, 3)
    z = 4.0 - centres[..., 2]
    u = fx * centres[..., 0] / z + 50.0
    v = -fy * centres[..., 1] / z + 50.0
    r = (2.0 / 16) * 3 ** 0.5 / 2
    surely_in = (u > 5) & (u < 95) & (v > 5) & (v < 95) & (z > 3.2 + r) & (z < 4.5 - r)
    surely_out = (u < -60) | (u > 160) | (v < -60) | (v > 160) | (z < 3.2 - 2 * r) | (z > 4.5 + 2 * r)
    assert bool(grid.visible[surely_in].all()) and not bool(grid.visible[surely_out].any())
    assert 0.0 < share < 0.5 and share == pytest.approx(grid.visible.float().mean().item())
    assert not bool(grid.occupied[~grid.visible].any())
    # invisible cells stay empty through updates
    grid.update(0, lambda p: torch.full((p.shape[0],), 50.0))
    assert torch.equal(grid.occupied, grid.visible)
    # the same camera in OpenCV axes (looking down +z from z = -4) sees the mirrored cells
    grid_cv = ops.OccupancyGrid(AABBS[0], 16)
    c2w_cv = torch.eye(4)[None].clone()
    c2w_cv[0, 2, 3] = -4.0
    grid_cv.mark_invisible(c2w_cv, (fx, fy, 50.0, 50.0), (100, 100), 3.2, 4.5, convention="opencv")
    assert torch.equal(grid_cv.visible, grid.visible.flip(2).flip(1))


def _look_at(eye) -> torch.Tensor:
    """OpenGL camera-to-world at ``eye`` looking at the origin (y up)."""
    eye = torch.as_tensor(eye, dtype=torch.float32)
    back = eye / eye.norm()
    up = torch.tensor([0.0, 1.0, 0.0])
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    up = torch.linalg.cross(back, right)
    m = torch.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, eye
    return m


def test_mark_outside_masks_carves_the_visual_hull():
    """Cameras around a sphere of radius 0.6 with its exact silhouettes: the cells inside the
    sphere stay visible, the cells well outside its visual hull (the box corners) do not; a
    few wrong masks are tolerated with min_share < 1; bad arguments raise."""
    grid = ops.OccupancyGrid((-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), 16)
    size, f = 64, 80.0
    cams = torch.stack([_look_at((4 * math.cos(a), 0.8 * math.sin(3 * a), 4 * math.sin(a)))
                        for a in (2 * math.pi * k / 12 for k in range(12))])
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    pix = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)
    masks = []
    for c in cams:
        o, d = ops.generate_rays(c[:3], f, f, size / 2, size / 2, pix)
        d = d / d.norm(dim=-1, keepdim=True)
        closest = (o * d).sum(-1).neg()
        miss = (o + d * closest[:, None]).norm(dim=-1)
        masks.append((miss <= 0.6).reshape(size, size))
    masks = torch.stack(masks)
    bad = masks.clone()
    bad[0] = False                                   # one empty (wrong) mask
    centres = grid.cell_centers().view(16, 16, 16, 3)
    r = centres.norm(dim=-1)
    for m, share in ((masks, 1.0), (bad, 0.9)):
        g = ops.OccupancyGrid((-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), 16)
        left = g.mark_outside_masks(m, cams, (f, f, size / 2, size / 2), min_share=share,
                                    dilate_px=0)
        assert bool(g.visible[r < 0.6].all())
        assert not bool(g.visible[r > 1.3].any())           # corners of the box
        assert 0.1 < left < 0.6 and not bool(g.occupied[~g.visible].any())
    strict = ops.OccupancyGrid((-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), 16)
    strict.mark_outside_masks(bad, cams, (f, f, size / 2, size / 2), min_share=1.0)
    assert not bool(strict.visible[r < 0.6].any())   # the empty mask carves everything it sees
    for kw, match in ((dict(min_share=0.0), "min_share"), (dict(dilate_px=-1), "dilate_px")):
        with pytest.raises(ValueError, match=match):
            grid.mark_outside_masks(masks, cams, (f, f, 32.0, 32.0), **kw)
    with pytest.raises(ValueError, match="same T"):
        grid.mark_outside_masks(masks[:3], cams, (f, f, 32.0, 32.0))


def test_state_dict_round_trip():
    grid = ops.OccupancyGrid((-2.0, -2.0, -2.0, 2.0, 2.0, 2.0), 8, update_every=1)
    grid.update(0, lambda p: sphere_sigma(p, 1.0))
    state = grid.state_dict()
    assert set(state) == {"aabb", "ema", "occupied", "visible"}
    other = ops.OccupancyGrid(AABBS[0], 8)
    other.load_state_dict(state)
    assert torch.equal(other.occupied, grid.occupied) and torch.equal(other.ema, grid.ema)
    o, d, near, far = random_rays(64, (-2.0, -2.0, -2.0, 2.0, 2.0, 2.0), seed=4)
    for x, y in zip(other.march(o, d, near, far, 0.02), grid.march(o, d, near, far, 0.02)):
        assert torch.equal(x, y)
    with pytest.raises(RuntimeError, match="size mismatch"):
        ops.OccupancyGrid(AABBS[0], 16).load_state_dict(state)


@pytest.mark.parametrize("kwargs,match", [
    (dict(aabb=(0, 0, 0, 1, 1)), "6 numbers"),
    (dict(aabb=(0, 0, 0, 1, 0, 1)), "min < max"),
    (dict(aabb=AABBS[0], resolution=0), "resolution"),
    (dict(aabb=AABBS[0], update_every=0), "update_every"),
    (dict(aabb=AABBS[0], decay=1.5), "decay"),
])
def test_grid_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.OccupancyGrid(**kwargs)


def test_grid_bad_sigma_fn_and_cameras():
    grid = ops.OccupancyGrid(AABBS[0], 4, update_every=1)
    with pytest.raises(ValueError, match="one density per point"):
        grid.update(0, lambda p: torch.zeros(3))
    with pytest.raises(ValueError, match="camera_to_world must be"):
        grid.mark_invisible(torch.eye(4), (1.0, 1.0, 0.0, 0.0), (2, 2), 0.1, 1.0)
    with pytest.raises(ValueError, match="convention"):
        grid.mark_invisible(torch.eye(4)[None], (1.0, 1.0, 0.0, 0.0), (2, 2), 0.1, 1.0,
                            convention="blender")


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    aabb = (-1.5, -1.5, -2.0, 1.5, 1.5, 1.0)
    o, d, near, far = random_rays(4096, aabb, dtype=dtype, seed=9)
    occ = random_grid(64, 0.05, seed=10)
    jitter = torch.rand(4096, generator=torch.Generator().manual_seed(11), dtype=dtype)
    cpu = ops.march_rays(o, d, near, far, occ, aabb, 0.005, jitter=jitter)
    gpu = ops.march_rays(o.cuda(), d.cuda(), near.cuda(), far.cuda(), occ.cuda(), aabb, 0.005,
                         jitter=jitter.cuda())
    for a, b in zip(gpu, cpu):
        assert torch.equal(a.cpu(), b)  # correctly rounded arithmetic on both: bit for bit
    grid = ops.OccupancyGrid(aabb, 32, device="cuda")
    grid.update(0, lambda p: sphere_sigma(p, 0.8))
    assert grid.occupied.is_cuda and 0.0 < grid.fraction_occupied < 0.5
    with pytest.raises(ValueError, match="occupancy is on"):
        ops.march_rays(o, d, near, far, occ.cuda(), aabb, 0.005)
