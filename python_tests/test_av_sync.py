"""Audio-video offset estimation (jeancore.data.sync) and its correction in preprocessing,
on real clips: the Obama clip's speech comes about 0.12 s late against its lips."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from jeancore.data import PreprocessConfig, preprocess
from jeancore.data.sync import (REFERENCE_LAG_S, TOLERANCE_S, estimate_av_offset, lip_opening,
                                speech_envelope)
from jeancore.errors import BadInputError, ConfigError

SR = 16000


def _clip(preprocessed, name="obama_8s_128"):
    res = preprocessed(name)
    with np.load(res.root / "landmarks.npz") as z:
        points = z["points"]
    wav, sr = sf.read(res.root / "audio.wav", dtype="float32")
    assert sr == SR
    return res, points, wav


def test_lip_opening_known_answer():
    pts = np.zeros((2, 68, 2))
    pts[:, 36], pts[:, 45] = [0, 0], [4, 0]            # inter-ocular distance 4
    pts[:, 51], pts[:, 57] = [2, 5], [2, 7]            # outer lips 2 apart
    pts[:, 62], pts[:, 66] = [2, 5.5], [2, 6.5]        # inner lips 1 apart
    pts[1] *= 3                                         # scale does not matter
    np.testing.assert_allclose(lip_opening(pts), [0.75, 0.75])
    with pytest.raises(BadInputError, match="iBUG-68"):
        lip_opening(np.zeros((5, 51, 2)))
    with pytest.raises(BadInputError, match="coincident"):
        lip_opening(np.zeros((5, 68, 2)))


def test_speech_envelope_follows_energy():
    """Broadband noise in the second half only: the envelope is high there (100 steps/s)."""
    t = np.arange(SR) / SR
    noise = np.random.default_rng(0).normal(0, 0.1, SR)
    wav = np.where(t >= 0.5, noise, 0.0).astype(np.float32)
    env = speech_envelope(wav)
    assert env.shape == (1 + SR // 160,)
    assert env[60:].min() - env[:40].max() > 60       # dB
    with pytest.raises(BadInputError, match="mono"):
        speech_envelope(np.zeros((10, 2)))


def test_obama_offset_and_known_shifts(preprocessed):
    """The clip's own lag, then the same speech delayed by 0.15 s and advanced by 0.1 s: the
    measured lag moves by exactly that (to 5 ms)."""
    _, points, wav = _clip(preprocessed)
    est = estimate_av_offset(points, wav, 25.0)
    assert est.significant and est.applied
    assert 0.19 < est.lag_s < 0.26                     # speech about 0.12 s late vs 0.1
    assert est.offset_s == pytest.approx(est.lag_s - REFERENCE_LAG_S)
    n = int(0.15 * SR)
    late = estimate_av_offset(points, np.concatenate([np.zeros(n, np.float32), wav]), 25.0)
    assert late.lag_s - est.lag_s == pytest.approx(0.15, abs=0.005) and late.applied
    n = int(0.10 * SR)
    early = estimate_av_offset(points, np.concatenate([wav[n:], np.zeros(n, np.float32)]), 25.0)
    assert early.lag_s - est.lag_s == pytest.approx(-0.10, abs=0.005)
    # now within one frame of the reference lag: significant, but nothing to correct
    assert early.significant and abs(early.lag_s - REFERENCE_LAG_S) < TOLERANCE_S
    assert not early.applied and early.offset_s == 0.0


def test_unrelated_or_silent_speech_is_not_corrected(media, preprocessed):
    """Other people's speech under Obama's lips, and silence: no significant lag."""
    import librosa

    _, points, wav = _clip(preprocessed)
    for name in ("radio31_8s_en", "radio34_8s_en", "radio36_8s_en", "radio40_8s_en"):
        other, _ = librosa.load(media / "audio" / f"{name}.wav", sr=SR)
        est = estimate_av_offset(points, other, 25.0)
        assert est.significance < 4.0 and not est.applied and est.offset_s == 0.0, name
    silent = estimate_av_offset(points, np.zeros_like(wav), 25.0)
    assert not silent.significant and silent.offset_s == 0.0


def test_bad_input(preprocessed):
    _, points, wav = _clip(preprocessed)
    with pytest.raises(BadInputError, match="too few"):
        estimate_av_offset(points[:60], wav, 25.0)
    with pytest.raises(BadInputError, match="shorter"):
        estimate_av_offset(points, wav[: 4 * SR], 25.0)
    with pytest.raises(BadInputError, match="positive"):
        estimate_av_offset(points, wav, 0.0)
    with pytest.raises(ConfigError, match="av_sync"):
        PreprocessConfig(av_sync="sometimes").validate()
    with pytest.raises(ConfigError, match="av_sync"):
        PreprocessConfig(av_sync="5").validate()


def test_preprocessing_corrects_the_offset(media, preprocessed, tmp_path):
    """`jean preprocess` (av_sync auto) records the estimate in meta.json and takes the speech
    windows 0.12 s later (6 steps = 3 frames); re-running with av_sync off rebuilds only the
    audio step and gives the uncorrected windows; a manual offset is applied as given."""
    res = preprocessed("obama_8s_128")
    sync = res.meta["audio"]["av_sync"]
    assert sync["mode"] == "auto" and sync["applied"]
    steps = int(np.rint(sync["offset_s"] * 50))
    assert steps == 6
    corrected = np.load(res.root / "audio_features.npy")

    root = tmp_path / "obama"
    shutil.copytree(res.root, root)
    cfg = dict(max_seconds=8.0, size=128)
    off = preprocess(media / "video/obama_20s_450.mp4", root, PreprocessConfig(**cfg, av_sync="off"),
                     progress=False)
    assert off.meta["audio"]["av_sync"] == {"mode": "off", "offset_s": 0.0, "applied": False}
    assert off.summary["seconds"]["landmarks"] == 0.0          # cached
    assert off.summary["seconds"]["audio"] > 0.0               # rebuilt
    plain = np.load(root / "audio_features.npy")
    assert plain.shape == corrected.shape
    np.testing.assert_array_equal(corrected[:-3], plain[3:])
    assert np.abs(corrected - plain).max() > 0.5

    manual = preprocess(media / "video/obama_20s_450.mp4", root,
                        PreprocessConfig(**cfg, av_sync="-0.04"), progress=False)
    assert manual.meta["audio"]["av_sync"]["mode"] == "manual"
    np.testing.assert_array_equal(np.load(root / "audio_features.npy")[1:], plain[:-1])
    assert json.loads((root / "meta.json").read_text())["audio"]["av_sync"]["offset_s"] == -0.04
