"""hash_encode() / HashGrid: the fused kernels against the vectorised torch reference, known
answers of the level layout and the spatial hash, determinism, errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest
import torch

import jeancore.ops as ops
from jeancore.ops.reference import hash_encode_reference

from conftest import requires_cuda

PRIMES = (1, 2654435761, 805459861)


def make_levels(dims, resolutions, sizes):
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    return torch.tensor(offsets, dtype=torch.int64), torch.tensor(resolutions, dtype=torch.int64)


def points_with_edges(n, dims, resolutions, *, dtype=torch.float64, seed=0):
    """Random points in [-0.2, 1.2]^D, plus points exactly on cell borders of every level, the
    corners 0 and 1, and coordinates outside [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dims, generator=g, dtype=dtype) * 1.4 - 0.2
    borders = []
    for r in resolutions:
        k = torch.randint(0, r + 1, (8, dims), generator=g)
        borders.append(k.to(dtype) / r)
    fixed = torch.tensor([[0.0] * dims, [1.0] * dims, [-3.0] * dims, [7.0] * dims,
                          [0.5, -0.1, 1.5][:dims]], dtype=dtype)
    return torch.cat([x, *borders, fixed])


def both(x, emb, offsets, res, seed=1):
    """Outputs and embedding gradients (random cotangent) of the kernel and the reference."""
    results = []
    for fn in (ops.hash_encode, hash_encode_reference):
        e = emb.detach().clone().requires_grad_()
        out = fn(x, e, offsets, res)
        g = torch.Generator().manual_seed(seed)
        cot = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)
        (grad,) = torch.autograd.grad(out, e, cot)
        results.append((out.detach(), grad))
    return results


# dense and hashed levels in one grid: (R + 1)^D vs the table sizes
CASES = [
    (2, [3, 7, 40, 90], [16, 64, 1024, 1000]),        # dense, dense, hashed (2^10), hashed (mod 1000)
    (3, [2, 5, 12, 33], [27, 300, 2048, 5003]),       # dense, hashed, hashed 2^11, hashed prime
    (3, [1, 4, 16], [8, 125, 64]),                    # R = 1, dense exact fit, tiny hashed table
]


@pytest.mark.parametrize("features", [1, 2, 4, 8])
@pytest.mark.parametrize("dims,resolutions,sizes", CASES)
def test_matches_reference_float64(dims, resolutions, sizes, features):
    offsets, res = make_levels(dims, resolutions, sizes)
    g = torch.Generator().manual_seed(features)
    emb = torch.randn(int(offsets[-1]), features, generator=g, dtype=torch.float64)
    x = points_with_edges(500, dims, resolutions, seed=dims * features)
    (out, grad), (ref, ref_grad) = both(x, emb, offsets, res)
    assert out.shape == (x.shape[0], len(resolutions) * features)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dims", [2, 3])
def test_hash_grid_matches_reference_float32(dims):
    grid = ops.HashGrid(dims, n_levels=8, features_per_level=2, log2_table_size=12,
                        base_resolution=4, max_resolution=256)
    with torch.no_grad():
        grid.embeddings.normal_()
    x = points_with_edges(4000, dims, grid.resolutions.tolist(), dtype=torch.float32, seed=5)
    (out, grad), _ = both(x, grid.embeddings, grid.offsets, grid.resolutions)
    _, (ref, ref_grad) = both(x.double(), grid.embeddings.double(), grid.offsets, grid.resolutions)
    # float32 positions: x R is rounded to ~R * 6e-8 (1.5e-5 at R = 256) in the weights
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-4)


def test_gradcheck():
    offsets, res = make_levels(3, [2, 9], [27, 64])
    emb = torch.randn(int(offsets[-1]), 2, dtype=torch.float64, requires_grad=True)
    x = torch.rand(20, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda e: ops.hash_encode(x, e, offsets, res), (emb,))


