"""Pure-PyTorch (and NumPy, for DTW) reference implementations of every jeancore kernel.

These are the specifications the fused kernels are tested against (values and gradients):
written for clarity, as in NeRF / AD-NeRF, not for speed. Same arguments and semantics as the
fast ops in :mod:`jeancore.ops`, with the random numbers passed in explicitly (``jitter``, ``u``)
so both paths can be fed the same draws.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

__all__ = [
    "sample_along_rays_reference",
    "sample_pdf_reference",
    "composite_reference",
    "composite_packed_reference",
    "hash_encode_reference",
    "march_rays_reference",
    "dtw_reference",
]


def sample_along_rays_reference(rays_o, rays_d, near, far, n_samples, jitter=None):
    """NeRF's coarse sampling (``render_rays``, lindisp=False): returns (t [N,S], points [N,S,3]).

    jitter: optional uniforms [N, S] in [0, 1) for the stratified ("perturb") mode.
    """
    s = torch.linspace(0.0, 1.0, n_samples, dtype=rays_o.dtype, device=rays_o.device)
    z = near[:, None] * (1.0 - s) + far[:, None] * s
    if jitter is not None:
        mids = 0.5 * (z[:, 1:] + z[:, :-1])
        upper = torch.cat([mids, z[:, -1:]], dim=-1)
        lower = torch.cat([z[:, :1], mids], dim=-1)
        z = lower + (upper - lower) * jitter
    points = rays_o[:, None, :] + z[..., None] * rays_d[:, None, :]
    return z, points


def sample_pdf_reference(bins, weights, u):
    """NeRF's ``sample_pdf`` with the uniforms ``u`` ([n] or [N, n]) given."""
    weights = weights + 1e-5
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], -1)
    # The CDF is clamped to 1 and ends at exactly 1. NeRF leaves the float sum, which lands an
    # ulp either side of 1: the CDF can then decrease at its end, and the sample for u = 1 jumps
    # between the last bin edges.
    cdf = cdf.clamp(max=1.0)
    cdf[..., -1] = 1.0
    u = u.expand(cdf.shape[0], u.shape[-1]).contiguous()
    inds = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp(inds - 1, min=0)
    above = torch.clamp(inds, max=cdf.shape[-1] - 1)
    cdf_g0, cdf_g1 = torch.gather(cdf, 1, below), torch.gather(cdf, 1, above)
    bins_g0, bins_g1 = torch.gather(bins, 1, below), torch.gather(bins, 1, above)
    denom = cdf_g1 - cdf_g0
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    f = (u - cdf_g0) / denom
    return bins_g0 + f * (bins_g1 - bins_g0)


def composite_reference(sigma, rgb, t, rays_d, background, *, last_sample_is_background=True):
    """AD-NeRF's ``raw2outputs`` with densities already activated; see ``jeancore.ops.composite``.

    Returns (color [N,3], depth [N], opacity [N], weights [N,S]); differentiable by autograd.
    """
    n = sigma.shape[0]
    background = background.expand(n, 3)
    dt = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], 1e10)], dim=-1)
    delta = dt.clamp_min(0.0) * torch.linalg.vector_norm(rays_d, dim=-1, keepdim=True)
    alpha = 1.0 - torch.exp(-torch.relu(sigma) * delta)
    if last_sample_is_background:
        alpha = torch.cat([alpha[:, :-1], torch.ones_like(alpha[:, :1])], dim=-1)
        rgb = torch.cat([rgb[:, :-1], background[:, None, :]], dim=1)
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], dim=-1), dim=-1)
    weights = alpha * transmittance
    color = torch.sum(weights[..., None] * rgb, dim=1)
    depth = torch.sum(weights * t, dim=-1)
    if last_sample_is_background:
        opacity = torch.sum(weights[:, :-1], dim=-1)
    else:
        opacity = torch.sum(weights, dim=-1)
        color = color + (1.0 - opacity)[:, None] * background
    return color, depth, opacity, weights


