"""Offline lip-speech sync score (jeancore.metrics.lipsync; not LSE-C) on real clips: an mp4
with its own sound, frames with a separate wav, a dataset folder's ground truth; other
people's speech; speech shifted by known delays; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from jeancore.data.landmarks import DlibLandmarkDetector
from jeancore.data.video import iter_frames, load_audio
from jeancore.errors import BadInputError
from jeancore.metrics.lipsync import (LABEL, lip_sync_from_landmarks, lip_sync_score,
                                      mouth_opening)

SR = 16000
RADIO = ("radio31_8s_en", "radio34_8s_en", "radio36_8s_en", "radio40_8s_en")


@pytest.fixture(scope="module")
def obama(media):
    """8 s of the Obama clip scored as a rendered mp4 would be: the file with its own sound."""
    return lip_sync_score(media / "video/obama_20s_450.mp4", max_seconds=8.0)


def test_mp4_with_its_own_sound_and_other_speech(obama, media):
    assert obama.n_frames == obama.frames_with_face == 200 and obama.fps == 25.0
    assert obama.landmarks.shape == (200, 68, 2)
    assert obama.z > 3.5                        # synchronised speech
    assert 0.15 < obama.lag_s < 0.3             # its speech is late (0.21-0.23 s, test_av_sync)
    for name in RADIO:                          # the same lips under other people's speech
        other = lip_sync_from_landmarks(obama.landmarks,
                                        load_audio(media / "audio" / f"{name}.wav"), 25.0)
        assert other.z < 3.0 and other.z < obama.z - 1.0, name
    d = obama.as_dict()
    assert d["label"] == LABEL and "not LSE-C" in d["label"] and "landmarks" not in d
    assert d["z"] == round(obama.z, 4)


def test_known_delays_move_the_lag(obama, media):
    wav = load_audio(media / "video/obama_20s_450.mp4")
    n = int(0.2 * SR)
    late = lip_sync_from_landmarks(obama.landmarks, np.concatenate(
        [np.zeros(n, np.float32), wav]), 25.0)
    assert late.lag_s - obama.lag_s == pytest.approx(0.2, abs=0.01)
    n = int(0.1 * SR)
    early = lip_sync_from_landmarks(obama.landmarks, wav[n:], 25.0)
    assert early.lag_s - obama.lag_s == pytest.approx(-0.1, abs=0.01)
    assert late.z > 3.0 and early.z > 3.0       # shifted, still the same speech


def test_frames_with_a_separate_wav(media):
    """noem_18s_256 (30 fps, its speech in a .wav beside it): frames + the wav file, and the
    same wav as a waveform give the same score; radio speech under its lips scores lower."""
    video = media / "video_separate_audio/noem_18s_256.mp4"
    wav_path = video.with_suffix(".wav")
    frames = np.stack(list(iter_frames(video, 30.0, max_frames=240)))
    own = lip_sync_score(frames, wav_path, fps=30.0)
    assert own.n_frames == 240 and own.frames_with_face == 240 and own.fps == 30.0
    assert own.z > 3.5 and 0.05 < own.lag_s < 0.15
    same = lip_sync_from_landmarks(own.landmarks, load_audio(wav_path), 30.0)
    assert same.z == pytest.approx(own.z) and same.lag_s == pytest.approx(own.lag_s)
    for name in RADIO:
        other = lip_sync_from_landmarks(own.landmarks,
                                        load_audio(media / "audio" / f"{name}.wav"), 30.0)
        assert other.z < 3.0 and other.z < own.z - 1.0, name


def test_dataset_ground_truth(preprocessed):
    """A dataset folder: its landmarks, fps and audio.wav; the score is preprocessing's own
    audio-video offset estimate (meta.json audio.av_sync: the same method and inputs)."""
    res = preprocessed("obama_8s_128")
    gt = lip_sync_score(res.root)
    sync = res.meta["audio"]["av_sync"]
    assert gt.n_frames == res.meta["n_frames"] and gt.fps == 25.0
    with np.load(res.root / "landmarks.npz") as z:
        assert gt.frames_with_face == int(z["found"].sum())
    assert gt.lag_s == pytest.approx(sync["lag_s"], abs=1e-3)
    assert gt.z == pytest.approx(sync["significance"], abs=1e-2)
    assert gt.z > 3.0 and 0.15 < gt.lag_s < 0.3
    part = lip_sync_score(res.root, max_seconds=4.0)
    assert part.n_frames == 100


def test_frames_without_a_face_are_interpolated_and_counted():
    pts = np.zeros((6, 68, 2))
    pts[:, 36], pts[:, 45] = [0, 0], [4, 0]
    pts[:, 51], pts[:, 57] = [2, 5], [2, 5]
    pts[:, 62], pts[:, 66] = [2, 5], [2, 5]
    pts[:, 57, 1] += np.arange(6)                      # outer gap 0..5 -> opening t / 4
    pts[[1, 2]] = np.nan
    opening, n = mouth_opening(pts)
    assert n == 4
    np.testing.assert_allclose(opening, np.arange(6) / 4)   # linear gap filled exactly
    pts[:4] = np.nan
    with pytest.raises(BadInputError, match="only 2 of 6 frames.*0-3"):
        mouth_opening(pts)
    with pytest.raises(BadInputError, match="no face found in any"):
        mouth_opening(np.full((5, 68, 2), np.nan))


def test_bad_input(media, obama, tmp_path):
    wav = load_audio(media / "video/obama_20s_450.mp4")
    with pytest.raises(BadInputError, match="no audio track"):
        lip_sync_score(media / "edge/carphone_4s_qcif_noaudio.mp4")
    with pytest.raises(BadInputError, match="no face found"):
        lip_sync_score(media / "edge/no_face_4s.mp4",
                       detector=DlibLandmarkDetector(upsample_retry=False))
    with pytest.raises(BadInputError, match="too short"):
        lip_sync_score(media / "video/obama_20s_450.mp4", max_seconds=2.0)
    with pytest.raises(BadInputError, match="too short"):         # audio covers only 2 s
        lip_sync_from_landmarks(obama.landmarks, wav[:2 * SR], 25.0)
    with pytest.raises(BadInputError, match="silent"):
        lip_sync_from_landmarks(obama.landmarks, np.zeros_like(wav), 25.0)
    with pytest.raises(BadInputError, match="mono"):
        lip_sync_from_landmarks(obama.landmarks, np.stack([wav, wav], 1), 25.0)
    with pytest.raises(BadInputError, match="no such file"):
        lip_sync_score(tmp_path / "missing.mp4")
    with pytest.raises(BadInputError, match="no such file"):
        lip_sync_score(media / "video/obama_20s_450.mp4", tmp_path / "missing.wav")
    with pytest.raises(BadInputError, match="not a jeancore dataset"):
        lip_sync_score(tmp_path)
    with pytest.raises(ValueError, match="fps"):
        lip_sync_score(np.zeros((80, 32, 32, 3), np.uint8), wav)
    with pytest.raises(ValueError, match="16000"):
        lip_sync_from_landmarks(obama.landmarks, wav, 25.0, sr=48000)
