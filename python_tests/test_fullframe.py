"""Full-frame composition (jeancore.render.fullframe): torso layer with the neck fill, the
RAD-NeRF / ER-NeRF head-only composite, nearest-pose torso frames; on the real preprocessed
Obama clip (conftest ``obama_8s_128``).

The rendered head is stood in for by a recorded frame's own head (premultiplied, the head
mask as opacity), what the NeRF is trained to reproduce.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jeancore.data.parsing import LABEL_HEAD, LABEL_TORSO
from jeancore.errors import BadInputError
from jeancore.render.fullframe import (DatasetTorso, chin_gap, compose_full, nearest_pose_frame,
                                       pose_distance, seam_step, torso_layer)


@pytest.fixture(scope="module")
def ds(preprocessed):
    return DatasetTorso(preprocessed("obama_8s_128").root)


def _mouth_opening(points):
    iod = np.linalg.norm(points[:, 36:42].mean(1) - points[:, 42:48].mean(1), axis=1)
    return np.linalg.norm(points[:, 62] - points[:, 66], axis=1) / iod


def _head_of(ds, j, soft=True):
    """(premultiplied float head, opacity) of recorded frame j."""
    import cv2

    mask = (ds.labels(j) == LABEL_HEAD).astype(np.float32)
    if soft:
        mask = np.clip(cv2.GaussianBlur(mask, (0, 0), 1.0), 0, 1)
    return ds.frame(j).astype(np.float32) / 255 * mask[..., None], mask


def test_compose_full_pixels(ds):
    j = 10
    layer = ds.layer(j)
    head, op = _head_of(ds, j)
    out = compose_full(head, op, layer.rgb, layer.alpha, ds.background)
    bg = ds.background.astype(np.float32) / 255
    a = layer.alpha[..., None]
    o = op[..., None]
    np.testing.assert_allclose(out, head + (1 - o) * (layer.rgb * a + bg * (1 - a)), atol=1e-6)
    full, none = op == 1, (op == 0) & (layer.alpha == 0)
    torso = (op == 0) & (layer.alpha == 1)
    assert full.sum() > 1000 and none.sum() > 1000 and torso.sum() > 1000
    assert np.array_equal(out[full], head[full])
    assert np.array_equal(out[none], bg[none])
    assert np.array_equal(out[torso], layer.rgb[torso])
    # the torso is the recorded frame there
    np.testing.assert_allclose(out[torso], ds.frame(j)[torso] / 255.0, atol=1e-6)
    # uint8 in -> uint8 out, same pixels
    head8 = np.clip(head * 255 + 0.5, 0, 255).astype(np.uint8)
    out8 = compose_full(head8, op, ds.frame(j), layer.alpha, ds.background)
    assert out8.dtype == np.uint8 and out8.shape == (ds.size, ds.size, 3)
    assert np.array_equal(out8[full], head8[full])
    assert np.array_equal(out8[none], ds.background[none])
    # one background colour; opacity given as [H, W, 1]
    white = compose_full(head, op[..., None], layer.rgb, layer.alpha, np.ones(3, np.float32))
    assert np.all(white[none] == 1.0)
    # the same frame's head over its own torso layer gives the recorded frame back
    rec = ds.frame(j).astype(np.float32)
    person = ds.labels(j) > 0
    err = np.abs(out * 255 - rec)[person].mean()
    assert err < 2.0, err


def test_compose_full_rejects_bad_input():
    img = np.zeros((8, 8, 3), np.float32)
    w = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="head_opacity"):
        compose_full(img, np.zeros((8, 7)), img, w, img)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compose_full(img, w + 2.0, img, w, img)
    with pytest.raises(ValueError, match="background"):
        compose_full(img, w, img, w, np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="torso_rgb"):
        compose_full(img, w, img[:4], w, img)


def test_torso_layer_removes_the_head_and_fills_above_the_neck(ds):
    j = int(np.argmax(_mouth_opening(ds.landmarks)))
    lab = ds.labels(j)
    layer = ds.layer(j)
    head, torso = lab == LABEL_HEAD, lab == LABEL_TORSO
    assert np.all(layer.alpha[torso] == 1.0)
    assert np.all(layer.alpha[head & ~layer.fill] == 0.0)
    assert np.all(layer.rgb[head & ~layer.fill] == 0.0)       # the recorded head is gone
    assert layer.fill.any() and np.all(head[layer.fill])      # the fill is in the head region
    # ... below the mouth: under the upper lip, down to the chin
    rows = np.flatnonzero(layer.fill.any(1))
    pts = ds.landmarks[j]
    assert rows.min() + 0.5 > pts[51, 1] and rows.max() - 0.5 < pts[8, 1]
    # ... as wide as the neck at most, and in the neck's colours (not the background's)
    cols = np.flatnonzero(layer.fill.any(0))
    jaw_x = pts[0:17, 0]
    assert jaw_x.min() < cols.min() and cols.max() < jaw_x.max()
    # the neck right under the jaw line, continued upward
    from jeancore.data.parsing import jaw_boundary

    frame = ds.frame(j).astype(np.float32) / 255
    top = np.ceil(jaw_boundary(pts, ds.size)).astype(int)
    under = np.array([frame[top[x] + 1, x] for x in cols if torso[top[x] + 1, x]])
    fill = layer.rgb[layer.fill].mean(0)
    bg = ds.background[layer.fill].mean(0) / 255
    assert len(under) >= 0.9 * len(cols)
    assert np.abs(fill - under.mean(0)).max() < 0.06 and np.abs(fill - bg).max() > 0.1
    none = torso_layer(ds.frame(j), lab, pts, neck_fill="none")
    assert not none.fill.any() and np.all(none.alpha[head] == 0)
    with pytest.raises(ValueError, match="neck_fill"):
        torso_layer(ds.frame(j), lab, pts, neck_fill="blur")


def test_closed_mouth_over_open_mouth_torso_leaves_no_gap(ds):
    """The case behind 'a hole under the chin': the torso of a frame with the mouth open, a
    head with the mouth closed (nearest in pose among the closed-mouth frames)."""
    opening = _mouth_opening(ds.landmarks)
    closed = np.flatnonzero(opening < 0.05)
    assert len(closed) >= 5
    for a in np.argsort(opening)[::-1][:3]:
        b = ds.nearest_frame(ds.camera_to_head[a], candidates=closed)
        head, op = _head_of(ds, b)
        la, lb = ds.labels(a), ds.labels(b)
        results = {}
        for mode in ("none", "extend"):
            layer = torso_layer(ds.frame(a), la, ds.landmarks[a], neck_fill=mode)
            out = compose_full(head, op, layer.rgb, layer.alpha, ds.background)
            results[mode] = chin_gap(op, layer.alpha, la, lb, ds.landmarks[b]), out
        (gap_none, region), _ = results["none"]
        (gap_fill, _), out = results["extend"]
        assert region >= 20, region                    # the chins differ visibly
        assert gap_none >= 0.8 * region                # without the fill: a hole
        assert gap_fill <= 0.05 * region, (gap_fill, region)
        # no seam: the step across the new jaw line is within 5 grey levels of the real one
        real = seam_step(ds.frame(b), lb, ds.landmarks[b])
        comp = seam_step(out * 255, lb, ds.landmarks[b])
        assert abs(comp - real) < 5.0, (comp, real)


def test_nearest_pose_frame_picks_the_frame(ds):
    from scipy.spatial.transform import Rotation

    c2h = ds.camera_to_head
    rng = np.random.default_rng(0)
    ks = [0, 17, 77, 150, len(c2h) - 1]
    assert nearest_pose_frame(c2h, c2h[ks]).tolist() == ks
    for k in ks:
        assert nearest_pose_frame(c2h, c2h[k]) == k
        d = pose_distance(c2h, c2h[k], ds.head_radius)
        assert d.shape == (len(c2h),) and d[k] < 1e-5
        # perturbed by a fraction of the distance to the next-nearest frame
        gap = np.sort(d)[1]
        # (in head-to-camera terms: rotate the head, move it)
        h2c = np.linalg.inv(c2h[k].astype(np.float64))
        axis = rng.normal(size=3)
        rot = Rotation.from_rotvec(axis / np.linalg.norm(axis) * 0.2 * gap / ds.head_radius)
        h2c[:3, :3] = rot.as_matrix() @ h2c[:3, :3]
        h2c[:3, 3] += rng.normal(size=3) * 0.1 * gap / np.sqrt(3)
        q = np.linalg.inv(h2c)
        assert pose_distance(c2h[k], q, ds.head_radius)[0] < 0.5 * gap
        assert ds.nearest_frame(q) == k
    # restricted to candidates: the nearest among them
    cand = np.arange(0, len(c2h), 10)
    got = nearest_pose_frame(c2h, c2h[5], candidates=cand)
    assert got in cand and got == cand[np.argmin(pose_distance(c2h[cand], c2h[5]))]
    # the metric: a pure translation counts its length, a pure rotation radius * angle
    base = np.eye(4)
    moved = base.copy()
    moved[:3, 3] = [0.3, 0.0, 0.4]
    assert pose_distance(base, moved, 2.0) == pytest.approx(0.5)
    turned = base.copy()
    turned[:3, :3] = Rotation.from_euler("y", 0.1).as_matrix()
    assert pose_distance(base, turned, 2.0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="query"):
        nearest_pose_frame(c2h, np.eye(3))


def test_retargeted_video_pose_gets_its_nearest_torso(ds, preprocessed):
    """Poses of another clip (Lieu), retargeted onto the Obama camera: each gets the Obama
    frame nearest in pose, and the full frame is composed from it."""
    from jeancore.data.tracking import HeadTracking
    from jeancore.render.sources import retarget_poses

    lieu = HeadTracking.load(preprocessed("lieu_6s_128").root / "tracking.npz")
    obama = HeadTracking.load(ds.root / "tracking.npz")
    poses = retarget_poses(lieu.rotation[:20], lieu.translation[:20], obama.rotation,
                           obama.translation)
    frames = ds.nearest_frame(poses)
    d = pose_distance(ds.camera_to_head, poses, ds.head_radius)
    assert np.array_equal(frames, d.argmin(1))
    assert len(set(frames.tolist())) > 1                  # the torso follows the motion
    heads = [_head_of(ds, int(f)) for f in frames[:3]]
    out = list(ds.iter_full_frames(heads, frames[:3]))
    assert len(out) == 3 and out[0].shape == (ds.size, ds.size, 3)
    with pytest.raises(ValueError, match="torso frames"):
        list(ds.iter_full_frames(heads, frames[:2]))


def test_dataset_without_torso_labels(ds, tmp_path):
    root = tmp_path / "no_parsing"
    shutil.copytree(ds.root, root, ignore=shutil.ignore_patterns("parsing", "head", "frames"))
    (root / "frames").mkdir()
    with pytest.raises(BadInputError, match="torso labels") as e:
        DatasetTorso(root)
    assert "\n" not in str(e.value)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["format"] == "jeancore-dataset"
