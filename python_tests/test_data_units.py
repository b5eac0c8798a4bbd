"""Building blocks of preprocessing, against known answers and real media."""

from __future__ import annotations

import numpy as np
import pytest

from jeancore._io import atomic_dir, atomic_path, save_json
from jeancore.data.audio import (LogMelFeatures, MFCCFeatures, PrecomputedFeatures,
                                 frame_audio_features, window_features)
from jeancore.data.facecrop import choose_crop
from jeancore.data.landmarks import DlibLandmarkDetector, fill_gaps, frame_ranges
from jeancore.data.parsing import (BackgroundAccumulator, PersonSegmenter, fill_holes,
                                   head_torso_masks, jaw_boundary)
from jeancore.data.video import (iter_frames, load_audio, output_frame_count, probe_video,
                                 write_video)
from jeancore.errors import BadInputError


# ------------------------------------------------------------------------------------------
# video / audio
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, fps_in, n_out", [
    ("video/obama_20s_450.mp4", 25.0, 500),
    ("video/sad_woman_20s_640x360.mp4", 24000 / 1001, 492),      # 19.685 s, repeats frames
    ("edge/carphone_4s_qcif_noaudio.mp4", 30000 / 1001, 100),    # 4.004 s, drops frames
])
def test_frame_counts_after_resampling(media, name, fps_in, n_out):
    info = probe_video(media / name)
    assert info.fps == pytest.approx(fps_in, rel=1e-6)
    assert output_frame_count(info.duration, 25) == n_out
    assert sum(1 for _ in iter_frames(media / name, 25)) == n_out


def test_resampling_picks_nearest_frames(media):
    """30000/1001 fps -> 25 fps: output frame k is source frame round(k * 1.1988)."""
    path = media / "edge/carphone_4s_qcif_noaudio.mp4"
    src = list(iter_frames(path, 30000 / 1001))
    out = list(iter_frames(path, 25, max_frames=40))
    for k, frame in enumerate(out):
        t = k / 25
        j = int(np.argmin(np.abs(np.arange(len(src)) * 1001 / 30000 - t)))
        assert np.array_equal(frame, src[j]), k


def test_crop_and_resize(media):
    path = media / "video/obama_20s_450.mp4"
    full = next(iter_frames(path, 25))
    crop = next(iter_frames(path, 25, crop=(100, 50, 200)))
    np.testing.assert_array_equal(crop, full[50:250, 100:300])
    edge = next(iter_frames(path, 25, crop=(-10, -10, 100)))  # replicate the border
    np.testing.assert_array_equal(edge[10:, 10:], full[:90, :90])
    np.testing.assert_array_equal(edge[0, 10:], full[0, :90])
    small = next(iter_frames(path, 25, size=128))
    assert small.shape == (128, 128, 3) and small.dtype == np.uint8


def test_load_audio_resamples_to_16k_mono(media):
    wav = load_audio(media / "video/obama_20s_450.mp4")  # AAC 48 kHz stereo
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) / 16000 - 20.0) < 0.05
    assert 0.05 < np.abs(wav).max() <= 1.0
    ref = load_audio(media / "audio/radio31_8s_en.wav")  # PCM 16 kHz
    import soundfile as sf

    direct, sr = sf.read(media / "audio/radio31_8s_en.wav", dtype="float32")
    assert sr == 16000
    direct = direct.mean(1) if direct.ndim == 2 else direct
    np.testing.assert_allclose(ref[: len(direct)], direct, atol=1e-4)
    with pytest.raises(BadInputError, match="no audio track"):
        load_audio(media / "edge/carphone_4s_qcif_noaudio.mp4")


def test_write_video_roundtrip_with_audio(media, tmp_path):
    frames = list(iter_frames(media / "video/obama_20s_450.mp4", 25, size=128, max_frames=50))
    wav = load_audio(media / "audio/radio31_8s_en.wav")[: 2 * 16000]
    out = tmp_path / "o.mp4"
    write_video(out, frames, 25, audio=wav)
    info = probe_video(out)
    assert (info.width, info.height, info.fps) == (128, 128, 25)
    assert info.has_audio and abs(info.duration - 2.0) < 0.05
    back = list(iter_frames(out, 25))
    assert len(back) == 50
    assert np.abs(back[10].astype(float) - frames[10]).mean() < 4
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    # the sound is not delayed by the AAC encoder's priming samples, nor lengthened
    assert abs(info.audio_duration - 2.0) <= 1 / 25
    got = load_audio(out)[: len(wav)]
    lags = np.arange(-2048, 2049, 8)
    corr = [np.dot(got[2048 + k:len(wav) - 2048 + k], wav[2048:len(wav) - 2048]) for k in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 16
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "e.mp4", [], 25)
    assert not (tmp_path / "e.mp4").exists()


