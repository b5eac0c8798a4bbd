"""Settings of ``jean preprocess`` (:class:`PreprocessConfig`, the CLI flags) and what a run
returns (:class:`PreprocessResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["LANDMARK_BACKENDS", "MISSING_FACE_MODES", "PreprocessConfig", "PreprocessResult"]

LANDMARK_BACKENDS = ("dlib", "face-alignment")
"""The values of :attr:`PreprocessConfig.landmarks` (see
:func:`jeancore.data.landmarks.make_detector`)."""
MISSING_FACE_MODES = ("trim", "error")
"""The values of :attr:`PreprocessConfig.missing_face`."""


@dataclass
class PreprocessConfig:
    """Settings of :func:`~jeancore.data.pipeline.preprocess` (the CLI flags of
    ``jean preprocess``).

    Attributes:
        fps: output frame rate (AD-NeRF / JEAN: 25).
        size: output frame size in pixels (square).
        audio: a separate speech file for a video without (or with unwanted) sound.
        no_audio: expression-only mode: no audio features (e.g. MEAD clips without sound).
        landmarks: landmark backend, ``"dlib"`` (offline default) or ``"face-alignment"``.
        audio_features: ``"logmel"`` (default), ``"mfcc"``, or a path to a ``.npy`` of
            precomputed features [S, D] (DeepSpeech, wav2vec 2.0, HuBERT...) at
            ``audio_feature_rate`` steps per second.
        audio_feature_rate: step rate of precomputed features.
        n_mels: mel bands of the log-mel features (their width D).
        audio_window: feature steps per video frame window (AD-NeRF: 16).
        av_sync: audio-video offset correction of the speech windows: ``"auto"`` (default:
            estimated from the lips and the speech envelope, applied when significant and at
            least one frame, :func:`jeancore.data.sync.estimate_av_offset`), ``"off"``, or a
            number of seconds within +-2 (positive: the speech comes late). Recorded in
            meta.json (``audio.av_sync``); ``audio.wav`` itself is never shifted.
        crop_scale: crop side = ``crop_scale`` x the face box size (dlib box, 90th percentile
            over the clip); clamped to the frame.
        face_height: where the face box centre sits in the crop, as a fraction of its height.
        max_gap: runs of at most this many frames without a face are interpolated.
        missing_face: what to do with longer runs of frames without a face: ``"trim"``
            (default) keeps the longest stretch of the clip in which every gap is short and
            drops the rest (the dropped frames are reported and listed in meta.json), as long as
            it has at least ``min_frames`` frames; ``"error"`` stops with the list of frames.
        min_frames: fewest frames a dataset may have.
        max_seconds: use only the first seconds of the clip (quick looks, tests).
        val_fraction: the last fraction of frames forms the validation split (peers: 10%).
        background_frames: frames sampled (evenly) for the background median.
        device: torch device for the 3DMM fit and the emotion CNN.
        workers: processes for the per-frame steps (landmarks, parsing); 0 = one per CPU core
            (at most 8), 1 = none (everything in this process).
    """

    fps: float = 25.0
    size: int = 450
    audio: str | None = None
    no_audio: bool = False
    landmarks: str = "dlib"
    audio_features: str = "logmel"
    audio_feature_rate: float = 50.0
    n_mels: int = 80
    audio_window: int = 16
    av_sync: str = "auto"
    crop_scale: float = 2.6
    face_height: float = 0.45
    max_gap: int = 5
    missing_face: str = "trim"
    min_frames: int = 25
    max_seconds: float | None = None
    val_fraction: float = 0.1
    background_frames: int = 60
    device: str = "cpu"
    workers: int = 0

    def validate(self) -> None:
        """Raises ConfigError (a ValueError) for settings out of range."""
        if self.fps <= 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        if not 32 <= self.size <= 4096 or self.size % 2:
            raise ConfigError(f"size must be an even number of pixels in [32, 4096], got {self.size}")
        if self.missing_face not in MISSING_FACE_MODES:
            raise ConfigError(f"missing_face must be 'trim' or 'error', got {self.missing_face!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.crop_scale <= 0 or not 0 < self.face_height < 1:
            raise ConfigError("crop_scale must be positive and face_height in (0, 1)")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.no_audio and self.audio:
            raise ConfigError("--audio and --no-audio contradict each other: choose one")
        self.av_sync_offset()

    def av_sync_offset(self) -> float | None:
        """The fixed offset (seconds) that ``av_sync`` asks for; None for ``"auto"``."""
        v = str(self.av_sync).strip().lower()
        if v == "auto":
            return None
        if v == "off":
            return 0.0
        try:
            x = float(v)
        except ValueError:
            x = float("nan")
        if not np.isfinite(x) or abs(x) > 2.0:
            raise ConfigError(f"av_sync must be 'auto', 'off' or an offset in seconds within "
                              f"+-2, got {self.av_sync!r}")
        return x


@dataclass
class PreprocessResult:
    """What :func:`~jeancore.data.pipeline.preprocess` returns: the dataset folder, its
    meta.json content, and the summary printed at the end (per-step seconds included)."""

    root: Path
    meta: dict
    summary: dict = field(default_factory=dict)

    def report(self) -> str:
        """The summary as ``jean preprocess`` prints it: frames, face detection, 3DMM
        reprojection error, audio features and the audio-video offset, time per step, and
        the contact sheet to look at."""
        s = self.summary
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in s["seconds"].items())
        return "\n".join([
            f"dataset: {s['dataset']}",
            f"  frames {s['frames']} at {s['fps']:g} fps ({s['duration_s']} s), {s['size']}x"
            f"{s['size']} px; faces found {s['faces_found']}, interpolated "
            f"{s['interpolated']}, dropped {s['dropped']} (no face: {s['no_face_frames']})",
            f"  3DMM reprojection error {s['reprojection_error_px']} px mean, "
            f"{s['reprojection_error_px_max']} px max",
            f"  audio features {s['audio_features']}{_sync_summary(s.get('av_sync'))}",
            f"  time {s['seconds_total']} s ({s['realtime_factor']}x real time): {steps}",
            f"  look at {self.root / 'contact_sheet.png'}"])


def _sync_summary(sync: dict | None) -> str:
    """The audio-video offset part of the summary (meta.json ``audio.av_sync``)."""
    if not sync:
        return ""
    if sync.get("applied"):
        return f"; audio-video offset {sync['offset_s']:+.3f} s corrected ({sync['mode']})"
    detail = (f", lips-to-speech lag {sync['lag_s']:.3f} s, significance "
              f"z={sync['significance']:.1f}" if "lag_s" in sync else "")
    return f"; audio-video offset: none corrected ({sync['mode']}{detail})"
