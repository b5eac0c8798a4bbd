"""Tests of the DTW op (``jeancore.ops.dtw`` / ``align`` / ``dtw_reference``).

The ground truth is dtw-python (``import dtw``), which the API documents itself against:
distances, normalized distances and warping paths (``index1``, ``index2``) must agree with it for
both step patterns (symmetric2, symmetric1), all three metrics (euclidean, sqeuclidean, cosine),
with and without a Sakoe-Chiba window, for unequal and single-element lengths; padded batches must
give per pair what the unpadded call gives; the real-speech test checks that the path recovers a
known time warp of log-mel features.

Inputs are fresh random data from seeded numpy Generators (the seed is derived from the test
parameters, so every case is reproducible and different from its neighbours).
"""
from __future__ import annotations

import os
import pathlib
import zlib

import numpy as np
import pytest
import scipy.spatial.distance
import torch

import dtw as dtwpy  # dtw-python: the reference implementation

import jeancore.ops as jops
from jeancore.ops import DTWResult, align, dtw
from jeancore.ops.reference import dtw_reference

REPO = pathlib.Path(__file__).resolve().parents[1]
STEP = {"symmetric2": dtwpy.symmetric2, "symmetric1": dtwpy.symmetric1}
METRICS = ("euclidean", "sqeuclidean", "cosine")
PATTERNS = ("symmetric2", "symmetric1")

# Unequal lengths both ways, single elements, square (a pair longer than 1024 frames, a common
# CUDA block size, is in test_long_pair_matches_dtw_python).
SIZES = [(1, 1), (1, 7), (7, 1), (6, 6), (12, 9), (9, 12), (31, 47), (64, 40)]
# window spec: None, "diff" (= |N-M| exactly: the narrowest admissible radius), "diff+3",
# "big" (wider than both sequences: must equal no window)
WINDOWS = [None, "diff", "diff+3", "big"]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _seed(*params) -> int:
    return zlib.crc32(repr(params).encode())


def _rng(*params) -> np.random.Generator:
    return np.random.default_rng(_seed(*params))


def _np(v) -> np.ndarray:
    """Tensor / array / scalar -> numpy (CPU)."""
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def _window(spec, n: int, m: int):
    if spec is None:
        return None
    if spec == "diff":
        return abs(n - m)
    if spec == "diff+3":
        return abs(n - m) + 3
    if spec == "big":
        return max(n, m) + 5
    return int(spec)


def _dtwpy(x, y, metric, step_pattern, window):
    """dtw-python on the same values (cast to float64 exactly) -> (distance, normalized, path [L,2])."""
    kw = {}
    if window is not None:
        kw = dict(window_type="sakoechiba", window_args={"window_size": int(window)})
    a = dtwpy.dtw(np.asarray(_np(x), dtype=np.float64), np.asarray(_np(y), dtype=np.float64),
                  dist_method=metric, step_pattern=STEP[step_pattern], keep_internals=False, **kw)
    path = np.stack([np.asarray(a.index1), np.asarray(a.index2)], axis=1).astype(np.int64)
    return float(a.distance), float(a.normalizedDistance), path


def _features(rng, n, d, metric, dtype=np.float64):
    x = rng.normal(size=(n, d))
    if metric == "cosine":
        x = x + 0.25  # keep vectors away from zero (cosine of a zero vector is undefined)
    return x.astype(dtype)


def _check_path_valid(path: np.ndarray, n: int, m: int, window=None) -> None:
    assert path.ndim == 2 and path.shape[1] == 2, path.shape
    assert max(n, m) <= path.shape[0] <= n + m - 1, (path.shape, n, m)
    assert tuple(path[0]) == (0, 0), path[0]
    assert tuple(path[-1]) == (n - 1, m - 1), (path[-1], n, m)
    steps = np.diff(path, axis=0)
    ok = {(1, 1), (1, 0), (0, 1)}
    bad = [tuple(s) for s in steps if tuple(s) not in ok]
    assert not bad, f"illegal steps {bad[:5]}"
    if window is not None:
        assert np.all(np.abs(path[:, 0] - path[:, 1]) <= window), "path leaves the Sakoe-Chiba band"


def _path_cost(local: np.ndarray, path: np.ndarray, step_pattern: str) -> float:
    """Cost of a path under the step pattern (symmetric2: diagonal steps weigh 2)."""
    d = local[path[:, 0], path[:, 1]]
    if step_pattern == "symmetric1" or len(path) == 1:
        return float(d.sum())
    diag = np.all(np.diff(path, axis=0) == 1, axis=1)
    w = np.where(diag, 2.0, 1.0)
    return float(d[0] + (w * d[1:]).sum())


def _assert_path_equal_or_tied(got, exp, x, y, metric, step_pattern, rtol):
    """Exact equality with dtw-python's path, unless (float32 only) the two paths are equally
    optimal to within float32 rounding: then the difference is a near-tie decided by rounding, not
    a bug. The returned path must still be a valid path."""
    if got.shape == exp.shape and np.array_equal(got, exp):
        return
    local = scipy.spatial.distance.cdist(np.asarray(x, np.float64), np.asarray(y, np.float64), metric)
    _check_path_valid(got, local.shape[0], local.shape[1])
    c_got = _path_cost(local, got, step_pattern)
    c_exp = _path_cost(local, exp, step_pattern)
    assert c_got <= c_exp * (1 + rtol) + 1e-6, (
        f"path differs from dtw-python and is not equally optimal: cost {c_got} vs {c_exp}")