# ------------------------------------------------------------------------------------------
# audio features
# ------------------------------------------------------------------------------------------
def test_window_features_indices():
    feats = np.arange(50, dtype=np.float32)[:, None]  # step j holds j: 1 s at 50 Hz
    w = window_features(feats, n_frames=25, fps=25, rate=50, window=16)
    assert w.shape == (25, 16, 1)
    # frame k is centred at step round(2k + 1): window 2k+1-8 .. 2k+1+7, edge-padded
    k = 10
    np.testing.assert_array_equal(w[k, :, 0], np.arange(2 * k + 1 - 8, 2 * k + 1 + 8))
    np.testing.assert_array_equal(w[0, :8, 0], [0] * 7 + [0])
    np.testing.assert_array_equal(w[-1, -3:, 0], [49, 49, 49])
    with pytest.raises(ValueError, match="too short"):
        window_features(feats[:5], n_frames=25, fps=25, rate=50)
    # an audio-video offset correction moves every centre by round(offset * rate) steps
    # (0.12 s -> 6 steps = 3 frames: window k is the uncorrected window k + 3), either way
    w_late = window_features(feats, n_frames=25, fps=25, rate=50, window=16, offset_s=0.12)
    np.testing.assert_array_equal(w_late[k, :, 0], np.arange(2 * k + 7 - 8, 2 * k + 7 + 8))
    np.testing.assert_array_equal(w_late[:-3], w[3:])
    w_early = window_features(feats, n_frames=25, fps=25, rate=50, window=16, offset_s=-0.04)
    np.testing.assert_array_equal(w_early[k, :, 0], np.arange(2 * k - 1 - 8, 2 * k - 1 + 8))
    # the length check is on the uncorrected timing: audio exactly as long as the video passes
    assert window_features(feats, n_frames=25, fps=25, rate=50, offset_s=0.4).shape == w.shape


def test_logmel_features_on_speech(media):
    wav = load_audio(media / "audio/radio31_8s_en.wav")
    ext = LogMelFeatures(fps=25)
    f = ext(wav, 16000)
    assert ext.rate == 50 and ext.hop == 320
    assert f.shape == (1 + len(wav) // 320, 80)
    np.testing.assert_allclose(f.mean(0), 0, atol=1e-3)   # per-clip normalised
    np.testing.assert_allclose(f.std(0), 1, atol=1e-2)
    # against librosa directly (dB of the mel power)
    import librosa

    mel = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=512, hop_length=320,
                                         win_length=400, n_mels=80, fmin=55, fmax=7600)
    db = 10 * np.log10(np.maximum(mel, 1e-10)).T
    ref = (db - db.mean(0)) / (db.std(0) + 1e-5)
    np.testing.assert_allclose(f, ref, atol=1e-3)
    m = MFCCFeatures(fps=25, n_mfcc=13)(wav, 16000)
    assert m.shape == (f.shape[0], 13)
    w = frame_audio_features(wav, 200, 25)
    assert w.shape == (200, 16, 80)


def test_audio_feature_errors(tmp_path):
    with pytest.raises(BadInputError, match="too short"):
        LogMelFeatures()(np.zeros(100, np.float32), 16000)
    with pytest.raises(BadInputError, match="NaN"):
        LogMelFeatures()(np.full(16000, np.nan, np.float32), 16000)
    with pytest.raises(ValueError, match="16000"):
        LogMelFeatures()(np.zeros(16000, np.float32), 44100)
    p = tmp_path / "f.npy"
    np.save(p, np.ones((7, 3, 4)))
    with pytest.raises(BadInputError, match="expected float features"):
        PrecomputedFeatures(path=str(p))
    np.save(p, np.ones((100, 29), np.float32))
    ext = PrecomputedFeatures(path=str(p), rate=50)
    assert ext.dim == 29 and window_features(ext(), 50, 25, ext.rate).shape == (50, 16, 29)


# ------------------------------------------------------------------------------------------
# landmarks
# ------------------------------------------------------------------------------------------
def test_fill_gaps_interpolates_short_gaps_only():
    pts = np.zeros((12, 68, 2), np.float32)
    pts[:, :, 0] = np.arange(12)[:, None]
    found = np.ones(12, bool)
    found[[3, 4]] = False          # gap of 2: filled
    found[6:10] = False            # gap of 4 > max_gap 3: left missing
    found[0] = False               # at the start: left missing
    tr = fill_gaps(pts, found, max_gap=3)
    np.testing.assert_allclose(tr.points[3:5, :, 0], [[3] * 68, [4] * 68])
    assert tr.interpolated.tolist() == [i in (3, 4) for i in range(12)]
    assert np.isnan(tr.points[0]).all() and np.isnan(tr.points[6:10]).all()
    assert tr.valid.sum() == 7
    assert frame_ranges(~tr.valid) == "0, 6-9"
    assert frame_ranges(~tr.valid, fps=25) == "0 (0.00s), 6-9 (0.24-0.40s)"