def test_known_answers_of_the_index_formulas():
    """With embeddings[row] = row, a point on vertex v returns the row of v (weights 1/0):
    row-major for a dense level, tiny-cuda-nn's xor hash mod S for a hashed one (computed here
    with Python integers)."""
    dims = 3
    resolutions, sizes = [4, 20, 20], [125, 4096, 1000]
    offsets, res = make_levels(dims, resolutions, sizes)
    emb = torch.arange(int(offsets[-1]), dtype=torch.float64)[:, None]
    g = torch.Generator().manual_seed(3)
    for lvl, (r, s) in enumerate(zip(resolutions, sizes)):
        v = torch.randint(0, r + 1, (50, dims), generator=g)
        out = ops.hash_encode(v.double() / r, emb, offsets, res)[:, lvl]
        for vi, got in zip(v.tolist(), out.tolist()):
            if (r + 1) ** dims <= s:
                row = vi[0] + (r + 1) * (vi[1] + (r + 1) * vi[2])
            else:
                h = 0
                for a in range(dims):
                    h ^= (vi[a] * PRIMES[a]) & 0xFFFFFFFF
                row = h % s
            assert got == int(offsets[lvl]) + row


def test_interpolation_is_multilinear_and_clamped():
    """A dense 1-level grid of f(v) = a.v + b reproduces the affine function exactly inside
    [0, 1]^D and its border value outside."""
    dims, r = 3, 6
    offsets, res = make_levels(dims, [r], [(r + 1) ** dims])
    v = torch.stack(torch.meshgrid(*[torch.arange(r + 1)] * dims, indexing="ij"), -1)
    v = v.permute(2, 1, 0, 3).reshape(-1, dims).double()  # row-major: x fastest
    a = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    emb = (v / r @ a + 0.7)[:, None]
    x = torch.rand(300, dims, dtype=torch.float64) * 1.6 - 0.3
    out = ops.hash_encode(x, emb, offsets, res)[:, 0]
    torch.testing.assert_close(out, x.clamp(0, 1) @ a + 0.7, rtol=1e-12, atol=1e-12)


def test_zero_points_and_backward_determinism():
    grid = ops.HashGrid(3, n_levels=6, log2_table_size=10, base_resolution=4, max_resolution=64)
    out = grid(torch.zeros(0, 3))
    assert out.shape == (0, 12)
    (g0,) = torch.autograd.grad(out.sum(), grid.embeddings)
    assert torch.all(g0 == 0)
    x = torch.rand(20000, 3)
    cot = torch.randn(20000, 12)
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, max(threads, 2), max(threads, 2)):
            torch.set_num_threads(n)
            (g,) = torch.autograd.grad(grid(x), grid.embeddings, cot)
            grads.append(g)
        # with every core busy the kernels start fewer helpers (csrc/parallel.cpp
        # threads_for_load); the chunks, and so the sums, stay the same
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)]
        try:
            time.sleep(0.3)
            (g,) = torch.autograd.grad(grid(x), grid.embeddings, cot)
            grads.append(g)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_hash_grid_layout_and_module():
    grid = ops.HashGrid(3)  # Instant-NGP's 16 x 2, 2^19, 16 .. 2048
    res = grid.resolutions.tolist()
    assert res[0] == 16 and res[-1] == 2048 and len(res) == 16
    growth = math.exp(math.log(2048 / 16) / 15)
    assert res == [int(math.floor(16 * growth ** lvl * (1 + 1e-12))) for lvl in range(16)]
    sizes = (grid.offsets[1:] - grid.offsets[:-1]).tolist()
    assert sizes == [min(2 ** 19, (r + 1) ** 3) for r in res]
    assert sizes[0] == 17 ** 3 and sizes[-1] == 2 ** 19
    assert grid.embeddings.shape == (int(grid.offsets[-1]), 2)
    assert float(grid.embeddings.detach().abs().max()) <= 1e-4
    assert grid.output_dim == 32
    # ER-NeRF's tri-plane grids: 12 levels x 1 feature, 2^14, 64 .. 512
    plane = ops.HashGrid(2, 12, 1, 14, 64, 512)
    assert plane.resolutions[0] == 64 and plane.resolutions[-1] == 512
    x = torch.rand(5, 7, 2, dtype=torch.float64)
    out = plane(x)
    assert out.shape == (5, 7, 12) and out.dtype == torch.float64
    (g,) = torch.autograd.grad(out.sum(), plane.embeddings)
    assert g.dtype == torch.float32 and g.abs().sum() > 0
    ref = hash_encode_reference(x.reshape(-1, 2), plane.embeddings.double(), plane.offsets,
                                plane.resolutions)
    torch.testing.assert_close(out.reshape(-1, 12), ref)
    sd = plane.state_dict()
    assert list(sd) == ["embeddings"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(dims=4), "dims must be 2 or 3"),
    (dict(dims=3, n_levels=0), "n_levels"),
    (dict(dims=3, features_per_level=3), "features_per_level"),
    (dict(dims=3, log2_table_size=40), "log2_table_size"),
    (dict(dims=3, base_resolution=64, max_resolution=32), "base_resolution"),
])
def test_hash_grid_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ops.HashGrid(**kwargs)