def composite_packed_reference(sigma, rgb, t_starts, t_ends, ray_indices, n_rays, *,
                               background=None, early_stop=0.0):
    """``jeancore.ops.composite_packed`` through a padded [n_rays, S_max] layout and NeRF's
    cumulative-product formulas. Returns (color [N,3], opacity [N], depth [N], weights [M]);
    differentiable by autograd."""
    m = sigma.shape[0]
    counts = torch.bincount(ray_indices, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(m, device=sigma.device) - starts[ray_indices]  # index within the ray
    s_max = int(counts.max()) if n_rays > 0 and m > 0 else 0

    def padded(values, fill=0.0):
        out = values.new_full((n_rays, s_max) + tuple(values.shape[1:]), fill)
        return out.index_put((ray_indices, pos), values)

    delta = padded((t_ends - t_starts).clamp_min(0.0))
    alpha = 1.0 - torch.exp(-torch.relu(padded(sigma)) * delta)
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], dim=-1), dim=-1)
    weights = alpha * transmittance
    if early_stop > 0.0:  # drop every sample after the transmittance fell below early_stop
        weights = torch.where(transmittance >= early_stop, weights, torch.zeros_like(weights))
    mid = padded(0.5 * (t_starts + t_ends))
    color = torch.sum(weights[..., None] * padded(rgb), dim=1)
    opacity = torch.sum(weights, dim=-1)
    depth = torch.sum(weights * mid, dim=-1)
    if background is not None:
        color = color + (1.0 - opacity)[:, None] * background.expand(n_rays, 3)
    return color, opacity, depth, weights[ray_indices, pos]


_HASH_PRIMES = (1, 2654435761, 805459861)


def hash_encode_reference(x, embeddings, offsets, resolutions):
    """``jeancore.ops.hash_encode`` (Instant-NGP's multiresolution hash encoding) written with
    vectorised torch ops, one level at a time: all 2^D corners of all points at once, one
    gather from the level's rows; autograd gives the gradient to ``embeddings``.

    x [N, D] (clamped into [0, 1]), embeddings [P, F], offsets [L + 1], resolutions [L] ->
    [N, L * F].
    """
    n, dims = x.shape
    x = x.clamp(0.0, 1.0)
    corners = torch.tensor(list(itertools.product((0, 1), repeat=dims)), device=x.device)
    corners = corners.flip(-1)  # corner b has bit a = coordinate a (as the kernels count them)
    outs = []
    for lvl in range(resolutions.shape[0]):
        res = int(resolutions[lvl])
        first, size = int(offsets[lvl]), int(offsets[lvl + 1]) - int(offsets[lvl])
        p = x * res
        cell = p.floor().clamp(max=res - 1)
        w = p - cell
        v = cell.long()[:, None, :] + corners[None]  # [N, 2^D, D] vertex coordinates
        weight = torch.where(corners[None].bool(), w[:, None, :], 1.0 - w[:, None, :]).prod(-1)
        if (res + 1) ** dims <= size:  # dense, row-major
            row = v[..., dims - 1]
            for a in range(dims - 2, -1, -1):
                row = row * (res + 1) + v[..., a]
        else:  # spatial hash in uint32 arithmetic, then mod the table size
            h = torch.zeros_like(v[..., 0])
            for a in range(dims):
                h = h ^ ((v[..., a] * _HASH_PRIMES[a]) & 0xFFFFFFFF)
            row = h % size
        feats = embeddings[first + row]  # [N, 2^D, F]
        outs.append((weight[..., None] * feats).sum(1))
    return torch.cat(outs, dim=-1) if outs else x.new_zeros((n, 0))


def march_rays_reference(rays_o, rays_d, near, far, occupancy, aabb, step_size, jitter=None):
    """The brute-force definition of ``jeancore.ops.march_rays``: every candidate interval of
    every ray is generated and tested, with the same operations in the same order (so the
    samples are identical). near, far: [N] or numbers; jitter: [N] or None; aabb: 6 numbers.
    Memory is N x (max candidates per ray): for tests, not for training."""
    from ._checks import per_ray  # the same broadcasting as the op

    dtype, dev = rays_o.dtype, rays_o.device
    n, res = rays_o.shape[0], occupancy.shape[0]
    near, far = per_ray("near", near, rays_o, n), per_ray("far", far, rays_o, n)
    step = torch.tensor(step_size, dtype=dtype, device=dev)
    jitter = torch.zeros(n, dtype=dtype, device=dev) if jitter is None else jitter
    k_max = int(torch.ceil((far - near).max() / step_size).item()) + 2 if n else 0
    k = torch.arange(max(k_max, 0), device=dev).to(dtype)
    ts = near[:, None] + (k[None, :] + jitter[:, None]) * step
    te = ts + step
    mid = (ts + te) * 0.5
    p = rays_o[:, None, :] + rays_d[:, None, :] * mid[..., None]
    box = torch.tensor(list(aabb), dtype=dtype, device=dev)
    lo, hi = box[:3], box[3:]
    inside = ((p >= lo) & (p <= hi)).all(-1)
    scale = torch.tensor(float(res), dtype=dtype, device=dev) / (hi - lo)
    cell = ((p - lo) * scale).floor().clamp(0, res - 1).long()
    occupied = occupancy[cell[..., 0], cell[..., 1], cell[..., 2]]
    keep = (te <= far[:, None]) & inside & occupied
    ray, kk = keep.nonzero(as_tuple=True)  # row-major: sorted by ray, then by k
    return ray, ts[ray, kk], te[ray, kk]