def test_dlib_landmarks_on_real_faces(media):
    det = DlibLandmarkDetector()
    frame = next(iter_frames(media / "video/obama_20s_450.mp4", 25))
    pts = det(frame)
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    # anatomy: eyes above the nose tip above the mouth, left eye left of the right eye
    assert pts[36:48, 1].mean() < pts[30, 1] < pts[48:68, 1].mean() < pts[8, 1]
    assert pts[36:42, 0].mean() < pts[42:48, 0].mean()
    face_w = pts[16, 0] - pts[0, 0]
    assert 120 < face_w < 300
    noface = next(iter_frames(media / "edge/no_face_4s.mp4", 25))
    assert det(noface) is None


# ------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------
def test_jaw_boundary_and_head_split():
    lm = np.zeros((68, 2), np.float32)
    # a V-shaped jaw from (10, 20) down to (20, 40) and up to (30, 20)
    xs = np.linspace(10, 30, 17)
    lm[:17, 0] = xs
    lm[:17, 1] = 40 - 2 * np.abs(xs - 20)
    b = jaw_boundary(lm, 40)
    assert b[20] == pytest.approx(39.0, abs=0.01)       # column centre 20.5
    assert b[0] == pytest.approx(lm[4, 1]) and b[39] == pytest.approx(lm[12, 1])
    person = np.ones((50, 40), np.float32)
    head, torso = head_torso_masks(person, lm)
    assert not (head & torso).any() and (head | torso).all()
    assert head[38, 20] and torso[40, 20] and head[0, 0] and torso[49, 0]


def test_background_median_and_hole_fill():
    rng = np.random.default_rng(0)
    bg_true = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    acc = BackgroundAccumulator(margin=0)
    for i in range(5):
        frame = bg_true.copy()
        person = np.zeros((20, 30), bool)
        person[:, 10 + 2 * i: 13 + 2 * i] = True  # a moving person
        person[:, 25:] = True                      # never leaves the right edge
        frame[person] = 255 - i
        acc.add(frame, person)
    bg, seen = acc.result()
    assert seen[:, :25].all() and not seen[:, 25:].any()
    np.testing.assert_array_equal(bg[:, :25], bg_true[:, :25])
    # holes are filled smoothly from the seen pixels (not left black)
    assert bg[:, 25:].mean() > 30
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = 100
    known = np.zeros((16, 16), bool)
    known[:, :8] = True
    filled = fill_holes(img, known)
    assert np.abs(filled.astype(int) - 100).max() <= 1


def test_person_segmentation_real_frame(media):
    frame = next(iter_frames(media / "video/obama_20s_450.mp4", 25))
    seg = PersonSegmenter()
    p = seg(frame)
    seg.close()
    assert p.shape == (450, 450) and p.dtype == np.float32
    assert p[225, 225] > 0.9            # the face, centre of the frame
    assert p[20, 20] < 0.1 and p[20, 430] < 0.1   # the window behind, top corners
    assert 0.2 < (p > 0.5).mean() < 0.8


# ------------------------------------------------------------------------------------------
# crop, atomic writes
# ------------------------------------------------------------------------------------------
def test_choose_crop():
    boxes = np.array([[100, 100, 200, 200], [110, 100, 210, 200], [90, 100, 190, 200.]])
    x0, y0, side = choose_crop(boxes, 640, 480, scale=2.0, face_height=0.5)
    assert side == 200 and (x0, y0) == (50, 50)
    # clamped into the frame and to its shorter side
    x0, y0, side = choose_crop(boxes, 640, 480, scale=10)
    assert side == 480 and y0 == 0 and 0 <= x0 <= 160
    x0, y0, side = choose_crop(np.array([[0, 0, 50, 50.]]), 640, 480, scale=2)
    assert (x0, y0, side) == (0, 0, 100)
    with pytest.raises(ValueError):
        choose_crop(np.zeros((0, 4)), 10, 10)


def test_atomic_writes_leave_nothing_on_error(tmp_path):
    target = tmp_path / "a.json"
    save_json(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert target.read_text().strip().startswith("{") and len(list(tmp_path.iterdir())) == 1
    d = tmp_path / "d"
    with atomic_dir(d) as tmp:
        (tmp / "1").write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as tmp:
            (tmp / "2").write_text("two")
            raise RuntimeError
    assert sorted(p.name for p in d.iterdir()) == ["1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"]


def test_atomic_writes_have_normal_permissions(tmp_path):
    """mkstemp/mkdtemp create 0600/0700; the final files and folders get the usual modes."""
    import os

    mask = os.umask(0o022)
    try:
        save_json(tmp_path / "m.json", {})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