def _check_result_types(res, batch, dtype):
    assert isinstance(res, DTWResult)
    assert isinstance(res.distance, torch.Tensor) and isinstance(res.normalized_distance, torch.Tensor)
    assert res.distance.dtype == dtype and res.normalized_distance.dtype == dtype
    if batch is None:
        assert res.distance.shape == () and res.normalized_distance.shape == ()
        assert isinstance(res.paths, list) and len(res.paths) == 1
    else:
        assert tuple(res.distance.shape) == (batch,) and tuple(res.normalized_distance.shape) == (batch,)
        assert isinstance(res.paths, list) and len(res.paths) == batch
    for p in res.paths:
        assert isinstance(p, torch.Tensor) and p.dtype == torch.int64 and p.ndim == 2 and p.shape[1] == 2


def _media_dir() -> pathlib.Path:
    media = pathlib.Path(os.environ.get("JEAN_MEDIA", REPO.parent / "shared" / "media"))
    if not media.is_dir():
        pytest.fail(f"media folder {media} not found: set JEAN_MEDIA to the shared media folder "
                    f"(it must hold audio/radio31_8s_en.wav); these tests never skip for missing media")
    return media


# ------------------------------------------------------------------------------------------------
# 1. against dtw-python
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step_pattern", PATTERNS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n,m", SIZES)
@pytest.mark.parametrize("wspec", WINDOWS)
def test_matches_dtw_python_float64(n, m, metric, step_pattern, wspec):
    rng = _rng("f64", n, m, metric, step_pattern, wspec)
    d = int(rng.integers(2, 9))
    x = _features(rng, n, d, metric)
    y = _features(rng, m, d, metric)
    window = _window(wspec, n, m)
    exp_dist, exp_norm, exp_path = _dtwpy(x, y, metric, step_pattern, window)

    res = dtw(torch.from_numpy(x), torch.from_numpy(y), metric=metric, step_pattern=step_pattern,
              window=window)
    _check_result_types(res, None, torch.float64)
    got_path = _np(res.paths[0])
    np.testing.assert_allclose(float(res.distance), exp_dist, rtol=1e-9, atol=1e-12)
    if step_pattern == "symmetric2":
        np.testing.assert_allclose(float(res.normalized_distance), exp_norm, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(res.normalized_distance), exp_dist / (n + m), rtol=1e-12)
    else:
        # dtw-python gives NaN here; ours is documented as distance / path length
        assert np.isnan(exp_norm)
        np.testing.assert_allclose(float(res.normalized_distance), exp_dist / len(got_path),
                                   rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got_path, exp_path)
    _check_path_valid(got_path, n, m, window)


@pytest.mark.parametrize("step_pattern", PATTERNS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n,m,wspec", [(1, 1, None), (1, 9, None), (8, 1, "diff"), (20, 20, None),
                                       (20, 20, 0), (33, 25, "diff"), (25, 33, "diff+3"),
                                       (80, 57, None)])
def test_matches_dtw_python_float32(n, m, wspec, metric, step_pattern):
    rng = _rng("f32", n, m, metric, step_pattern, wspec)
    x = _features(rng, n, 16, metric, np.float32)
    y = _features(rng, m, 16, metric, np.float32)
    window = _window(wspec, n, m)
    exp_dist, exp_norm, exp_path = _dtwpy(x, y, metric, step_pattern, window)

    res = dtw(torch.from_numpy(x), torch.from_numpy(y), metric=metric, step_pattern=step_pattern,
              window=window)
    _check_result_types(res, None, torch.float32)
    np.testing.assert_allclose(float(res.distance), exp_dist, rtol=1e-4, atol=1e-4)
    if step_pattern == "symmetric2":
        np.testing.assert_allclose(float(res.normalized_distance), exp_norm, rtol=1e-4, atol=1e-5)
    got_path = _np(res.paths[0])
    _check_path_valid(got_path, n, m, window)
    _assert_path_equal_or_tied(got_path, exp_path, x, y, metric, step_pattern, rtol=1e-5)


@pytest.mark.parametrize("step_pattern", PATTERNS)
def test_long_pair_matches_dtw_python(step_pattern):
    # longer than 1024 frames in both sequences, plus a window
    rng = _rng("long", step_pattern)
    n, m = 1500, 1300
    x, y = _features(rng, n, 8, "euclidean"), _features(rng, m, 8, "euclidean")
    for window in (None, 260):
        exp_dist, exp_norm, exp_path = _dtwpy(x, y, "euclidean", step_pattern, window)
        res = dtw(torch.from_numpy(x), torch.from_numpy(y), step_pattern=step_pattern, window=window)
        np.testing.assert_allclose(float(res.distance), exp_dist, rtol=1e-9)
        np.testing.assert_array_equal(_np(res.paths[0]), exp_path)


