"""Tests of the emotion CNN port (``jeancore.data.emotion``).

The reference is Keras 3 (torch backend, no TensorFlow) running the very same ``fer`` HDF5
file: probabilities and the 128-d ``add_4`` pooled features of the PyTorch port must match it
on real face crops and on random inputs. Real behaviour is checked on the shared media:
``sad_woman_20s_640x360.mp4`` is a woman crying for its first ~6 s who then (from ~9.5 s)
smiles and laughs, so the network must put "sad" on top in the crying part and "happy" in the
laughing part; the Obama address is a calm talking face and must come out mostly "neutral",
not "sad". Face crop geometry is checked exactly on synthetic ramps.

Landmarks come from dlib directly (a small helper below), so the test does not depend on the
still-moving ``jeancore.data.landmarks`` module.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
import pytest
import torch

from jeancore.data import emotion as E
from jeancore.data.emotion import (
    EMOTION_LABELS,
    MiniXception,
    crop_boxes,
    emotion_features,
    face_crops,
    load_emotion_cnn,
)

SAD = EMOTION_LABELS.index("sad")
HAPPY = EMOTION_LABELS.index("happy")
NEUTRAL = EMOTION_LABELS.index("neutral")
N_SAMPLES = 40  # frames sampled evenly over each clip


# ---------------------------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------------------------

def _sample_frames(path, k):
    """k frames evenly spaced over a video: (uint8 RGB [k, H, W, 3], times in s [k])."""
    import av

    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        idx = np.linspace(0, len(frames) - 1, k).round().astype(int)
        rgb = np.stack([frames[i].to_ndarray(format="rgb24") for i in idx])
        times = np.array([float(frames[i].time) for i in idx])
    return rgb, times


@functools.lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    models = os.path.join(os.path.dirname(
        importlib.util.find_spec("face_recognition_models").origin), "models")
    return (dlib, dlib.get_frontal_face_detector(),
            dlib.shape_predictor(os.path.join(models, "shape_predictor_68_face_landmarks.dat")))


def _dlib_landmarks(frames, detect_side=256):
    """iBUG-68 landmarks [N, 68, 2] float32, pixel-corner convention, largest face per frame.

    The face detector runs on a copy whose shorter side is ``detect_side`` (fast); the shape
    predictor on the full frame."""
    import cv2

    dlib, det, sp = _dlib_models()
    out = []
    for i, im in enumerate(frames):
        s = min(1.0, detect_side / min(im.shape[:2]))
        small = cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else im
        rects = [dlib.rectangle(int(r.left() / s), int(r.top() / s), int(r.right() / s),
                                int(r.bottom() / s)) for r in det(small, 0)]
        if not rects:
            rects = list(det(im, 1))
        assert rects, f"dlib found no face in sampled frame {i}"
        shape = sp(im, max(rects, key=lambda r: r.area()))
        out.append([(p.x + 0.5, p.y + 0.5) for p in shape.parts()])
    return np.asarray(out, np.float32)


@pytest.fixture(scope="module")
def model():
    return load_emotion_cnn()


@pytest.fixture(scope="module")
def sad_clip(media):
    frames, times = _sample_frames(media / "video" / "sad_woman_20s_640x360.mp4", N_SAMPLES)
    return frames, _dlib_landmarks(frames), times


@pytest.fixture(scope="module")
def obama_clip(media):
    frames, times = _sample_frames(media / "video" / "obama_20s_450.mp4", N_SAMPLES)
    return frames, _dlib_landmarks(frames), times


@pytest.fixture(scope="module")
def keras_reference():
    """f(x [N, 64, 64, 1] float32) -> (add_4 pooled [N, 128], probs [N, 7]) from Keras 3."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    assert keras.backend.backend() == "torch", (
        f"keras was already imported with backend {keras.backend.backend()!r}")
    km = keras.models.load_model(str(E._default_path()), compile=False)
    sub = keras.Model(km.inputs, [km.get_layer("add_4").output,
                                  km.get_layer("predictions").output])

    def run(x):
        a4, probs = sub.predict(x, verbose=0, batch_size=64)
        a4, probs = np.asarray(a4), np.asarray(probs).reshape(len(x), len(EMOTION_LABELS))
        assert a4.shape == (len(x), 4, 4, 128), a4.shape
        return a4.mean(axis=(1, 2)), probs

    return run


# ---------------------------------------------------------------------------------------------
# 1. equivalence with Keras
# ---------------------------------------------------------------------------------------------

