"""Tests of the 3DMM head tracker (``jeancore.data.tracking``).

* Known answer: landmarks synthesised from a known identity, expressions, head poses and focal
  length (projected with the module's documented camera), some frames marked invalid; the fit
  must recover the poses, the focal length and the landmarks.
* Cameras: ``camera_to_head`` with ``jeancore.ops.generate_rays`` gives rays through the fitted
  3-D landmarks at their projections; the pixel convention is checked against a hand projection.
* Real data: dlib landmarks of the first 4 s of ``video/obama_20s_450.mp4``.
* Bad input raises ValueError; save / load round trip.
"""
from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import pytest
import torch

import jeancore.ops as jops
from jeancore.data.tracking import (
    HeadTracking,
    MorphableModel,
    fit_3dmm,
    load_morphable_model,
    project,
)
from jeancore.errors import BadInputError


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _rodrigues(w: np.ndarray) -> np.ndarray:
    """Axis-angle [T, 3] -> rotation [T, 3, 3] (independent of the module's own)."""
    out = []
    for v in np.asarray(w, np.float64):
        th = np.linalg.norm(v)
        k = v / th if th > 0 else np.zeros(3)
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        out.append(np.eye(3) + np.sin(th) * kx + (1 - np.cos(th)) * kx @ kx)
    return np.stack(out)