@pytest.mark.parametrize("step_pattern", PATTERNS)
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_defaults_and_feature_widths(step_pattern, metric):
    # D = 1 and a wide D = 200; defaults are metric="euclidean", step_pattern="symmetric2"
    for d in (1, 200):
        rng = _rng("width", d, metric, step_pattern)
        x, y = rng.normal(size=(17, d)), rng.normal(size=(23, d))
        exp_dist, _, exp_path = _dtwpy(x, y, metric, step_pattern, None)
        res = dtw(torch.from_numpy(x), torch.from_numpy(y), metric=metric, step_pattern=step_pattern)
        np.testing.assert_allclose(float(res.distance), exp_dist, rtol=1e-9)
        np.testing.assert_array_equal(_np(res.paths[0]), exp_path)
    rng = _rng("defaults")
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(14, 3))
    exp_dist, exp_norm, exp_path = _dtwpy(x, y, "euclidean", "symmetric2", None)
    res = dtw(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(float(res.distance), exp_dist, rtol=1e-9)
    np.testing.assert_allclose(float(res.normalized_distance), exp_norm, rtol=1e-9)
    np.testing.assert_array_equal(_np(res.paths[0]), exp_path)


@pytest.mark.parametrize("step_pattern", PATTERNS)
@pytest.mark.parametrize("seed", range(6))
def test_tie_breaking_matches_dtw_python(step_pattern, seed):
    # Small-integer features with sqeuclidean cost: all local and accumulated costs are small
    # integers (exact in float64), so ties are frequent and exact; the path must break them
    # exactly as dtw-python does.
    rng = _rng("ties", step_pattern, seed)
    n, m = int(rng.integers(1, 25)), int(rng.integers(1, 25))
    x = rng.integers(0, 3, size=(n, 2)).astype(np.float64)
    y = rng.integers(0, 3, size=(m, 2)).astype(np.float64)
    for window in (None, abs(n - m) + 1):
        exp_dist, _, exp_path = _dtwpy(x, y, "sqeuclidean", step_pattern, window)
        res = dtw(torch.from_numpy(x), torch.from_numpy(y), metric="sqeuclidean",
                  step_pattern=step_pattern, window=window)
        assert float(res.distance) == exp_dist
        np.testing.assert_array_equal(_np(res.paths[0]), exp_path)


@pytest.mark.parametrize("step_pattern", PATTERNS)
def test_all_zero_cost_ties(step_pattern):
    # every cell costs 0: the path is decided by tie-breaking alone
    x, y = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(5, 2, dtype=torch.float64)
    _, _, exp_path = _dtwpy(x, y, "euclidean", step_pattern, None)
    res = dtw(x, y, step_pattern=step_pattern)
    assert float(res.distance) == 0.0
    np.testing.assert_array_equal(_np(res.paths[0]), exp_path)
    res = dtw(y, x, step_pattern=step_pattern)
    _, _, exp_path = _dtwpy(y, x, "euclidean", step_pattern, None)
    np.testing.assert_array_equal(_np(res.paths[0]), exp_path)


def test_non_contiguous_inputs():
    rng = _rng("noncontig")
    xb = torch.from_numpy(rng.normal(size=(3, 40, 10)))
    yb = torch.from_numpy(rng.normal(size=(3, 10, 30)))
    x = xb[:, ::2, ::2]          # [3, 20, 5], strided
    y = yb.transpose(1, 2)[:, 1::2, :5]  # [3, 15, 5], transposed + strided
    assert not x.is_contiguous() and not y.is_contiguous()
    res = dtw(x, y)
    for b in range(3):
        exp_dist, _, exp_path = _dtwpy(x[b].numpy(), y[b].numpy(), "euclidean", "symmetric2", None)
        np.testing.assert_allclose(float(res.distance[b]), exp_dist, rtol=1e-9)
        np.testing.assert_array_equal(_np(res.paths[b]), exp_path)


# ------------------------------------------------------------------------------------------------
# 2. padded batches
# ------------------------------------------------------------------------------------------------
def _padded_batch(rng, lengths_x, lengths_y, d, dtype, metric, pad="garbage", extra=3):
    """Pairs of the given lengths padded to max+extra; the padding is filled with junk."""
    b = len(lengths_x)
    nmax, mmax = max(lengths_x) + extra, max(lengths_y) + extra
    xs = [_features(rng, n, d, metric, dtype) for n in lengths_x]
    ys = [_features(rng, m, d, metric, dtype) for m in lengths_y]

    def fill(shape):
        if pad == "garbage":   # large, varied values: would dominate any cost they leak into
            return (rng.normal(size=shape) * 1e6 + 3e6).astype(dtype)
        if pad == "nonfinite":  # NaN / +-inf: would poison any cost they leak into
            v = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=shape)
            return v.astype(dtype)
        raise ValueError(pad)

    xp = fill((b, nmax, d))
    yp = fill((b, mmax, d))
    for i in range(b):
        xp[i, :lengths_x[i]] = xs[i]
        yp[i, :lengths_y[i]] = ys[i]
    return xs, ys, torch.from_numpy(xp), torch.from_numpy(yp)


