"""Multiresolution hash encoding (Instant-NGP, Müller et al. 2022, Sec. 3) with fused kernels."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import as_tensor
from ._registry import OPS

__all__ = ["hash_encode", "HashGrid", "hash_grid_levels"]


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, embeddings, offsets, resolutions):
        out = OPS.hash_encode(x, embeddings, offsets, resolutions)
        ctx.save_for_backward(x, embeddings, offsets, resolutions)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, embeddings, offsets, resolutions = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            raise RuntimeError(
                "hash_encode has no gradient with respect to x (only to the embeddings); pass "
                "x.detach() if the coordinates do not need one")
        grad = None
        if ctx.needs_input_grad[1]:
            grad = OPS.hash_encode_backward(grad_out.contiguous(), x, embeddings, offsets,
                                            resolutions)
        return None, grad, None, None


def hash_encode(x, embeddings, offsets, resolutions):
    """Multiresolution hash encoding of points (Instant-NGP Sec. 3, Eq. 1-4 with tiny-cuda-nn's
    hash).

    Level l has ``R_l = resolutions[l]`` cells per side and owns the embedding rows
    ``offsets[l]:offsets[l+1]`` (``S_l`` rows). A point x (clamped into [0, 1]^D, so a point
    outside gets the value of the nearest border point) falls in cell
    ``c = min(floor(x R_l), R_l - 1)`` with multilinear weights ``w = x R_l - c`` over the 2^D
    corners. A corner vertex v maps to row ``v_0 + (R_l + 1) (v_1 + (R_l + 1) v_2)`` when the
    level is dense (``(R_l + 1)^D <= S_l``), else to
    ``(v_0 * 1 xor v_1 * 2654435761 xor v_2 * 805459861) mod S_l`` in uint32 arithmetic.
    ``out[:, l F:(l + 1) F]`` is level l's interpolated feature.

    Gradients flow to ``embeddings`` (CPU: levels in parallel, each level's scatter-add in point
    order: deterministic, no atomics; CUDA: atomic adds). There is none to ``x``: backward
    raises if x requires grad.

    Args:
        x: [N, D] float32/float64 coordinates in [0, 1], D = 2 or 3.
        embeddings: [P, F] of x's dtype and device, F in {1, 2, 4, 8}.
        offsets: int64 [L + 1], 0 = offsets[0] < ... < offsets[L] = P (read on the host: keep
            them on the CPU to avoid a device sync per call; :class:`HashGrid` does).
        resolutions: int64 [L], each in [1, 2^31).

    Returns:
        [N, L * F], x's dtype.

    Raises:
        TypeError: non-tensor inputs, wrong dtypes (float / int64) or mixed float dtypes.
        ValueError: wrong shapes, D or F not supported, offsets not increasing from 0 to P,
            resolutions < 1, NaN in x, inputs on different devices.
    """
    x = as_tensor("x", x).contiguous()
    embeddings = as_tensor("embeddings", embeddings).contiguous()
    offsets = as_tensor("offsets", offsets)
    resolutions = as_tensor("resolutions", resolutions)
    return _HashEncode.apply(x, embeddings, offsets, resolutions)


def hash_grid_levels(dims: int, n_levels: int, log2_table_size: int, base_resolution: int,
                     max_resolution: int):
    """Instant-NGP's level layout: resolutions growing geometrically from base to max,
    ``R_l = floor(base * b^l)`` with ``b = exp((ln max - ln base) / (L - 1))``, and table sizes
    ``S_l = min(2^T, (R_l + 1)^D)``. Returns (resolutions int64 [L], offsets int64 [L + 1])."""
    if n_levels > 1:
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    else:
        growth = 1.0
    # the small relative nudge keeps exact powers (the last level = max) from rounding down
    res = [min(max_resolution, int(math.floor(base_resolution * growth ** lvl * (1 + 1e-12))))
           for lvl in range(n_levels)]
    sizes = [min(2 ** log2_table_size, (r + 1) ** dims) for r in res]
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    return torch.tensor(res, dtype=torch.int64), torch.tensor(offsets, dtype=torch.int64)


class HashGrid(nn.Module):
    """A multiresolution hash grid (Instant-NGP Sec. 3) as a module: it owns the embeddings and
    encodes points with :func:`hash_encode`.

    Usage (a 3-D grid, or an ER-NeRF tri-plane of three 2-D grids)::

        grid = HashGrid(3)                       # 16 levels x 2 features, 2^19 table, 16..2048
        feat = grid(points_in_unit_cube)         # [N, 32], autograd to grid.embeddings
        planes = [HashGrid(2, 12, 1, 14, 64, 512) for _ in range(3)]
        feat = torch.cat([g(x[:, ax]) for g, ax in zip(planes, ([0, 1], [1, 2], [0, 2]))], -1)

    Map world points into [0, 1]^D yourself (e.g. ``(p - aabb_min) / (aabb_max - aabb_min)``);
    points outside are clamped to the border. Instant-NGP trains the embeddings with Adam
    (eps 1e-15) and no weight decay on them.

    Args:
        dims: D, 2 or 3.
        n_levels: L >= 1.
        features_per_level: F in {1, 2, 4, 8}.
        log2_table_size: T: at most 2^T rows per level (1..32).
        base_resolution, max_resolution: cells per side of the coarsest and finest level
            (1 <= base <= max).
        dtype, device: of the embeddings (uniform in +-1e-4, as Instant-NGP).

    Attributes:
        embeddings: nn.Parameter [P, F]. resolutions: int64 [L], offsets: int64 [L + 1] (CPU
        tensors, not buffers: they follow from the arguments and stay on the host, where the
        kernels read them). output_dim: L * F.

    Raises:
        ValueError: arguments out of range.
    """

    def __init__(self, dims: int, n_levels: int = 16, features_per_level: int = 2,
                 log2_table_size: int = 19, base_resolution: int = 16,
                 max_resolution: int = 2048, *, dtype: torch.dtype = torch.float32,
                 device=None):
        super().__init__()
        checks = [
            (dims in (2, 3), f"dims must be 2 or 3, got {dims!r}"),
            (isinstance(n_levels, int) and n_levels >= 1, f"n_levels must be an int >= 1, got {n_levels!r}"),
            (features_per_level in (1, 2, 4, 8),
             f"features_per_level must be 1, 2, 4 or 8, got {features_per_level!r}"),
            (isinstance(log2_table_size, int) and 1 <= log2_table_size <= 32,
             f"log2_table_size must be an int in [1, 32], got {log2_table_size!r}"),
            (isinstance(base_resolution, int) and isinstance(max_resolution, int)
             and 1 <= base_resolution <= max_resolution < 2 ** 31,
             "base_resolution and max_resolution must be ints with 1 <= base <= max < 2^31, got "
             f"{base_resolution!r} and {max_resolution!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dims, self.n_levels, self.features_per_level = dims, n_levels, features_per_level
        self.log2_table_size = log2_table_size
        self.base_resolution, self.max_resolution = base_resolution, max_resolution
        self.resolutions, self.offsets = hash_grid_levels(dims, n_levels, log2_table_size,
                                                          base_resolution, max_resolution)
        rows = int(self.offsets[-1])
        self.embeddings = nn.Parameter(
            torch.empty(rows, features_per_level, dtype=dtype, device=device).uniform_(-1e-4, 1e-4))

    @property
    def output_dim(self) -> int:
        return self.n_levels * self.features_per_level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] in [0, 1] -> features [..., L * F] in x's dtype (the embeddings are cast
        when their dtype differs; the gradient still reaches them)."""
        x = as_tensor("x", x)
        if x.dim() < 1 or x.shape[-1] != self.dims:
            raise ValueError(f"x must be [..., {self.dims}], got {list(x.shape)}")
        lead = x.shape[:-1]
        emb = self.embeddings
        if x.is_floating_point() and emb.dtype != x.dtype:
            emb = emb.to(x.dtype)
        out = hash_encode(x.reshape(-1, self.dims), emb, self.offsets, self.resolutions)
        return out.reshape(*lead, self.output_dim)

    def extra_repr(self) -> str:
        return (f"dims={self.dims}, n_levels={self.n_levels}, "
                f"features_per_level={self.features_per_level}, "
                f"log2_table_size={self.log2_table_size}, resolutions="
                f"{self.base_resolution}..{self.max_resolution}, "
                f"params={self.embeddings.numel()}")