def _angle_deg(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotations [T, 3, 3], degrees."""
    rel = np.einsum("tji,tjk->tik", np.asarray(ra, np.float64), np.asarray(rb, np.float64))
    cos = (np.trace(rel, axis1=1, axis2=2) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


class Scene:
    """A synthetic talking head: known 3DMM parameters, poses, camera and its landmarks."""

    def __init__(self, n=48, size=(512, 512), focal=1100.0, seed=0, scale=1.0):
        rng = np.random.default_rng(seed)
        model = load_morphable_model(dtype=torch.float64)
        t = np.arange(n)
        self.n, self.focal = n, focal * scale
        self.size = (int(size[0] * scale), int(size[1] * scale))
        self.identity = rng.normal(size=40) * 0.5 * model.shape_std.numpy()
        self.expression = (np.stack([0.8 * np.sin(t / 5 + k) for k in range(10)], 1)
                           * model.expr_std.numpy())
        angles = np.stack([0.2 * np.sin(t / 9), 0.45 * np.sin(t / 13 + 1), 0.1 * np.sin(t / 7)], 1)
        self.rotation = _rodrigues(angles)
        self.translation = np.stack(
            [0.15 * np.sin(t / 9), 0.1 * np.cos(t / 8), -7.0 - 0.6 * np.sin(t / 15)], 1)
        self.points = model.points(self.identity, self.expression).numpy()  # [T, 68, 3]
        w, h = self.size
        self.landmarks = project(torch.as_tensor(self.points), torch.as_tensor(self.rotation),
                                 torch.as_tensor(self.translation), self.focal, w / 2,
                                 h / 2).numpy().astype(np.float32)


def _check_recovery(fit: HeadTracking, scene: Scene, frames, rot_deg, rel_trans, rel_focal):
    ang = _angle_deg(fit.rotation[frames], scene.rotation[frames])
    trans = np.linalg.norm(fit.translation[frames] - scene.translation[frames], axis=-1)
    trans /= np.linalg.norm(scene.translation[frames], axis=-1)
    assert ang.max() < rot_deg, f"rotation error {ang.max():.3f} deg"
    assert trans.max() < rel_trans, f"relative translation error {trans.max():.4f}"
    assert abs(fit.focal / scene.focal - 1) < rel_focal, f"focal {fit.focal} vs {scene.focal}"


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.fixture(scope="module")
def masked(scene):
    """Frame 0 and frames 20-23 invalid (NaN landmarks)."""
    valid = np.ones(scene.n, bool)
    valid[[0, 20, 21, 22, 23]] = False
    lms = scene.landmarks.copy()
    lms[~valid] = np.nan
    return lms, valid


@pytest.fixture(scope="module")
def fit_default(scene, masked) -> HeadTracking:
    lms, valid = masked
    return fit_3dmm(lms, scene.size, valid)


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------
def test_model_units_origin_and_param_means():
    m = load_morphable_model(dtype=torch.float64)
    raw = np.load(os.path.join(os.path.dirname(__file__), "..", "third_party", "bfm",
                               "bfm_3ddfa_68kp.npz"))
    assert isinstance(m, MorphableModel)
    assert m.mean.shape == (68, 3) and m.shape_basis.shape == (68, 3, 40)
    assert m.expr_basis.shape == (68, 3, 10) and m.vertex_index.dtype == torch.int64
    # origin: centroid of the mean-shape landmarks; units: decimetres (file: micrometres)
    assert torch.allclose(m.mean.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    np.testing.assert_allclose(m.mean.numpy() + m.origin.numpy(), raw["mean"] / 1e5, rtol=1e-6)
    np.testing.assert_allclose(m.shape_basis.numpy(), raw["shape_basis"] / 1e5, rtol=1e-6)
    width = float(m.mean[16, 0] - m.mean[0, 0])  # jaw end to jaw end
    assert 1.3 < width < 1.6, width  # about 14.6 cm
    # zero coefficients give the mean; the file's param means are NOT in `mean`
    pts = m.points(torch.zeros(40), torch.zeros(2, 10))
    assert pts.shape == (2, 68, 3) and torch.allclose(pts[1], m.mean)
    data_mean = m.points(m.shape_param_mean, m.expr_param_mean[None])[0]
    assert float((data_mean - m.mean).norm(dim=-1).mean()) > 0.01  # > 1 mm: not included
    # identity per frame is accepted; wrong shapes are not
    assert m.points(torch.zeros(3, 40), torch.zeros(3, 10)).shape == (3, 68, 3)
    with pytest.raises(ValueError, match="expression"):
        m.points(torch.zeros(40), torch.zeros(10))
    with pytest.raises(ValueError, match="identity"):
        m.points(torch.zeros(2, 40), torch.zeros(3, 10))
    centre, radius = m.head_sphere()
    np.testing.assert_allclose(centre.numpy(), [0, 0, -0.5], atol=1e-12)
    assert radius == 1.5


def test_projection_convention():
    """u = cx + f X/(-Z), v = cy - f Y/(-Z) in the pixel-corner convention: a point straight
    ahead lands on the image centre, +x goes right, +y goes up (smaller v)."""
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]], dtype=torch.float64)
    uv = project(pts, torch.eye(3, dtype=torch.float64)[None],
                 torch.tensor([[0.0, 0.0, -5.0]], dtype=torch.float64), 1000.0, 320.0, 240.0)
    np.testing.assert_allclose(uv[0].numpy(), [[320, 240], [340, 240], [320, 220]], atol=1e-9)


# ------------------------------------------------------------------------------------------------
# known answer
# ------------------------------------------------------------------------------------------------
def test_known_answer_default_settings(scene, masked, fit_default):
    _, valid = masked
    fit = fit_default
    assert fit.rotation.shape == (scene.n, 3, 3) and fit.translation.shape == (scene.n, 3)
    assert fit.expression.shape == (scene.n, 10) and fit.identity.shape == (40,)
    assert fit.camera_to_head.shape == (scene.n, 4, 4)
    assert fit.camera_to_head.dtype == np.float32 and fit.projected.shape == (scene.n, 68, 2)
    assert (fit.cx, fit.cy) == (256.0, 256.0) and fit.intrinsics == (fit.focal, fit.focal,
                                                                     256.0, 256.0)
    # the priors (identity, expression, focal, smoothness) bias exact data a little
    _check_recovery(fit, scene, valid, rot_deg=1.0, rel_trans=0.05, rel_focal=0.05)
    err = fit.reprojection_error
    assert np.isnan(err[~valid]).all() and np.isfinite(err[valid]).all()
    assert err[valid].max() < 0.5, err[valid].max()
    # interior invalid frames: interpolated between their valid neighbours
    _check_recovery(fit, scene, np.arange(20, 24), rot_deg=1.0, rel_trans=0.05, rel_focal=0.05)
    # before the first valid frame: held constant
    np.testing.assert_allclose(fit.rotation[0], fit.rotation[1], atol=1e-6)
    np.testing.assert_allclose(fit.translation[0], fit.translation[1], atol=1e-6)
    np.testing.assert_allclose(fit.expression[0], fit.expression[1], atol=1e-6)
    # rotations are rotations
    eye = np.einsum("tji,tjk->tik", fit.rotation, fit.rotation)
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(fit.rotation), 1, atol=1e-5)


def test_known_answer_weak_priors(scene, masked):
    """With the priors nearly off, exact landmarks give the exact answer (up to smoothness)."""
    lms, valid = masked
    fit = fit_3dmm(torch.as_tensor(lms), scene.size, torch.as_tensor(valid),
                   identity_weight=1e-4, expression_weight=1e-4, focal_prior=None)
    _check_recovery(fit, scene, valid, rot_deg=0.25, rel_trans=0.015, rel_focal=0.01)
    assert np.nanmax(fit.reprojection_error) < 0.1, np.nanmax(fit.reprojection_error)


def test_fixed_focal_and_resolution_invariance(scene, fit_default):
    """A given focal stays fixed; the same scene at twice the resolution gives the same poses and
    twice the focal (the energy is normalised by the face size)."""
    fixed = fit_3dmm(scene.landmarks, scene.size, focal=scene.focal)
    assert fixed.focal == pytest.approx(scene.focal, rel=1e-12)
    _check_recovery(fixed, scene, slice(None), rot_deg=0.6, rel_trans=0.03, rel_focal=1e-9)

    big = Scene(scale=2.0)
    np.testing.assert_allclose(big.landmarks, 2 * scene.landmarks, rtol=1e-5)
    fit1 = fit_3dmm(scene.landmarks, scene.size)
    fit2 = fit_3dmm(big.landmarks, big.size)
    assert fit2.focal == pytest.approx(2 * fit1.focal, rel=1e-3)
    assert _angle_deg(fit1.rotation, fit2.rotation).max() < 0.05
    np.testing.assert_allclose(fit2.translation, fit1.translation, rtol=0, atol=2e-3)
    np.testing.assert_allclose(fit2.reprojection_error, 2 * fit1.reprojection_error, rtol=0.05,
                               atol=1e-3)


# ------------------------------------------------------------------------------------------------
# cameras and rays
# ------------------------------------------------------------------------------------------------
def test_rays_through_landmarks(fit_default):
    """generate_rays(camera_to_head[:, :3], f, f, cx, cy, projected) passes through the fitted
    3-D landmarks, at depth t = their camera z-depth; camera_to_head inverts [R t; 0 1]."""
    fit = fit_default
    model = load_morphable_model(dtype=torch.float64)
    pts = model.points(fit.identity, fit.expression).numpy()  # [T, 68, 3] canonical
    c2w = torch.as_tensor(fit.camera_to_head, dtype=torch.float64)
    w2c = np.zeros_like(fit.camera_to_head, dtype=np.float64)
    w2c[:, :3, :3], w2c[:, :3, 3], w2c[:, 3, 3] = fit.rotation, fit.translation, 1
    np.testing.assert_allclose(c2w.numpy() @ w2c, np.broadcast_to(np.eye(4), w2c.shape),
                               atol=1e-5)
    fx, fy, cx, cy = fit.intrinsics
    rays_o, rays_d = jops.generate_rays(c2w[:, :3], fx, fy, cx, cy,
                                        torch.as_tensor(fit.projected, dtype=torch.float64))
    rays_o, rays_d = rays_o.numpy(), rays_d.numpy()
    depth = -(np.einsum("tij,tkj->tki", fit.rotation.astype(np.float64), pts)
              + fit.translation[:, None].astype(np.float64))[..., 2]
    assert (depth > 0).all()
    hit = rays_o + depth[..., None] * rays_d
    # float32 poses / pixels at ~7 dm depth: micrometre-level agreement
    np.testing.assert_allclose(hit, pts, rtol=0, atol=1e-4)
    # the rays start at the camera centre, which sees the head sphere in front of it
    centre = c2w[:, :3, 3].numpy()
    np.testing.assert_allclose(rays_o[:, 0], centre, atol=1e-6)
    assert (np.linalg.norm(centre - fit.head_center, axis=-1) > fit.head_radius).all()


def test_near_far_from_head_sphere(fit_default):
    fit = fit_default
    centre_cam = np.einsum("tij,j->ti", fit.rotation, fit.head_center) + fit.translation
    depth = -centre_cam[:, 2]
    assert fit.near == pytest.approx(depth.min() - fit.head_radius, rel=1e-5)
    assert fit.far == pytest.approx(depth.max() + fit.head_radius, rel=1e-5)
    assert 0 < fit.near < fit.far
    np.testing.assert_allclose(fit.head_center, [0, 0, -0.5], atol=1e-7)
    assert fit.head_radius == 1.5


# ------------------------------------------------------------------------------------------------
# real data
# ------------------------------------------------------------------------------------------------
def _read_frames(path, n_frames):
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24")
                for _, f in zip(range(n_frames), container.decode(video=0))]


def _dlib_landmarks(frames):
    """iBUG-68 landmarks with dlib (pixel-corner convention): float32 [T, 68, 2], valid [T].

    Uses jeancore.data.landmarks when present; otherwise dlib directly (detection on a half-size
    copy, the shape predictor on the full frame)."""
    try:
        from jeancore.data.landmarks import detect_landmarks
    except ImportError:
        detect_landmarks = None
    if detect_landmarks is not None:
        track = detect_landmarks(frames)
        return np.asarray(track.points, np.float32), np.asarray(track.valid, bool)
    dlib = pytest.importorskip("dlib")
    models = os.path.join(
        os.path.dirname(importlib.util.find_spec("face_recognition_models").origin), "models")
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(os.path.join(models, "shape_predictor_68_face_landmarks.dat"))
    lms, valid = [], []
    for img in frames:
        rects = det(np.ascontiguousarray(img[::2, ::2]), 0)
        if not rects:
            lms.append(np.full((68, 2), np.nan))
            valid.append(False)
            continue
        r = max(rects, key=lambda r: r.area())
        shape = sp(img, dlib.rectangle(2 * r.left(), 2 * r.top(), 2 * r.right(), 2 * r.bottom()))
        lms.append([(p.x + 0.5, p.y + 0.5) for p in shape.parts()])
        valid.append(True)
    return np.asarray(lms, np.float32), np.asarray(valid)


def test_obama_real_video(media):
    path = media / "video" / "obama_20s_450.mp4"
    frames = _read_frames(path, 100)  # 4 s at 25 fps
    size = (frames[0].shape[1], frames[0].shape[0])
    lms, valid = _dlib_landmarks(frames)
    assert size == (450, 450) and valid.sum() >= 95
    t0 = time.perf_counter()
    fit = fit_3dmm(lms, size, valid)
    seconds = time.perf_counter() - t0
    err = fit.reprojection_error[valid]
    steps = _angle_deg(fit.rotation[:-1], fit.rotation[1:])
    depth = -(np.einsum("tij,j->ti", fit.rotation, fit.head_center) + fit.translation)[:, 2]
    fov = np.degrees(2 * np.arctan(225 / fit.focal))
    print(f"\nobama 100 frames: fit {seconds:.2f} s, reprojection error mean {err.mean():.3f} px "
          f"max {err.max():.3f} px, focal {fit.focal:.1f} px (fov {fov:.1f} deg), near "
          f"{fit.near:.3f} far {fit.far:.3f} dm, rotation step max {steps.max():.2f} deg")
    assert err.mean() < 3.0
    assert err.max() < 5.0
    # temporally smooth poses: a talking head turns by at most a few degrees per frame
    assert steps.max() < 5.0 and np.median(steps) < 1.5
    trans_steps = np.linalg.norm(np.diff(fit.translation, axis=0), axis=-1)
    assert trans_steps.max() < 0.05 * depth.mean()
    # a plausible camera: field of view 8-50 degrees, the face roughly frontal
    assert 8 < fov < 50
    assert np.all(_angle_deg(fit.rotation, np.broadcast_to(np.eye(3), fit.rotation.shape)) < 30)
    # the head sphere lies in front of the camera in every frame; near/far bound it
    assert (depth - fit.head_radius > 0).all()
    assert 0 < fit.near < fit.far
    assert fit.near <= depth.min() - fit.head_radius + 1e-4
    assert fit.far >= depth.max() + fit.head_radius - 1e-4
    # the fitted landmarks are where dlib put them
    assert np.abs(fit.projected[valid] - lms[valid]).mean() < 3.0


# ------------------------------------------------------------------------------------------------
# bad input, save / load
# ------------------------------------------------------------------------------------------------
def test_bad_input_raises(scene):
    lms = scene.landmarks[:6]
    with pytest.raises(ValueError, match=r"\[T, 68, 2\]"):
        fit_3dmm(lms[:, :60], scene.size)
    with pytest.raises(ValueError, match=r"\[T, 68, 2\]"):
        fit_3dmm(lms[0], scene.size)
    with pytest.raises(ValueError, match="floating"):
        fit_3dmm(lms.astype(np.int32), scene.size)
    with pytest.raises(ValueError, match="image_size"):
        fit_3dmm(lms, (512,))
    with pytest.raises(ValueError, match="image_size"):
        fit_3dmm(lms, (0, 512))
    with pytest.raises(ValueError, match="valid"):
        fit_3dmm(lms, scene.size, np.ones(5, bool))
    with pytest.raises(ValueError, match="valid"):
        fit_3dmm(lms, scene.size, np.ones(6, np.int64))
    with pytest.raises(ValueError, match="focal"):
        fit_3dmm(lms, scene.size, focal=-3.0)
    bad = lms.copy()
    bad[2, 5, 0] = np.nan
    with pytest.raises(BadInputError, match=r"not finite.*\[2\]"):
        fit_3dmm(bad, scene.size)
    with pytest.raises(ValueError, match="not finite"):
        fit_3dmm(np.where(np.isnan(bad), np.inf, bad), scene.size)
    with pytest.raises(BadInputError, match="only 0 of 6"):
        fit_3dmm(np.full_like(lms, np.nan), scene.size, np.zeros(6, bool))
    with pytest.raises(ValueError, match="at least 10"):
        fit_3dmm(lms, scene.size, min_valid_frames=10)
    with pytest.raises(ValueError, match="landmark_weights"):
        fit_3dmm(lms, scene.size, landmark_weights=np.ones(5))
    with pytest.raises(ValueError, match="landmark_sigma"):
        fit_3dmm(lms, scene.size, landmark_sigma=0)
    with pytest.raises(ValueError, match="prior_center"):
        fit_3dmm(lms, scene.size, prior_center="data")
    with pytest.raises(ValueError, match="one point"):
        fit_3dmm(np.full_like(lms, 100.0), scene.size)
    # NaN is fine in invalid frames, and one valid frame is enough
    ok = np.full_like(lms, np.nan)
    ok[3] = lms[3]
    fit = fit_3dmm(ok, scene.size, np.arange(6) == 3, iterations=(20, 20))
    assert np.isfinite(fit.rotation).all() and np.isfinite(fit.reprojection_error[3])


def test_save_load_round_trip(tmp_path, fit_default):
    path = tmp_path / "track.npz"
    fit_default.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["track.npz"]  # no temp file left
    back = HeadTracking.load(path)
    for name, value in vars(fit_default).items():
        got = getattr(back, name)
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and got.shape == value.shape, name
            np.testing.assert_array_equal(got, value, err_msg=name)
        else:
            assert got == value and type(got) is type(value), name
    fit_default.save(path)  # overwrites
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInputError):
        HeadTracking.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        HeadTracking.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        HeadTracking.load(tmp_path / "absent.npz")