@pytest.mark.parametrize("step_pattern", PATTERNS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_padded_batch_matches_single_and_dtw_python(dtype, metric, step_pattern):
    rng = _rng("batch", np.dtype(dtype).name, metric, step_pattern)
    lx = [1, 5, 30, 17, 42, 9, 26]
    ly = [4, 1, 22, 17, 35, 31, 26]
    xs, ys, xp, yp = _padded_batch(rng, lx, ly, 6, dtype, metric)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    window_all = max(abs(a - b) for a, b in zip(lx, ly)) + 1
    for window in (None, window_all):
        res = dtw(xp, yp, metric=metric, step_pattern=step_pattern, window=window,
                  x_lengths=torch.tensor(lx, dtype=torch.int64), y_lengths=torch.tensor(ly, dtype=torch.int64))
        _check_result_types(res, len(lx), tdtype)
        for b in range(len(lx)):
            single = dtw(torch.from_numpy(xs[b]), torch.from_numpy(ys[b]), metric=metric,
                         step_pattern=step_pattern, window=window)
            # batched == unpadded single-pair call
            np.testing.assert_array_equal(_np(res.paths[b]), _np(single.paths[0]))
            np.testing.assert_allclose(float(res.distance[b]), float(single.distance),
                                       rtol=1e-12 if dtype == np.float64 else 1e-6)
            np.testing.assert_allclose(float(res.normalized_distance[b]),
                                       float(single.normalized_distance),
                                       rtol=1e-12 if dtype == np.float64 else 1e-6)
            # ... == dtw-python
            exp_dist, exp_norm, exp_path = _dtwpy(xs[b], ys[b], metric, step_pattern, window)
            np.testing.assert_allclose(float(res.distance[b]), exp_dist, rtol=rtol, atol=rtol)
            if step_pattern == "symmetric2":
                np.testing.assert_allclose(float(res.normalized_distance[b]), exp_norm, rtol=rtol, atol=rtol)
            got = _np(res.paths[b])
            _check_path_valid(got, lx[b], ly[b], window)
            if dtype == np.float64:
                np.testing.assert_array_equal(got, exp_path)
            else:
                _assert_path_equal_or_tied(got, exp_path, xs[b], ys[b], metric, step_pattern, rtol=1e-5)


def test_padding_values_do_not_matter():
    # the same valid data with two different paddings (huge garbage; NaN/inf) gives identical results
    rng = _rng("padding")
    lx, ly = [12, 3, 20, 7], [9, 14, 20, 1]
    xs, ys, xp, yp = _padded_batch(rng, lx, ly, 4, np.float64, "euclidean", pad="garbage")
    xz, yz = xp.clone(), yp.clone()
    for b in range(len(lx)):
        xz[b, lx[b]:] = 0.0
        yz[b, ly[b]:] = 0.0
    xn, yn = xp.clone(), yp.clone()
    for b in range(len(lx)):
        xn[b, lx[b]:] = float("nan")
        yn[b, ly[b]:] = float("inf")
    for metric in METRICS:
        kw = dict(metric=metric, x_lengths=lx, y_lengths=ly)  # lengths as Python lists
        ref = dtw(xz, yz, **kw)
        for xq, yq in ((xp, yp), (xn, yn)):
            res = dtw(xq, yq, **kw)
            assert torch.isfinite(res.distance).all(), (metric, res.distance)
            torch.testing.assert_close(res.distance, ref.distance, rtol=1e-12, atol=0)
            torch.testing.assert_close(res.normalized_distance, ref.normalized_distance, rtol=1e-12, atol=0)
            for p, q in zip(res.paths, ref.paths):
                np.testing.assert_array_equal(_np(p), _np(q))


def test_nonfinite_padding_float32():
    rng = _rng("nonfinite32")
    lx, ly = [5, 18, 11], [16, 2, 11]
    xs, ys, xp, yp = _padded_batch(rng, lx, ly, 8, np.float32, "cosine", pad="nonfinite")
    res = dtw(xp, yp, metric="cosine", x_lengths=torch.tensor(lx), y_lengths=torch.tensor(ly))
    for b in range(len(lx)):
        single = dtw(torch.from_numpy(xs[b]), torch.from_numpy(ys[b]), metric="cosine")
        np.testing.assert_allclose(float(res.distance[b]), float(single.distance), rtol=1e-6)
        np.testing.assert_array_equal(_np(res.paths[b]), _np(single.paths[0]))


def test_one_sided_lengths_and_full_lengths():
    rng = _rng("onesided")
    x = torch.from_numpy(rng.normal(size=(3, 15, 4)))
    y = torch.from_numpy(rng.normal(size=(3, 11, 4)))
    full = dtw(x, y)
    same = dtw(x, y, x_lengths=torch.tensor([15, 15, 15]), y_lengths=[11, 11, 11])
    torch.testing.assert_close(full.distance, same.distance, rtol=1e-12, atol=0)
    for p, q in zip(full.paths, same.paths):
        np.testing.assert_array_equal(_np(p), _np(q))
    # only y_lengths: x is used in full
    ly = [11, 4, 1]
    res = dtw(x, y, y_lengths=torch.tensor(ly))
    for b in range(3):
        exp_dist, exp_norm, exp_path = _dtwpy(x[b].numpy(), y[b, :ly[b]].numpy(), "euclidean",
                                              "symmetric2", None)
        np.testing.assert_allclose(float(res.distance[b]), exp_dist, rtol=1e-9)
        np.testing.assert_allclose(float(res.normalized_distance[b]), exp_norm, rtol=1e-9)
        np.testing.assert_array_equal(_np(res.paths[b]), exp_path)
    # only x_lengths
    lx = [2, 15, 9]
    res = dtw(x, y, x_lengths=lx)
    for b in range(3):
        exp_dist, _, exp_path = _dtwpy(x[b, :lx[b]].numpy(), y[b].numpy(), "euclidean", "symmetric2", None)
        np.testing.assert_allclose(float(res.distance[b]), exp_dist, rtol=1e-9)
        np.testing.assert_array_equal(_np(res.paths[b]), exp_path)


def test_batch_of_one_equals_unbatched():
    rng = _rng("b1")
    x, y = torch.from_numpy(rng.normal(size=(13, 5))), torch.from_numpy(rng.normal(size=(8, 5)))
    a = dtw(x, y, metric="cosine", step_pattern="symmetric1", window=6)
    b = dtw(x[None], y[None], metric="cosine", step_pattern="symmetric1", window=6)
    _check_result_types(a, None, torch.float64)
    _check_result_types(b, 1, torch.float64)
    assert float(a.distance) == pytest.approx(float(b.distance[0]), rel=1e-12)
    assert float(a.normalized_distance) == pytest.approx(float(b.normalized_distance[0]), rel=1e-12)
    np.testing.assert_array_equal(_np(a.paths[0]), _np(b.paths[0]))


# ------------------------------------------------------------------------------------------------
# 3. the NumPy reference agrees with dtw-python
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step_pattern", PATTERNS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n,m,wspec", [(1, 1, None), (1, 6, None), (6, 1, "diff"), (10, 10, 0),
                                       (14, 9, None), (9, 14, "diff"), (21, 16, "diff+3")])
