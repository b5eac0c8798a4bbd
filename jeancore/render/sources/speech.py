"""The speech source of a rendering (JEAN Sec. 3.1, suppl. 8.2): any audio file or video with
sound, turned into the *same* per-frame feature windows preprocessing computed for the training
dataset (the settings recorded in its ``meta.json`` ``audio`` entry, read by
:func:`jeancore.data.dataset.audio_settings`; log-mel or MFCC normalised per clip, as
:mod:`jeancore.data.audio`). The audio's length sets the output length:
``T = round(duration * fps)`` frames."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from ...errors import BadInputError, ConfigError

__all__ = ["audio_feature_config", "audio_windows"]


def audio_feature_config(features) -> tuple[dict, int]:
    """The audio-feature settings of a training dataset, normalised.

    Args:
        features: any of: the dataset folder or its ``meta.json`` path; the parsed meta.json
            dict; its ``"audio"`` entry (``{"features": {...}, "window": 16, ...}``); or the
            feature config itself (``{"kind": "logmel", "n_mels": 80, "fps": 25, ...}``,
            :attr:`jeancore.data.audio.LogMelFeatures.config`).

    Returns:
        (config dict with at least ``kind``, window length in feature steps).

    Raises:
        BadInputError: the dataset was preprocessed without audio, or the folder (file) is not
            a dataset (meta.json).
        ConfigError: the dict is none of the above.
    """
    from ...data.dataset import audio_settings, read_meta

    if isinstance(features, (str, Path)):
        p = Path(features)
        if not p.exists():
            raise BadInputError(f"{p}: no such dataset folder or meta.json")
        features = read_meta(p)
    return audio_settings(features)


def _make_extractor(cfg: dict, fps: float):
    from ...data import audio as audio_mod

    kind = cfg["kind"]
    if kind == "precomputed":
        raise ConfigError(
            "the training dataset used precomputed audio features "
            f"({cfg.get('path')}); jeancore cannot compute them for new audio. Compute the same "
            "features for the new speech and window them with "
            "jeancore.data.audio.window_features")
    if kind not in ("logmel", "mfcc"):
        raise ConfigError(f"unknown audio feature kind {kind!r} in the dataset settings")
    cfg_fps = float(cfg.get("fps", fps))
    if abs(cfg_fps - float(fps)) > 1e-6:
        raise ConfigError(f"the dataset's audio features were computed for {cfg_fps:g} fps, "
                          f"not {fps:g} fps: render at the dataset's frame rate")
    cls = audio_mod.MFCCFeatures if kind == "mfcc" else audio_mod.LogMelFeatures
    names = {f.name for f in dataclasses.fields(cls)} - {"fps"}
    kwargs = {k: v for k, v in cfg.items() if k in names}
    return audio_mod.make_feature_extractor(kind, fps=cfg_fps, **kwargs)


def audio_windows(path, features, fps: float = 25.0, *, window: int | None = None,
                  max_seconds: float | None = None, silence_db: float = -60.0,
                  return_wav: bool = False):
    """Speech feature windows of any audio file or video, exactly as preprocessing computes
    them for the training dataset (JEAN Sec. 3.1, suppl. 8.2; AD-NeRF's 16-step window).

    The first audio stream is decoded and resampled to 16 kHz mono
    (:func:`jeancore.data.video.load_audio`); the number of frames is
    ``T = round(duration * fps)`` (:func:`~jeancore.data.video.output_frame_count`) and the
    audio is cut to ``T / fps`` seconds, as the ``decode`` step does; the features
    (:mod:`jeancore.data.audio`: log-mel or MFCC with the dataset's settings, normalised over
    this clip when the dataset's were) are cut into one window per frame by
    :func:`~jeancore.data.audio.window_features`. Given the same speech file as
    ``jean preprocess --audio``, the result equals the dataset's ``audio_features.npy`` (when
    the video is at least as long as the audio).

    Args:
        path: an audio file (wav, mp3, flac, m4a, ...) or a video with a sound track.
        features: the training dataset's audio settings: the dataset folder, its meta.json
            (path or dict), the meta.json ``audio`` entry, or the feature config
            (see :func:`audio_feature_config`).
        fps: output frame rate (frames per second); must equal the dataset's.
        window: feature steps per window (default: the dataset's, 16).
        max_seconds: use only the first seconds of the audio.
        silence_db: audio whose peak amplitude is below this level (dB full scale) is
            refused as silent.
        return_wav: also return the 16 kHz mono samples that were used (cut to ``T / fps``
            seconds), e.g. to mux into the output video.

    Returns:
        float32 [T, window, D] (D = n_mels or n_mfcc), or ``(windows, wav float32 [N])`` with
        ``return_wav``.

    Raises:
        BadInputError: the file is missing, unreadable or truncated, has no audio stream, its
            audio is empty, shorter than one frame / 0.1 s, or silent.
        ConfigError: the settings are unusable (precomputed features, other fps, no kind).
    """
    from ...data.audio import SAMPLE_RATE, window_features
    from ...data.video import load_audio, output_frame_count

    cfg, win = audio_feature_config(features)
    if window is not None:
        win = int(window)
    extractor = _make_extractor(cfg, fps)
    wav = load_audio(path, SAMPLE_RATE)
    duration = len(wav) / SAMPLE_RATE
    if max_seconds is not None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        duration = min(duration, float(max_seconds))
    n = output_frame_count(duration, fps)
    if n < 1:
        raise BadInputError(f"{path}: the audio ({duration:.3f} s) is shorter than one frame")
    wav = wav[: int(round(n / fps * SAMPLE_RATE))]
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak <= 10.0 ** (silence_db / 20.0):
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
        raise BadInputError(f"{path}: the audio is silent (peak {level}, below {silence_db:g} "
                            "dBFS): pass a speech recording")
    try:
        feats = extractor(wav, SAMPLE_RATE)
    except BadInputError as e:
        raise BadInputError(f"{path}: {e}") from e
    out = window_features(feats, n, fps, extractor.rate, win).astype(np.float32, copy=False)
    return (out, wav) if return_wav else out