def _compare(model, keras_reference, crops):
    kf, kp = keras_reference(np.ascontiguousarray(crops.transpose(0, 2, 3, 1)))
    with torch.inference_mode():
        f, p = model(torch.from_numpy(crops))
    f, p = f.numpy(), p.numpy()
    assert f.shape == (len(crops), 128) and p.shape == (len(crops), 7)
    df, dp = np.abs(f - kf).max(), np.abs(p - kp).max()
    assert df < 1e-4, f"add_4 features differ from Keras by {df:.3g} (scale {np.abs(kf).max():.3g})"
    assert dp < 1e-5, f"probabilities differ from Keras by {dp:.3g}"
    np.testing.assert_array_equal(p.argmax(1), kp.argmax(1))
    return df, dp


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_matches_keras_on_real_faces(model, keras_reference, sad_clip, obama_clip):
    crops = np.concatenate([face_crops(sad_clip[0], sad_clip[1]),
                            face_crops(obama_clip[0], obama_clip[1])])
    _compare(model, keras_reference, crops)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_matches_keras_on_random_inputs(model, keras_reference):
    rng = np.random.default_rng(1234)
    crops = np.concatenate([
        rng.uniform(-1, 1, (4, 1, 64, 64)),
        np.clip(rng.normal(0, 0.3, (2, 1, 64, 64)), -1, 1),
        np.full((1, 1, 64, 64), -1.0), np.full((1, 1, 64, 64), 1.0),
    ]).astype(np.float32)
    _compare(model, keras_reference, crops)


def test_keras_same_padding_is_asymmetric():
    # TF "same": total padding (out-1)*stride + k - in, the odd pixel at the bottom/right.
    assert E._same_pad(60, 3, 2) == (0, 1)
    assert E._same_pad(30, 3, 2) == (0, 1)
    assert E._same_pad(15, 3, 2) == (1, 1)
    assert E._same_pad(60, 1, 2) == (0, 0)
    assert E._same_pad(8, 3, 1) == (1, 1)


