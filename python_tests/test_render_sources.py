"""Driving sources of a rendering (jeancore.render.sources): speech windows, expression
features, head poses, and the length rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jeancore.data.camera import head_to_camera, mean_rotation
from jeancore.errors import BadInputError, ConfigError
from jeancore.render import sources as S
from jeancore.render.sources import expression as SE


# ------------------------------------------------------------------------------------------
# fit_length
# ------------------------------------------------------------------------------------------
def test_fit_length_modes_hand_computed():
    x = np.arange(4) * 10
    assert S.fit_length(x, 10).tolist() == [0, 10, 20, 30, 20, 10, 0, 10, 20, 30]
    assert S.fit_length(x, 10, "loop").tolist() == [0, 10, 20, 30, 0, 10, 20, 30, 0, 10]
    assert S.fit_length(x, 7, "hold").tolist() == [0, 10, 20, 30, 30, 30, 30]
    for mode in S.FIT_MODES:  # longer: cut; equal: unchanged; one frame: repeated
        assert S.fit_length(x, 2, mode).tolist() == [0, 10]
        assert S.fit_length(x, 4, mode).tolist() == x.tolist()
        assert S.fit_length(x[:1], 3, mode).tolist() == [0, 0, 0]
    # two frames ping-pong alternate
    assert S.fit_length(np.array([5, 6]), 5).tolist() == [5, 6, 5, 6, 5]


def test_fit_length_along_axis0_numpy_and_torch():
    x = np.random.default_rng(0).normal(size=(3, 4, 4)).astype(np.float32)
    y = S.fit_length(x, 6)
    assert y.shape == (6, 4, 4) and y.dtype == np.float32
    np.testing.assert_array_equal(y[[3, 4, 5]], x[[1, 0, 1]])
    t = S.fit_length(torch.from_numpy(x), 6, "loop")
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), x[[0, 1, 2, 0, 1, 2]])


def test_fit_length_errors():
    with pytest.raises(ValueError, match="mode"):
        S.fit_length(np.arange(3), 5, "bounce")
    with pytest.raises(ValueError, match="n must be"):
        S.fit_length(np.arange(3), 0)
    with pytest.raises(ValueError, match="at least one frame"):
        S.fit_length(np.zeros((0, 3)), 4)


# ------------------------------------------------------------------------------------------
# audio
# ------------------------------------------------------------------------------------------
LOGMEL = {"kind": "logmel", "fps": 25.0, "n_mels": 80}


def test_audio_windows_match_preprocessing(media, preprocessed):
    """The same speech given to `jean preprocess --audio` and to audio_windows gives the same
    windows: 8 s at 25 fps = 200 frames. (Another person's speech under Obama's lips: the
    audio-video offset check finds nothing significant, so nothing was shifted.)"""
    res = preprocessed("obama_radio31_128")
    assert res.meta["audio"]["av_sync"]["mode"] == "auto"
    assert not res.meta["audio"]["av_sync"]["applied"]
    wav = media / "audio" / "radio31_8s_en.wav"
    expected = np.load(res.root / "audio_features.npy")
    for features in (res.root, res.meta, res.meta["audio"], res.meta["audio"]["features"],
                     str(res.root / "meta.json")):
        got = S.audio_windows(wav, features)
        assert got.shape == (200, 16, 80) == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    got, samples = S.audio_windows(wav, res.meta, return_wav=True)
    assert samples.shape == (8 * 16000,)


def test_audio_windows_from_a_video_and_other_settings(media):
    """Audio from a video's track (48 kHz stereo AAC, resampled); MFCC settings; length from
    max_seconds."""
    w = S.audio_windows(media / "video" / "aoc_8s_512.mp4",
                        {"kind": "mfcc", "n_mfcc": 26, "fps": 25.0}, max_seconds=2.0)
    assert w.shape == (50, 16, 26) and np.isfinite(w).all()
    w = S.audio_windows(media / "audio" / "news_8s_zh.wav", LOGMEL, window=8)
    assert w.shape == (200, 8, 80)


def test_audio_windows_bad_input(media, tmp_path):
    import soundfile as sf

    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000 * 2, np.float32), 16000)
    with pytest.raises(BadInputError, match="silent"):
        S.audio_windows(silent, LOGMEL)
    quiet = tmp_path / "hum.wav"  # -80 dBFS noise: still silence
    sf.write(quiet, (1e-4 * np.random.default_rng(0).uniform(-1, 1, 32000)).astype(np.float32),
             16000)
    with pytest.raises(BadInputError, match="silent"):
        S.audio_windows(quiet, LOGMEL)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(BadInputError, match="empty"):
        S.audio_windows(empty, LOGMEL)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 20)
    with pytest.raises(BadInputError):
        S.audio_windows(text, LOGMEL)
    with pytest.raises(BadInputError, match="no such file"):
        S.audio_windows(tmp_path / "missing.wav", LOGMEL)
    with pytest.raises(BadInputError, match="no audio track"):
        S.audio_windows(media / "edge" / "carphone_4s_qcif_noaudio.mp4", LOGMEL)


def test_audio_windows_bad_settings(media, tmp_path):
    wav = media / "audio" / "radio31_8s_en.wav"
    with pytest.raises(ConfigError, match="precomputed"):
        S.audio_windows(wav, {"kind": "precomputed", "path": "x.npy", "rate": 50})
    with pytest.raises(ConfigError, match="fps"):
        S.audio_windows(wav, LOGMEL, fps=30.0)
    with pytest.raises(ConfigError, match="kind"):
        S.audio_windows(wav, {"n_mels": 80})
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"format": "jeancore-dataset", "audio": None}))
    with pytest.raises(BadInputError, match="without audio"):
        S.audio_windows(wav, meta)


# ------------------------------------------------------------------------------------------
# expression
# ------------------------------------------------------------------------------------------
def test_expression_source_real_video(media):
    from jeancore.data.emotion import emotion_from_crops
    from jeancore.data.facecrop import face_crop_grey

    src = S.expression_source(media / "video" / "sad_woman_20s_640x360.mp4", max_seconds=2.0,
                              crop_size=128)
    assert src.n_frames == 50 and src.fps == 25.0  # 23.976 fps source resampled to 25
    assert src.features.shape == (50, 128) and src.features.dtype == np.float32
    assert src.crops.shape == (50, 128, 128, 3) and src.crops.dtype == np.uint8
    assert src.found.mean() > 0.9 and not src.held.any()
    np.testing.assert_allclose(src.probs.sum(1), 1.0, atol=1e-5)
    # the features are the emotion CNN's on the face crop cut from the landmarks
    k = int(np.flatnonzero(src.found)[7])
    f, _ = emotion_from_crops(face_crop_grey(src.crops[k], src.landmarks[k])[None])
    np.testing.assert_allclose(src.features[k], f[0], atol=1e-4)
    # a sad face: the CNN's "sad" or other negative classes dominate over "happy"
    assert src.probs[:, 3].mean() < 0.5


def test_expression_source_without_face(media):
    with pytest.raises(BadInputError, match="no face"):
        S.expression_source(media / "edge" / "no_face_4s.mp4")


def test_hold_index():
    valid = np.array([0, 1, 0, 0, 0, 1, 0], bool)
    assert SE._hold_index(valid).tolist() == [1, 1, 1, 1, 5, 5, 5]


# ------------------------------------------------------------------------------------------
# head pose
# ------------------------------------------------------------------------------------------
def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def test_retarget_poses_hand_computed():
    """Driving head: turns of -0.2, 0, +0.2 rad about y around a mean pose A at depth 20 dm,
    with sideways offsets of -1, 0, 1 dm. Target: one pose R0 at depth 10 dm. Expected: the
    same turns applied to R0 and offsets scaled by the depth ratio 10 / 20."""
    A, R0 = _rot_x(0.3), _rot_x(-0.1) @ _rot_y(0.05)
    angles = np.array([-0.2, 0.0, 0.2])
    r_d = np.stack([_rot_y(a) @ A for a in angles])
    t_d = np.array([[-1.0, 0, -20], [0, 0, -20], [1, 0, -20]])
    t0 = np.array([[0.1, -0.2, -10.0]])
    c2h = S.retarget_poses(r_d, t_d, R0[None], t0)
    assert c2h.shape == (3, 4, 4) and c2h.dtype == np.float32
    r, t = head_to_camera(c2h)
    for i, a in enumerate(angles):
        np.testing.assert_allclose(r[i], _rot_y(a) @ R0, atol=1e-6)
        np.testing.assert_allclose(t[i], t0[0] + [0.5 * (i - 1), 0, 0], atol=1e-5)
    # motion_scale 0 freezes the target's mean pose; the bottom row stays [0 0 0 1]
    r, t = head_to_camera(S.retarget_poses(r_d, t_d, R0[None], t0, motion_scale=0.0))
    np.testing.assert_allclose(r, np.repeat(R0[None], 3, 0), atol=1e-6)
    np.testing.assert_allclose(t, np.repeat(t0, 3, 0), atol=1e-5)
    np.testing.assert_array_equal(c2h[:, 3], np.tile([0, 0, 0, 1], (3, 1)))


def test_head_poses_dataset_frozen_array(preprocessed):
    from jeancore.data.tracking import HeadTracking

    res = preprocessed("obama_radio31_128")
    tr = HeadTracking.load(res.root / "tracking.npz")
    n = len(tr.camera_to_head)
    poses = S.head_poses(res.root, n + 30)
    assert poses.shape == (n + 30, 4, 4) and poses.dtype == np.float32
    np.testing.assert_array_equal(poses[:n], tr.camera_to_head)
    np.testing.assert_array_equal(poses[n:], tr.camera_to_head[n - 2:n - 32:-1])  # ping-pong
    frozen = S.head_poses("frozen", 12, dataset=res.root)
    assert (frozen == frozen[0]).all()
    # a real training pose, nearer the mean pose than the average training pose is
    dist = np.abs(tr.camera_to_head - frozen[0]).max(axis=(1, 2))
    i = int(dist.argmin())
    assert dist[i] == 0 and i < res.meta["split"]["val_start"]
    np.testing.assert_array_equal(S.head_poses("frozen", 2, dataset=res.root, frozen_frame=5),
                                  tr.camera_to_head[[5, 5]])
    np.testing.assert_array_equal(S.head_poses(tr.camera_to_head[:3], 4, mode="hold"),
                                  tr.camera_to_head[[0, 1, 2, 2]])
    with pytest.raises(ValueError, match="dataset"):
        S.head_poses("frozen", 5)
    with pytest.raises(ValueError, match="4, 4"):
        S.head_poses(np.zeros((3, 3, 3)), 5)


def test_head_poses_from_video_retargeted(media, preprocessed):
    """AOC's head motion applied around Obama's mean pose: valid rigid transforms whose mean
    rotation and translation are the dataset's."""
    from jeancore.data.tracking import HeadTracking

    res = preprocessed("obama_radio31_128")
    tr = HeadTracking.load(res.root / "tracking.npz")
    poses = S.head_poses(media / "video" / "aoc_8s_512.mp4", 40, dataset=res.root,
                         crop_size=128)
    assert poses.shape == (40, 4, 4) and np.isfinite(poses).all()
    r, t = head_to_camera(poses)
    np.testing.assert_allclose(np.einsum("tij,tkj->tik", r, r), np.broadcast_to(np.eye(3),
                               r.shape), atol=1e-5)
    mean_r, target_r = mean_rotation(r), mean_rotation(tr.rotation)
    assert np.degrees(np.arccos(np.clip((np.trace(mean_r @ target_r.T) - 1) / 2, -1, 1))) < 0.1
    np.testing.assert_allclose(t.mean(0), tr.translation.mean(0), atol=1e-3)
    # the head does move (a talking person), by a plausible amount (< 30 degrees)
    spread = np.degrees(np.arccos(np.clip((np.einsum("tij,ij->t", r, mean_r) - 1) / 2, -1, 1)))
    assert 0.2 < spread.max() < 30
    with pytest.raises(ValueError, match="dataset"):
        S.head_poses(media / "video" / "aoc_8s_512.mp4", 10)
    with pytest.raises(BadInputError, match="no face"):
        S.head_poses(media / "edge" / "no_face_4s.mp4", 10, dataset=res.root)