def test_reference_matches_dtw_python(n, m, wspec, metric, step_pattern):
    rng = _rng("ref", n, m, wspec, metric, step_pattern)
    x, y = _features(rng, n, 4, metric), _features(rng, m, 4, metric)
    window = _window(wspec, n, m)
    exp_dist, exp_norm, exp_path = _dtwpy(x, y, metric, step_pattern, window)
    res = dtw_reference(torch.from_numpy(x), torch.from_numpy(y), metric=metric,
                        step_pattern=step_pattern, window=window)
    np.testing.assert_allclose(float(_np(res.distance)), exp_dist, rtol=1e-9, atol=1e-12)
    if step_pattern == "symmetric2":
        np.testing.assert_allclose(float(_np(res.normalized_distance)), exp_norm, rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(float(_np(res.normalized_distance)), exp_dist / len(exp_path),
                                   rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(_np(res.paths[0]), exp_path)


@pytest.mark.parametrize("step_pattern", PATTERNS)
def test_reference_padded_batch_and_ties(step_pattern):
    rng = _rng("refbatch", step_pattern)
    lx, ly = [3, 12, 1, 8], [7, 12, 5, 1]
    xs, ys, xp, yp = _padded_batch(rng, lx, ly, 3, np.float64, "euclidean")
    res = dtw_reference(xp, yp, step_pattern=step_pattern, x_lengths=torch.tensor(lx),
                        y_lengths=torch.tensor(ly))
    ours = dtw(xp, yp, step_pattern=step_pattern, x_lengths=torch.tensor(lx), y_lengths=torch.tensor(ly))
    for b in range(len(lx)):
        exp_dist, _, exp_path = _dtwpy(xs[b], ys[b], "euclidean", step_pattern, None)
        np.testing.assert_allclose(float(_np(res.distance)[b]), exp_dist, rtol=1e-9)
        np.testing.assert_array_equal(_np(res.paths[b]), exp_path)
        np.testing.assert_allclose(float(_np(ours.distance)[b]), float(_np(res.distance)[b]), rtol=1e-9)
    # tie-heavy integer input
    x = rng.integers(0, 3, size=(15, 2)).astype(np.float64)
    y = rng.integers(0, 3, size=(11, 2)).astype(np.float64)
    _, _, exp_path = _dtwpy(x, y, "sqeuclidean", step_pattern, None)
    res = dtw_reference(torch.from_numpy(x), torch.from_numpy(y), metric="sqeuclidean",
                        step_pattern=step_pattern)
    np.testing.assert_array_equal(_np(res.paths[0]), exp_path)


# ------------------------------------------------------------------------------------------------
# 4. align
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,m", [(1, 1), (1, 5), (5, 1), (20, 33), (33, 20), (25, 25)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_align_resamples_along_path(n, m, dtype):
    g = torch.Generator().manual_seed(_seed("align", n, m, str(dtype)))
    x = torch.randn(n, 7, generator=g, dtype=dtype)
    y = torch.randn(m, 7, generator=g, dtype=dtype)
    xa, ya, path = align(x, y)
    assert path.dtype == torch.int64 and path.ndim == 2 and path.shape[1] == 2
    L = path.shape[0]
    assert tuple(xa.shape) == (L, 7) and tuple(ya.shape) == (L, 7)
    assert xa.dtype == dtype and ya.dtype == dtype
    assert torch.equal(xa, x[path[:, 0]]) and torch.equal(ya, y[path[:, 1]])
    _check_path_valid(_np(path), n, m)
    # same path as dtw() and as dtw-python
    np.testing.assert_array_equal(_np(path), _np(dtw(x, y).paths[0]))
    if dtype == torch.float64:
        _, _, exp_path = _dtwpy(x, y, "euclidean", "symmetric2", None)
        np.testing.assert_array_equal(_np(path), exp_path)


@pytest.mark.parametrize("step_pattern", PATTERNS)
def test_align_forwards_options(step_pattern):
    rng = _rng("align-opts", step_pattern)
    x, y = _features(rng, 19, 6, "cosine"), _features(rng, 26, 6, "cosine")
    xa, ya, path = align(torch.from_numpy(x), torch.from_numpy(y), metric="cosine",
                         step_pattern=step_pattern, window=9)
    _, _, exp_path = _dtwpy(x, y, "cosine", step_pattern, 9)
    np.testing.assert_array_equal(_np(path), exp_path)
    np.testing.assert_array_equal(_np(xa), x[exp_path[:, 0]])
    np.testing.assert_array_equal(_np(ya), y[exp_path[:, 1]])
    with pytest.raises(ValueError, match="(?i)window"):
        align(torch.from_numpy(x), torch.from_numpy(y), window=6)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("step_pattern", PATTERNS)
def test_align_with_itself_is_diagonal(metric, step_pattern):
    g = torch.Generator().manual_seed(_seed("self", metric, step_pattern))
    x = torch.randn(40, 5, generator=g, dtype=torch.float64) + 0.25
    xa, ya, path = align(x, x, metric=metric, step_pattern=step_pattern)
    diag = torch.arange(40).unsqueeze(1).repeat(1, 2)
    assert torch.equal(path, diag)
    assert torch.equal(xa, x) and torch.equal(ya, x)
    res = dtw(x, x, metric=metric, step_pattern=step_pattern)
    assert abs(float(res.distance)) < 1e-6


# ------------------------------------------------------------------------------------------------
# 5. errors
# ------------------------------------------------------------------------------------------------
def _xy(n=6, m=8, d=3, dtype=torch.float32, batch=None):
    g = torch.Generator().manual_seed(_seed("err", n, m, d))
    shape_x = (n, d) if batch is None else (batch, n, d)
    shape_y = (m, d) if batch is None else (batch, m, d)
    return torch.randn(shape_x, generator=g).to(dtype), torch.randn(shape_y, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float16, torch.bfloat16, torch.bool])
def test_error_wrong_dtype(dtype):
    x, y = _xy()
    with pytest.raises(TypeError, match="(?i)dtype|float"):
        dtw(x.to(dtype), y.to(dtype))
    with pytest.raises(TypeError, match="(?i)dtype|float"):
        align(x.to(dtype), y.to(dtype))


def test_error_mixed_dtypes():
    x, y = _xy()
    with pytest.raises((TypeError, ValueError), match="(?i)dtype"):
        dtw(x, y.double())


@pytest.mark.parametrize("xs,ys", [
    ((6,), (8,)),               # 1-d
    ((2, 6, 3, 1), (2, 8, 3, 1)),  # 4-d
    ((6, 3), (2, 8, 3)),        # one batched, one not
    ((2, 6, 3), (8, 3)),
    ((2, 6, 3), (3, 8, 3)),     # batch sizes differ
    ((6, 3), (8, 4)),           # D differs
    ((2, 6, 3), (2, 8, 5)),
])
def test_error_shapes(xs, ys):
    with pytest.raises(ValueError):
        dtw(torch.randn(xs), torch.randn(ys))


def test_error_zero_length():
    for xs, ys in [((0, 3), (5, 3)), ((5, 3), (0, 3)), ((2, 0, 3), (2, 4, 3))]:
        with pytest.raises(ValueError):
            dtw(torch.randn(xs), torch.randn(ys))
    with pytest.raises(ValueError):
        align(torch.randn(0, 3), torch.randn(4, 3))


def test_error_unknown_metric_and_pattern():
    x, y = _xy()
    with pytest.raises(ValueError, match="(?i)metric"):
        dtw(x, y, metric="manhattan")
    with pytest.raises(ValueError, match="(?i)metric"):
        align(x, y, metric="Euclid")
    with pytest.raises(ValueError, match="(?i)step"):
        dtw(x, y, step_pattern="asymmetric")
    with pytest.raises(ValueError, match="(?i)step"):
        align(x, y, step_pattern="symmetric3")


def test_error_window():
    x, y = _xy(6, 8)
    with pytest.raises(ValueError, match="(?i)window"):
        dtw(x, y, window=-1)
    # |N - M| = 2 > 1: no admissible path
    with pytest.raises(ValueError, match="(?i)window"):
        dtw(x, y, window=1)
    dtw(x, y, window=2)  # exactly |N - M|: fine
    # batched: one pair's lengths too far apart for the window
    xb, yb = _xy(10, 10, batch=3)
    with pytest.raises(ValueError, match="(?i)window"):
        dtw(xb, yb, window=3, x_lengths=[10, 10, 2], y_lengths=[10, 8, 10])
    dtw(xb, yb, window=3, x_lengths=[10, 10, 7], y_lengths=[10, 8, 10])


@pytest.mark.parametrize("kw", [
    dict(x_lengths=[0, 5]),
    dict(x_lengths=[6, 7]),            # > padded N = 6
    dict(y_lengths=[9, 3]),            # > padded M = 8
    dict(y_lengths=[-1, 3]),
    dict(x_lengths=[3, 3, 3]),         # wrong number of lengths
    dict(y_lengths=torch.tensor([4])),
])
def test_error_lengths(kw):
    xb, yb = _xy(6, 8, batch=2)
    with pytest.raises(ValueError, match="(?i)length"):
        dtw(xb, yb, **kw)


# ------------------------------------------------------------------------------------------------
# 6. real speech: recover a known time warp of log-mel features
# ------------------------------------------------------------------------------------------------
def _known_warp(n: int):
    """A monotone, non-linear time map t: copy frame j -> original time t(j) (in frames):
    the first half of the original is stretched 1.3x (t' = 1/1.3: frames repeat), the next quarter
    compressed 0.7x (t' = 1/0.7: frames are skipped), the last quarter is unchanged.
    The copy is ~7.5% longer than the original, so an identity or diagonal map is far off."""
    knots_t = np.array([0.0, 0.50 * (n - 1), 0.75 * (n - 1), n - 1.0])
    slopes = np.array([1 / 1.3, 1 / 0.7, 1.0])
    knots_j = np.concatenate([[0.0], np.cumsum(np.diff(knots_t) / slopes)])
    m = int(round(knots_j[-1])) + 1
    return np.interp(np.arange(m, dtype=np.float64), knots_j * (m - 1) / knots_j[-1], knots_t)


@pytest.mark.parametrize("clip,offset_s,dur_s,hop,n_mels", [
    ("audio/radio31_8s_en.wav", 0.0, 8.0, 160, 40),
    ("audio/speech_60s_en.wav", 20.0, 15.0, 320, 64),
])
def test_real_speech_recovers_known_warp(clip, offset_s, dur_s, hop, n_mels):
    import librosa
    import soundfile as sf

    path = _media_dir() / clip
    assert path.is_file(), f"missing media file {path}"
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    assert sr == 16000, sr
    wav = wav[int(offset_s * sr): int((offset_s + dur_s) * sr)]
    mel = librosa.feature.melspectrogram(y=wav, sr=sr, n_fft=2 * hop if hop > 200 else 400,
                                         hop_length=hop, n_mels=n_mels, fmin=20, fmax=sr / 2, power=2.0)
    X = librosa.power_to_db(mel, ref=np.max, top_db=80.0).T.astype(np.float64)  # [N, n_mels] dB
    n = X.shape[0]

    # The warped copy: features linearly interpolated at the known fractional times t(j), plus 1 dB
    # Gaussian noise, so the copy is not a verbatim repetition of original frames.
    t = _known_warp(n)
    m = len(t)
    i0 = np.floor(t).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    f = (t - i0)[:, None]
    Y = (1 - f) * X[i0] + f * X[i1]
    Y = Y + _rng("warp-noise", clip).normal(scale=1.0, size=Y.shape)

    # Speech frames: RMS within 30 dB of the loudest frame. In silence (and steady background
    # noise) consecutive frames are mutually near-identical, so where the path runs through
    # silence the alignment is genuinely ambiguous; the strict criterion is applied only where
    # the warp is well-defined (speech), the overall fraction is checked more loosely.
    rms = librosa.feature.rms(y=wav, frame_length=2 * hop if hop > 200 else 400, hop_length=hop)[0][:n]
    edb = 20 * np.log10(rms + 1e-10)
    speech = edb > edb.max() - 30.0
    assert speech.mean() > 0.5, "clip should be mostly speech"

    def score(pi, pj):
        err = np.abs(pi - t[pj])          # distance, in frames, from the known warp
        ok = err <= 1.0 + 1e-9
        sp = speech[pi]
        return ok[sp].mean(), err[sp].max(), ok.mean()

    for dtype, extra in ((torch.float64, {}), (torch.float32, {"step_pattern": "symmetric1"})):
        res = dtw(torch.from_numpy(X).to(dtype), torch.from_numpy(Y).to(dtype), **extra)
        p = _np(res.paths[0])
        _check_path_valid(p, n, m)
        frac_speech, max_err_speech, frac_all = score(p[:, 0], p[:, 1])
        # Observed with dtw-python on these inputs (both clips, both step patterns, float64 and
        # float32 values): every speech pair within 1 frame of the known warp (max error 1.0 /
        # 0.91 frames), >= 99.8% of all pairs. Required: all speech pairs within one frame; the
        # overall fraction (silence included) >= 98%.
        assert max_err_speech <= 1.0 + 1e-9, (dtype, frac_speech, max_err_speech)
        assert frac_speech == 1.0, (dtype, frac_speech)
        assert frac_all >= 0.98, (dtype, frac_all)
        if dtype == torch.float64:
            # on real data too, the path is dtw-python's
            _, _, exp_path = _dtwpy(X, Y, "euclidean", "symmetric2", None)
            np.testing.assert_array_equal(p, exp_path)

    # negative controls: the criterion must reject an identity map and a plain diagonal path
    j = np.arange(m)
    for name, (qi, qj) in {
        "identity": (np.minimum(j, n - 1), j),
        "diagonal": (np.round(j * (n - 1) / (m - 1)).astype(np.int64), j),
    }.items():
        frac_speech, _, frac_all = score(qi, qj)
        assert frac_speech < 0.5 and frac_all < 0.5, (name, frac_speech, frac_all)


# ------------------------------------------------------------------------------------------------
# 7. CUDA == CPU
# ------------------------------------------------------------------------------------------------
def _cuda_ok() -> bool:
    try:
        return bool(torch.cuda.is_available() and jops.cuda_available())
    except Exception:  # noqa: BLE001
        return False


cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not _cuda_ok(), reason="needs an NVIDIA GPU and jeancore built with CUDA "
                                                       "(jeancore.ops.cuda_available() is False)")


