"""Speech features per video frame (JEAN Sec. 3.1 / suppl. 8.2; AD-NeRF's audio window).

AD-NeRF (and JEAN) feed the audio network a window of 16 feature steps around each video
frame, with two feature steps per frame at 25 fps (DeepSpeech at 50 Hz). jeancore computes
log-mel (default) or MFCC features with librosa at ``2 * fps`` steps per second, so the same
windowing holds; a user may bring any other per-step features (DeepSpeech, wav2vec 2.0,
HuBERT...) as an array with their step rate (:class:`PrecomputedFeatures`).

Windowing (:func:`window_features`): video frame k (shown from k / fps to (k + 1) / fps) is
centred at time (k + 0.5) / fps, i.e. at feature step c = (k + 0.5) * rate / fps (feature step
j is centred at j / rate, as librosa's ``center=True`` frames); its window is the ``window``
steps ``round(c) - window // 2 ... round(c) + window // 2 - 1``; steps before the start or
past the end repeat the first/last step (edge padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError

__all__ = ["AudioFeatureExtractor", "LogMelFeatures", "MFCCFeatures", "PrecomputedFeatures",
           "make_feature_extractor", "window_features", "frame_audio_features", "SAMPLE_RATE"]

SAMPLE_RATE = 16000
"""Sample rate (Hz) of all audio inside jeancore (mono float32)."""


class AudioFeatureExtractor:
    """Interface of a speech feature extractor: ``__call__(wav, sr) -> [S, D]`` float32 at
    ``rate`` steps per second, plus ``dim`` and a ``config`` dict saved with the dataset."""

    rate: float
    dim: int

    def __call__(self, wav: np.ndarray, sr: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @property
    def config(self) -> dict:  # pragma: no cover
        raise NotImplementedError


def _check_wav(wav, sr):
    wav = np.asarray(wav, np.float32)
    if wav.ndim != 1:
        raise ValueError(f"audio must be mono [N], got shape {wav.shape}")
    if sr != SAMPLE_RATE:
        raise ValueError(f"audio must be resampled to {SAMPLE_RATE} Hz first, got {sr}")
    if wav.size < SAMPLE_RATE // 10:
        raise BadInputError(f"audio is too short ({wav.size / sr:.3f} s): need at least 0.1 s")
    if not np.isfinite(wav).all():
        raise BadInputError("audio contains NaN or infinite samples")
    return wav


@dataclass
class LogMelFeatures(AudioFeatureExtractor):
    """Log-mel spectrogram (dB), normalised per clip (zero mean, unit variance per band).

    Args:
        fps: video frame rate; the step rate is ``2 * fps`` (AD-NeRF: 50 Hz at 25 fps).
        n_mels: number of mel bands (the feature width D).
        win_ms: analysis window length in milliseconds.
        fmin, fmax: mel filterbank range in Hz.
        normalize: ``"clip"`` (per-band mean/variance over the clip, robust to microphone and
            level differences between speakers) or ``"none"``.
    """

    fps: float = 25.0
    n_mels: int = 80
    win_ms: float = 25.0
    fmin: float = 55.0
    fmax: float = 7600.0
    normalize: str = "clip"

    @property
    def rate(self) -> float:
        return 2.0 * self.fps

    @property
    def dim(self) -> int:
        return self.n_mels

    @property
    def hop(self) -> int:
        hop = SAMPLE_RATE / self.rate
        if abs(hop - round(hop)) > 1e-6:
            raise ValueError(f"fps {self.fps} gives a non-integer hop of {hop} samples")
        return int(round(hop))

    @property
    def config(self) -> dict:
        return {"kind": "logmel", "fps": self.fps, "n_mels": self.n_mels, "win_ms": self.win_ms,
                "fmin": self.fmin, "fmax": self.fmax, "normalize": self.normalize,
                "rate": self.rate, "dim": self.dim, "sample_rate": SAMPLE_RATE}

    def _mel_db(self, wav):
        import librosa

        win = int(round(self.win_ms * SAMPLE_RATE / 1000))
        n_fft = 1 << (win - 1).bit_length()
        mel = librosa.feature.melspectrogram(
            y=wav, sr=SAMPLE_RATE, n_fft=n_fft, hop_length=self.hop, win_length=win,
            n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax, center=True, power=2.0)
        return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T  # [S, n_mels]

    def _normalise(self, feats):
        if self.normalize == "clip":
            feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-5)
        elif self.normalize != "none":
            raise ValueError(f"normalize must be 'clip' or 'none', got {self.normalize!r}")
        return feats.astype(np.float32)

    def __call__(self, wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
        """Features [S, n_mels] float32, S = 1 + len(wav) // hop steps at ``rate`` Hz.

        Raises:
            ValueError: not mono or not at 16 kHz.
            BadInputError: shorter than 0.1 s, or non-finite samples.
        """
        return self._normalise(self._mel_db(_check_wav(wav, sr)))


@dataclass
class MFCCFeatures(LogMelFeatures):
    """MFCCs of the log-mel spectrogram (``n_mfcc`` coefficients), normalised per clip."""

    n_mfcc: int = 26

    @property
    def dim(self) -> int:
        return self.n_mfcc

    @property
    def config(self) -> dict:
        return {**super().config, "kind": "mfcc", "n_mfcc": self.n_mfcc, "dim": self.dim}

    def __call__(self, wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
        import librosa

        mel_db = self._mel_db(_check_wav(wav, sr))
        return self._normalise(librosa.feature.mfcc(S=mel_db.T, n_mfcc=self.n_mfcc).T)


@dataclass
class PrecomputedFeatures(AudioFeatureExtractor):
    """Features the user computed elsewhere (DeepSpeech, wav2vec 2.0, HuBERT, ...).

    Args:
        path: ``.npy`` file holding float [S, D] features.
        rate: their step rate in steps per second (e.g. 50 for DeepSpeech / wav2vec 2.0).
    """

    path: str = ""
    rate: float = 50.0

    def __post_init__(self):
        p = Path(self.path)
        if not p.is_file():
            raise BadInputError(f"audio feature file {p} not found")
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as e:
            raise BadInputError(f"{p} is not a readable .npy array ({e})") from e
        if arr.ndim == 3 and arr.shape[1] == 1:  # some tools save [S, 1, D]
            arr = arr[:, 0]
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
            raise BadInputError(f"{p}: expected float features [steps, dim], got {arr.dtype} "
                                f"{arr.shape}")
        if not np.isfinite(arr).all():
            raise BadInputError(f"{p}: features contain NaN or infinite values")
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        self._features = arr.astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self._features.shape[1])

    @property
    def config(self) -> dict:
        return {"kind": "precomputed", "path": str(self.path), "rate": self.rate,
                "dim": self.dim}

    def __call__(self, wav=None, sr: int = SAMPLE_RATE) -> np.ndarray:
        return self._features


def make_feature_extractor(kind: str = "logmel", fps: float = 25.0, **kwargs
                           ) -> AudioFeatureExtractor:
    """Feature extractor by name: ``"logmel"`` (default), ``"mfcc"``, or ``"precomputed"``
    (with ``path=`` and ``rate=``).

    Raises:
        ValueError: unknown kind.
    """
    if kind == "logmel":
        return LogMelFeatures(fps=fps, **kwargs)
    if kind == "mfcc":
        return MFCCFeatures(fps=fps, **kwargs)
    if kind == "precomputed":
        return PrecomputedFeatures(**kwargs)
    raise ValueError(f"unknown audio feature kind {kind!r}: use logmel, mfcc or precomputed")


def window_features(features: np.ndarray, n_frames: int, fps: float, rate: float,
                    window: int = 16, offset_s: float = 0.0) -> np.ndarray:
    """Cut per-step features into one window per video frame (see the module docstring).

    Args:
        features: float [S, D] features at ``rate`` steps per second.
        n_frames: number of video frames T.
        fps: video frame rate.
        rate: feature step rate (steps per second).
        window: steps per window (AD-NeRF: 16).
        offset_s: audio-video offset correction in seconds: the window of frame t is centred
            at (t + 0.5) / fps + offset_s, rounded to a step (positive when the speech comes
            late; :func:`jeancore.data.sync.estimate_av_offset`). Steps past either end repeat
            the first / last step.

    Returns:
        float32 [T, window, D].

    Raises:
        ValueError: bad shapes or rates; the features end more than one window before the
            last video frame (audio much shorter than the video).
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be [S, D] with S > 0, got {features.shape}")
    if n_frames <= 0 or fps <= 0 or rate <= 0 or window <= 0:
        raise ValueError("n_frames, fps, rate and window must be positive")
    base = (np.arange(n_frames) + 0.5) * rate / fps
    if np.rint(base[-1]) - window // 2 >= features.shape[0]:
        raise ValueError(
            f"the audio features cover {features.shape[0] / rate:.2f} s but the video has "
            f"{n_frames / fps:.2f} s: the audio is too short for the video")
    centre = np.rint(base + float(offset_s) * rate).astype(np.int64)
    idx = centre[:, None] + np.arange(-(window // 2), window - window // 2)[None]
    idx = np.clip(idx, 0, features.shape[0] - 1)
    return features[idx]


def frame_audio_features(wav: np.ndarray, n_frames: int, fps: float = 25.0, *,
                         extractor: AudioFeatureExtractor | None = None, window: int = 16,
                         sr: int = SAMPLE_RATE) -> np.ndarray:
    """Speech features windowed per video frame: ``[T, window, D]`` float32.

    Args:
        wav: mono float32 audio at ``sr`` (16 kHz).
        n_frames: number of video frames T.
        fps: video frame rate.
        extractor: feature extractor (default :class:`LogMelFeatures` at ``2 * fps`` Hz).
        window: steps per window.

    Raises:
        BadInputError / ValueError: see the extractor and :func:`window_features`.
    """
    extractor = extractor or LogMelFeatures(fps=fps)
    feats = extractor(wav, sr)
    return window_features(feats, n_frames, fps, extractor.rate, window)