@pytest.mark.parametrize("size", [5, 6, 7, 8, 15, 16, 30, 33, 60])
def test_max_pool_same_matches_explicit_padding(size):
    x = torch.from_numpy(np.random.default_rng(size).normal(size=(2, 3, size, size + 1))
                         .astype(np.float32))
    (t, b), (l, r) = E._same_pad(size, 3, 2), E._same_pad(size + 1, 3, 2)
    ref = torch.nn.functional.max_pool2d(
        torch.nn.functional.pad(x, (l, r, t, b), value=float("-inf")), 3, stride=2)
    got = E._max_pool_same(x, 3, 2)
    assert got.shape[-2:] == (-(-size // 2), -(-(size + 1) // 2))
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_forward_rejects_bad_input(model):
    with pytest.raises(ValueError, match=r"\[N, 1, 64, 64\]"):
        model(torch.zeros(2, 64, 64))
    with pytest.raises(ValueError, match=r"\[N, 1, 64, 64\]"):
        model(torch.zeros(2, 1, 48, 48))


# ---------------------------------------------------------------------------------------------
# 2. real behaviour
# ---------------------------------------------------------------------------------------------

def _top_hist(probs):
    top = probs.argmax(1)
    hist = np.bincount(top, minlength=len(EMOTION_LABELS)) / max(len(top), 1)
    return top, ", ".join(f"{EMOTION_LABELS[i]} {hist[i]:.0%}" for i in np.argsort(-hist)
                          if hist[i] > 0)


def test_crying_woman_is_sad_then_happy(model, sad_clip):
    frames, lms, times = sad_clip
    feats, probs = emotion_features(frames, lms, model=model)
    assert feats.shape == (N_SAMPLES, 128) and feats.dtype == np.float32
    assert probs.shape == (N_SAMPLES, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    top, dist = _top_hist(probs)
    crying, laughing = times < 5.5, times > 10.5
    sad_frac = (top[crying] == SAD).mean()
    happy_frac = (top[laughing] == HAPPY).mean()
    msg = (f"whole clip ({N_SAMPLES} frames): {dist}; sad on top in {sad_frac:.0%} of "
           f"{crying.sum()} frames of the crying part (t < 5.5 s, mean p(sad) "
           f"{probs[crying, SAD].mean():.2f}); happy on top in {happy_frac:.0%} of "
           f"{laughing.sum()} frames of the laughing part (t > 10.5 s)")
    print(msg)
    assert crying.sum() >= 8 and laughing.sum() >= 8, msg
    assert sad_frac >= 0.8, msg
    assert probs[crying, SAD].mean() > 0.5, msg
    assert happy_frac >= 0.8, msg


def test_talking_obama_is_not_sad(model, obama_clip):
    frames, lms, _ = obama_clip
    _, probs = emotion_features(frames, lms, model=model, batch_size=7)
    top, dist = _top_hist(probs)
    msg = f"Obama ({N_SAMPLES} frames): {dist}"
    print(msg)
    assert (top == NEUTRAL).mean() > 0.5, msg
    assert (top == SAD).mean() < 0.35, msg
    assert np.bincount(top, minlength=7).argmax() == NEUTRAL, msg


def test_emotion_features_batches_agree(model, obama_clip):
    frames, lms, _ = obama_clip
    f1, p1 = emotion_features(frames[:9], lms[:9], model=model, batch_size=256)
    f2, p2 = emotion_features(frames[:9], lms[:9], model=model, batch_size=4)
    np.testing.assert_allclose(f1, f2, atol=1e-5)
    np.testing.assert_allclose(p1, p2, atol=1e-6)
    f0, p0 = emotion_features(frames[:0], lms[:0], model=model)
    assert f0.shape == (0, 128) and p0.shape == (0, 7)
    with pytest.raises(ValueError, match="batch_size"):
        emotion_features(frames[:1], lms[:1], model=model, batch_size=0)


# ---------------------------------------------------------------------------------------------
# 3. face_crops geometry
# ---------------------------------------------------------------------------------------------

def _square_landmarks(x0, y0, extent, n=1, seed=0):
    """68 points whose bounding box is exactly [x0, x0+extent] x [y0, y0+extent]."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, extent, (68, 2))
    pts[0] = (0, 0)
    pts[1] = (extent, extent)
    return np.repeat((pts + (x0, y0))[None], n, axis=0).astype(np.float32)


def _ramp_frames(h, w, offset=0):
    """Frame 0: value = column + offset; frame 1: value = row + offset (grey RGB, uint8)."""
    cols = np.broadcast_to(np.arange(w)[None, :] + offset, (h, w))
    rows = np.broadcast_to(np.arange(h)[:, None] + offset, (h, w))
    return np.stack([np.repeat(a[..., None], 3, axis=2) for a in (cols, rows)]).astype(np.uint8)


def _fit_box(crop_row):
    """From a crop row of a linear ramp (value = pixel index + offset, averaged over each
    output pixel's footprint), recover (start, side) of the cropped span in pixel units."""
    v = (crop_row.astype(np.float64) + 1.0) * 255.0 / 2.0  # back to grey levels
    u = np.arange(crop_row.size) + 0.5
    slope, intercept = np.polyfit(u, v, 1)
    # value at continuous coordinate x is x - 0.5 (pixel j holds j, its centre is j + 0.5)
    return intercept + 0.5, slope * crop_row.size


def test_face_crop_geometry_on_ramps():
    extent = 100.0
    lms = _square_landmarks(78.0, 90.0, extent, n=2)
    frames = _ramp_frames(256, 256)
    crops = face_crops(frames, lms)
    assert crops.shape == (2, 1, 64, 64) and crops.dtype == np.float32
    assert crops.min() >= -1.0 and crops.max() <= 1.0
    # expected square: side 1.25 * extent, centred on the landmark box shifted up 0.1 * extent
    side = E._BOX_SCALE * extent
    cx, cy = 78.0 + extent / 2, 90.0 + extent / 2 - E._BOX_SHIFT_UP * extent
    x_start, x_side = _fit_box(crops[0, 0, 32])
    y_start, y_side = _fit_box(crops[1, 0, :, 32])
    assert abs(x_side - side) < 1.0 and abs(y_side - side) < 1.0, (x_side, y_side, side)
    assert abs(x_start + x_side / 2 - cx) < 0.75, (x_start, x_side, cx)
    assert abs(y_start + y_side / 2 - cy) < 0.75, (y_start, y_side, cy)
    # crop_boxes reports the same box
    np.testing.assert_allclose(crop_boxes(lms)[0], [cx - side / 2, cy - side / 2, side])
    # the column ramp is constant down a column, the row ramp along a row
    assert np.ptp(crops[0, 0, :, 10]) == 0 and np.ptp(crops[1, 0, 10, :]) == 0


def test_face_crop_scales_with_face_and_uses_bt601_grey():
    # the same synthetic "face" at two sizes gives (nearly) the same crop
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    big_img = np.kron(small, np.ones((8, 8, 1), np.uint8))            # 128 x 128
    small_img = np.kron(small, np.ones((4, 4, 1), np.uint8))          # 64 x 64
    lm_big = _square_landmarks(24.0, 36.0, 80.0)                       # box centre (64, 66)
    lm_small = _square_landmarks(12.0, 18.0, 40.0)
    a = face_crops(big_img[None], lm_big)
    b = face_crops(small_img[None], lm_small)
    assert np.abs(a - b).mean() < 0.05
    # grey = ITU-R BT.601 luma, like cv2.COLOR_RGB2GRAY
    flat = np.zeros((1, 40, 40, 3), np.uint8)
    flat[..., 0], flat[..., 1], flat[..., 2] = 200, 100, 50
    c = face_crops(flat, _square_landmarks(10.0, 10.0, 20.0))
    grey = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    np.testing.assert_allclose(c, np.float32(round(grey) / 255 * 2 - 1), atol=1e-6)


def test_face_crop_outside_frame_is_edge_padded():
    # a face in the top-left corner: the box leaves the frame on the left and the top
    frames = _ramp_frames(120, 160, offset=50)
    lms = _square_landmarks(-10.0, -20.0, 60.0, n=2)
    crops = face_crops(frames, lms)
    assert crops.shape == (2, 1, 64, 64) and np.isfinite(crops).all()
    edge = np.float32(50 / 255 * 2 - 1)  # value of column 0 / row 0: replicated outward
    x0, _, side = crop_boxes(lms)[0]
    n_out = int(np.floor(-x0 / side * 64)) - 1  # output columns fully left of the frame
    assert n_out > 5
    np.testing.assert_allclose(crops[0, 0, :, :n_out], edge, atol=1e-6)
    np.testing.assert_allclose(crops[1, 0, :n_out - 5, :], edge, atol=1e-6)
    assert crops[0, 0, 0, -1] > edge + 0.2  # inside the frame the ramp continues
    # a box larger than the whole frame still works
    big = face_crops(frames[:1], _square_landmarks(-100.0, -100.0, 400.0))
    assert big.shape == (1, 1, 64, 64) and np.isfinite(big).all()
    # a box entirely off the frame (bad landmarks) does not crash: it replicates the corner
    off = face_crops(frames[:1], _square_landmarks(500.0, 300.0, 30.0))
    np.testing.assert_allclose(off, np.float32((159 + 50) / 255 * 2 - 1), atol=1e-6)


def test_face_crops_rejects_bad_input():
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    lms = _square_landmarks(8.0, 8.0, 16.0, n=2)
    with pytest.raises(ValueError, match="uint8"):
        face_crops(frames.astype(np.float32), lms)
    with pytest.raises(ValueError, match="uint8"):
        face_crops(frames[..., 0], lms)
    with pytest.raises(ValueError, match="68"):
        face_crops(frames, lms[:, :5])
    with pytest.raises(ValueError, match="68"):
        face_crops(frames, lms[0])
    with pytest.raises(ValueError, match="2 frames but 1"):
        face_crops(frames, lms[:1])
    bad = lms.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        face_crops(frames, bad)
    with pytest.raises(ValueError, match="size"):
        face_crops(frames, lms, size=0)


# ---------------------------------------------------------------------------------------------
# 4. loading
# ---------------------------------------------------------------------------------------------

def test_load_default_is_eval_and_frozen(model):
    assert isinstance(model, MiniXception) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert model.blocks[0].bn1.eps == pytest.approx(1e-3)


def test_load_missing_file(tmp_path):
    missing = tmp_path / "nope.hdf5"
    with pytest.raises(FileNotFoundError, match="nope.hdf5"):
        load_emotion_cnn(missing)


def test_load_not_hdf5(tmp_path):
    bogus = tmp_path / "bogus.hdf5"
    bogus.write_text("this is not an HDF5 file\n")
    with pytest.raises(ValueError, match="bogus.hdf5"):
        load_emotion_cnn(bogus)


def test_load_wrong_hdf5(tmp_path):
    import h5py

    other = tmp_path / "other_model.h5"
    with h5py.File(other, "w") as f:
        f.create_group("model_weights").create_group("dense_1")
    with pytest.raises(ValueError, match=r"other_model\.h5.*conv2d_1"):
        load_emotion_cnn(other)