@cuda
@needs_cuda
@pytest.mark.parametrize("step_pattern", PATTERNS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("wspec", [None, "diff", "diff+3"])
def test_cuda_matches_cpu_single(metric, step_pattern, wspec):
    for n, m in [(1, 1), (1, 9), (9, 1), (40, 40), (57, 31), (31, 57), (300, 260)]:
        rng = _rng("cuda1", n, m, metric, step_pattern, wspec)
        x, y = _features(rng, n, 12, metric), _features(rng, m, 12, metric)
        window = _window(wspec, n, m)
        cpu = dtw(torch.from_numpy(x), torch.from_numpy(y), metric=metric, step_pattern=step_pattern,
                  window=window)
        gpu = dtw(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), metric=metric,
                  step_pattern=step_pattern, window=window)
        _check_result_types(gpu, None, torch.float64)
        np.testing.assert_allclose(float(gpu.distance), float(cpu.distance), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(gpu.normalized_distance), float(cpu.normalized_distance),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(_np(gpu.paths[0]), _np(cpu.paths[0]))


@cuda
@needs_cuda
@pytest.mark.parametrize("step_pattern", PATTERNS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_matches_cpu_padded_batch(dtype, step_pattern):
    rng = _rng("cudab", np.dtype(dtype).name, step_pattern)
    lx = [int(v) for v in rng.integers(1, 400, size=24)] + [1500, 1]
    ly = [int(v) for v in rng.integers(1, 400, size=24)] + [1300, 1]
    xs, ys, xp, yp = _padded_batch(rng, lx, ly, 32, dtype, "euclidean")
    kw = dict(step_pattern=step_pattern, x_lengths=torch.tensor(lx), y_lengths=torch.tensor(ly))
    cpu = dtw(xp, yp, **kw)
    gpu = dtw(xp.cuda(), yp.cuda(), x_lengths=torch.tensor(lx).cuda(), y_lengths=torch.tensor(ly).cuda(),
              step_pattern=step_pattern)
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(_np(gpu.distance), _np(cpu.distance), rtol=rtol)
    np.testing.assert_allclose(_np(gpu.normalized_distance), _np(cpu.normalized_distance), rtol=rtol)
    for b in range(len(lx)):
        g, c = _np(gpu.paths[b]), _np(cpu.paths[b])
        _check_path_valid(g, lx[b], ly[b])
        if dtype == np.float64:
            np.testing.assert_array_equal(g, c)
        else:
            _assert_path_equal_or_tied(g, c, xs[b], ys[b], "euclidean", step_pattern, rtol=1e-5)


@cuda
@needs_cuda
def test_cuda_align_and_device_errors():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 8, generator=g, dtype=torch.float64)
    y = torch.randn(70, 8, generator=g, dtype=torch.float64)
    xa, ya, path = align(x.cuda(), y.cuda(), metric="cosine")
    _, _, cpath = align(x, y, metric="cosine")
    np.testing.assert_array_equal(_np(path), _np(cpath))
    assert torch.equal(xa.cpu(), x[path.cpu()[:, 0]]) and torch.equal(ya.cpu(), y[path.cpu()[:, 1]])
    with pytest.raises((ValueError, TypeError, RuntimeError), match="(?i)device"):
        dtw(x.cuda(), y)


def test_non_finite_features_raise_clear_error():
    x = torch.randn(12, 4, dtype=torch.float64)
    y = torch.randn(9, 4, dtype=torch.float64)
    x[5, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        dtw(x, y)