def _local_cost(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    diff = x[:, None, :] - y[None, :, :]
    if metric == "euclidean":
        return np.sqrt((diff * diff).sum(-1))
    if metric == "sqeuclidean":
        return (diff * diff).sum(-1)
    if metric == "cosine":
        nx = np.linalg.norm(x, axis=-1)[:, None]
        ny = np.linalg.norm(y, axis=-1)[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (x @ y.T) / (nx * ny)
        return 1.0 - np.where(np.isfinite(cos), cos, 0.0)
    raise ValueError(f"unknown metric {metric!r}")


def dtw_reference(x, y, *, metric="euclidean", step_pattern="symmetric2", window=None,
                  x_lengths=None, y_lengths=None):
    """Plain-loop NumPy DTW with the same arguments and result as ``jeancore.ops.dtw``."""
    from .dtw import DTWResult  # local import: the result type only

    xs = np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float64)
    ys = np.asarray(torch.as_tensor(y).detach().cpu(), dtype=np.float64)
    unbatched = xs.ndim == 2
    if unbatched:
        xs, ys = xs[None], ys[None]
    w_diag = {"symmetric2": 2.0, "symmetric1": 1.0}[step_pattern]
    dists, norms, paths = [], [], []
    for b in range(xs.shape[0]):
        n = xs.shape[1] if x_lengths is None else int(x_lengths[b])
        m = ys.shape[1] if y_lengths is None else int(y_lengths[b])
        d = _local_cost(xs[b, :n], ys[b, :m], metric)
        g = np.full((n, m), np.inf)
        step = np.full((n, m), -1, dtype=np.int64)
        for i in range(n):
            for j in range(m):
                if window is not None and abs(i - j) > window:
                    continue
                if i == 0 and j == 0:
                    g[0, 0] = d[0, 0]
                    continue
                candidates = (
                    g[i - 1, j - 1] + w_diag * d[i, j] if i > 0 and j > 0 else np.inf,
                    g[i, j - 1] + d[i, j] if j > 0 else np.inf,
                    g[i - 1, j] + d[i, j] if i > 0 else np.inf,
                )
                best = np.inf
                for k, c in enumerate(candidates):  # first strict minimum, as dtw-python
                    if c < best:
                        best, step[i, j] = c, k
                g[i, j] = best
        i, j, path = n - 1, m - 1, [(n - 1, m - 1)]
        while (i, j) != (0, 0):
            k = step[i, j]
            i, j = (i - 1, j - 1) if k == 0 else (i, j - 1) if k == 1 else (i - 1, j)
            path.append((i, j))
        path = np.array(path[::-1], dtype=np.int64)
        dists.append(g[n - 1, m - 1])
        norms.append(g[n - 1, m - 1] / ((n + m) if step_pattern == "symmetric2" else len(path)))
        paths.append(torch.from_numpy(path))
    dtype = torch.as_tensor(x).dtype
    distance = torch.tensor(dists, dtype=dtype)
    normalized = torch.tensor(norms, dtype=dtype)
    if unbatched:
        distance, normalized = distance[0], normalized[0]
    return DTWResult(distance, normalized, paths)


def fine_samples_reference(t_coarse, weights, u):
    """NeRF's hierarchical sampling step (``jeancore.ops.fine_samples``) with the uniforms
    ``u`` ([n] or [N, n], e.g. from ``jeancore.ops.pdf.inverse_transform_uniforms``) given:
    bins at the midpoints of the coarse depths, the PDF of ``weights[:, 1:-1]``, the new depths
    merged with the coarse ones. Returns t [N, S + n], sorted; no gradient flows (depths are
    samples)."""
    t_coarse, weights = t_coarse.detach(), weights.detach()
    mids = 0.5 * (t_coarse[:, 1:] + t_coarse[:, :-1])
    t_fine = sample_pdf_reference(mids, weights[:, 1:-1], u)
    return torch.sort(torch.cat([t_coarse, t_fine], -1), -1).values
