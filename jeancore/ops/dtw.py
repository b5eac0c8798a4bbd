"""Dynamic time warping with warping paths, batched (JEAN Sec. 3.2, Eq. 3)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._checks import as_tensor, check_floating
from ._registry import OPS

__all__ = ["DTWResult", "dtw", "align", "pairwise_cost", "STEP_PATTERNS", "METRICS"]

STEP_PATTERNS = {"symmetric2": 0, "symmetric1": 1}
METRICS = ("euclidean", "sqeuclidean", "cosine")


class DTWResult(NamedTuple):
    """Result of :func:`dtw`.

    distance: accumulated cost of the optimal path, [B] (0-d for unbatched input), dtype of x.
    normalized_distance: symmetric2: distance / (n + m) (as dtw-python's normalizedDistance);
        symmetric1: distance / path length (dtw-python leaves it undefined, NaN).
    paths: list of B int64 tensors [L_b, 2]: (index into x, index into y) from (0, 0) to
        (n_b - 1, m_b - 1), on the inputs' device.
    """

    distance: torch.Tensor
    normalized_distance: torch.Tensor
    paths: list


_METRIC_CODES = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}


def pairwise_cost(x: torch.Tensor, y: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Local cost matrix between frames, [B, N, D] x [B, M, D] -> [B, N, M], via matmul.

    euclidean: |x - y|; sqeuclidean: |x - y|^2 (from |x|^2 + |y|^2 - 2 x.y, clamped at 0);
    cosine: 1 - x.y / (|x| |y|) (zero vectors are treated as orthogonal to everything: cost 1).
    Same definitions as scipy.spatial.distance.cdist (used by dtw-python). Computed by the
    ``dtw_local_cost`` operator (one (b)addmm and in-place passes; on the CPU the pairs run in
    parallel, each on one BLAS thread).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    full_x = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)
    full_y = torch.full((y.shape[0],), y.shape[1], dtype=torch.int64)
    cost, _, _ = OPS.dtw_local_cost(x.contiguous(), y.contiguous(), full_x, full_y,
                                    _METRIC_CODES[metric])
    return cost.view(x.shape[0], x.shape[1], y.shape[1])


def _lengths(name: str, value, batch: int, full: int) -> torch.Tensor:
    if value is None:
        return torch.full((batch,), full, dtype=torch.int64)
    lengths = torch.as_tensor(value).to(device="cpu", dtype=torch.int64).reshape(-1)
    if lengths.shape[0] != batch:
        raise ValueError(f"{name} must have one length per pair ({batch}), got {lengths.shape[0]}")
    bad = (lengths < 1) | (lengths > full)
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}[{b}] = {int(lengths[b])} is outside [1, {full}] (the padded "
                         "length); sequences must have at least one frame")
    return lengths


def dtw(x, y, *, metric: str = "euclidean", step_pattern: str = "symmetric2", window=None,
        x_lengths=None, y_lengths=None) -> DTWResult:
    """Dynamic time warping of sequence pairs, with the optimal warping path.

    Accumulated cost (0-based) g[0,0] = d[0,0],
    g[i,j] = min(g[i-1,j-1] + w d[i,j], g[i,j-1] + d[i,j], g[i-1,j] + d[i,j]) with step pattern
    ``"symmetric2"`` (w = 2, normalisable by n + m) or ``"symmetric1"`` (w = 1), exactly as
    dtw-python; ties go to the first of (diagonal, (i, j-1), (i-1, j)), as dtw-python. The
    local cost d comes from :func:`pairwise_cost` (torch matmul); the dynamic programme and the
    backtracking run in the fused kernel (CPU: pairs in parallel; CUDA: anti-diagonal wavefront
    per pair, path backtracked on the device), accumulating in float64.

    Args:
        x: [B, N, D] or [N, D], float32/float64.
        y: [B, M, D] or [M, D] (batched exactly when x is), same dtype and device.
        metric: ``"euclidean"`` | ``"sqeuclidean"`` | ``"cosine"``.
        step_pattern: ``"symmetric2"`` | ``"symmetric1"``.
        window: None, or the Sakoe-Chiba radius r >= 0: only cells with |i - j| <= r
            (dtw-python's ``window_type="sakoechiba"``).
        x_lengths, y_lengths: valid lengths [B] of padded batches (int tensor or list); frames
            beyond them are ignored. Default: the full N and M.

    Returns:
        :class:`DTWResult` (distance, normalized_distance, paths).

    Raises:
        TypeError: non-tensor inputs, dtype not float32/float64.
        ValueError: shapes (ndim, batch, feature width), empty sequences, lengths out of range,
            unknown metric / step pattern, a negative window, a window narrower than
            |n - m| (no admissible path), or non-finite features that leave no finite path.
    """
    x = as_tensor("x", x)
    y = as_tensor("y", y)
    check_floating("x", x)
    check_floating("y", y)
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
    if x.dim() not in (2, 3) or y.dim() != x.dim():
        raise ValueError("x and y must both be [N, D] / [M, D] or both [B, N, D] / [B, M, D]; "
                         f"got {list(x.shape)} and {list(y.shape)}")
    unbatched = x.dim() == 2
    if unbatched:
        x, y = x[None], y[None]
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[2] != y.shape[2]:
        raise ValueError(f"x and y must have the same feature width D, got {x.shape[2]} and "
                         f"{y.shape[2]}")
    if x.shape[1] == 0 or y.shape[1] == 0:
        raise ValueError(f"sequences must have at least one frame, got {list(x.shape)} and "
                         f"{list(y.shape)}")
    if step_pattern not in STEP_PATTERNS:
        raise ValueError(f"step_pattern must be one of {list(STEP_PATTERNS)}, got {step_pattern!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if window is not None and (isinstance(window, bool) or int(window) != window or window < 0):
        raise ValueError(f"window (Sakoe-Chiba radius) must be None or an int >= 0, got {window!r}")
    batch = x.shape[0]
    xl = _lengths("x_lengths", x_lengths, batch, x.shape[1])
    yl = _lengths("y_lengths", y_lengths, batch, y.shape[1])
    if window is not None:
        gap = (xl - yl).abs()
        if bool((gap > window).any()):
            b = int((gap > window).nonzero()[0, 0])
            raise ValueError(
                f"window={window} admits no warping path for pair {b} with lengths "
                f"{int(xl[b])} and {int(yl[b])}: the Sakoe-Chiba radius must be at least the "
                f"length difference {int(gap[b])}")

    # Local costs in the packed layout of the dtw operator: pair b's cell (i, j) is
    # cost[offsets[b] + i * row_stride[b] + j]. CPU: one block per pair, [n_b, m_b] (no work or
    # memory spent on padding), the pairs in parallel; GPU: the padded batch from one batched
    # matmul (cheaper there than a loop).
    cost, offsets, row_stride = OPS.dtw_local_cost(x.contiguous(), y.contiguous(), xl, yl,
                                                   _METRIC_CODES[metric])
    dev = x.device
    distance, path, path_length = OPS.dtw(
        cost, offsets, row_stride, xl.to(dev), yl.to(dev),
        STEP_PATTERNS[step_pattern], -1 if window is None else int(window),
        int((xl + yl).max()) - 1)
    lengths = path_length.cpu()
    if bool((lengths == 0).any()):
        b = int((lengths == 0).nonzero()[0, 0])
        raise ValueError(
            f"pair {b} has no finite warping path: its features contain NaN or infinity "
            "(every local cost involving a non-finite frame is NaN/inf). Clean or drop those "
            "frames first")
    paths = [path[b, : int(lengths[b])] for b in range(batch)]
    if step_pattern == "symmetric2":
        norm = (xl + yl).to(torch.float64)
    else:
        norm = lengths.to(torch.float64)
    normalized = distance / norm.to(distance.device)
    distance, normalized = distance.to(x.dtype), normalized.to(x.dtype)
    if unbatched:
        distance, normalized = distance[0], normalized[0]
    return DTWResult(distance, normalized, paths)


def align(x, y, *, metric: str = "euclidean", step_pattern: str = "symmetric2", window=None):
    """Aligns two sequences along their DTW path (JEAN Eq. 3).

    Both sequences are resampled along the warping path to its length L:
    x_aligned[l] = x[path[l, 0]], y_aligned[l] = y[path[l, 1]].

    Args:
        x: [N, D], y: [M, D] (float32/float64, one device); metric, step_pattern, window as
            :func:`dtw`.

    Returns:
        (x_aligned [L, D], y_aligned [L, D], path [L, 2] int64), max(N, M) <= L <= N + M - 1.

    Raises:
        The errors of :func:`dtw`; ValueError for batched input.
    """
    x = as_tensor("x", x)
    y = as_tensor("y", y)
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(f"align takes single sequences [N, D] and [M, D], got {list(x.shape)} "
                         f"and {list(y.shape)}; use dtw() for batches")
    path = dtw(x, y, metric=metric, step_pattern=step_pattern, window=window).paths[0]
    return x[path[:, 0]], y[path[:, 1]], path