def _inputs():
    offsets, res = make_levels(3, [2, 9], [27, 64])
    return [torch.rand(10, 3, dtype=torch.float64), torch.randn(91, 2, dtype=torch.float64),
            offsets, res]


@pytest.mark.parametrize("change,exc,match", [
    (lambda a: a.__setitem__(0, a[0].float()), TypeError, "dtype"),
    (lambda a: a.__setitem__(0, a[0].long()), TypeError, "x must be float32 or float64"),
    (lambda a: a.__setitem__(0, a[0][:, 0]), ValueError, "x must have 2 dimensions"),
    (lambda a: a.__setitem__(0, torch.rand(10, 4, dtype=torch.float64)), ValueError, "D = 2 or 3"),
    (lambda a: a.__setitem__(1, torch.randn(91, 3, dtype=torch.float64)), ValueError, r"F \(features per level\)"),
    (lambda a: a.__setitem__(1, a[1][:-1]), ValueError, "offsets must run from 0"),
    (lambda a: a.__setitem__(2, a[2].double()), TypeError, "offsets must be int64"),
    (lambda a: a.__setitem__(2, a[2][:-1]), ValueError, r"offsets must be \[L \+ 1\]"),
    (lambda a: a.__setitem__(2, torch.tensor([0, 27, 27, 91])), ValueError, r"offsets must be \[L \+ 1\]"),
    (lambda a: a.__setitem__(3, torch.tensor([2, 0])), ValueError, r"resolutions\[1\] must be in"),
    (lambda a: a.__setitem__(3, a[3].int()), TypeError, "resolutions must be int64"),
    (lambda a: a[0].__setitem__((3, 1), float("nan")), ValueError, r"x contains NaN \(first in row 3\)"),
    (lambda a: a.__setitem__(0, a[0].tolist()), TypeError, "x must be a torch.Tensor"),
])
def test_bad_input_errors(change, exc, match):
    args = _inputs()
    change(args)
    with pytest.raises(exc, match=match):
        ops.hash_encode(*args)


def test_offsets_not_increasing_and_gradient_to_x():
    x, emb, _, res = _inputs()
    with pytest.raises(ValueError, match="strictly increasing"):
        ops.hash_encode(x, emb, torch.tensor([0, 91, 91]), res)
    x.requires_grad_()
    out = ops.hash_encode(x, emb.requires_grad_(), *_inputs()[2:])
    with pytest.raises(RuntimeError, match="no gradient with respect to x"):
        out.sum().backward()


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dims, dtype):
    grid = ops.HashGrid(dims, n_levels=16, features_per_level=2, log2_table_size=14,
                        base_resolution=8, max_resolution=1024, dtype=dtype)
    with torch.no_grad():
        grid.embeddings.normal_()
    x = points_with_edges(1 << 16, dims, grid.resolutions.tolist(), dtype=dtype)
    (out, grad), _ = both(x, grid.embeddings, grid.offsets, grid.resolutions)
    (out_g, grad_g), _ = both(x.cuda(), grid.embeddings.cuda(), grid.offsets, grid.resolutions)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_g.cpu(), out, **tol)
    torch.testing.assert_close(grad_g.cpu(), grad, **(dict(rtol=1e-3, atol=1e-3)
                                                       if dtype == torch.float32 else tol))
    with pytest.raises(ValueError, match="NaN"):
        bad = x.cuda().clone()
        bad[7, 0] = float("nan")
        ops.hash_encode(bad, grid.embeddings.cuda(), grid.offsets, grid.resolutions)
