"""Audio-video offset of a talking-head clip, from the lips and the speech envelope.

Clips downloaded from the web are often out of sync by a few frames (re-encoding, separate
audio and video streams). A model that learns lip motion from speech (the contrastive audio
encoder of JEAN Sec. 3.1, then the NeRF) then learns a mapping shifted by that offset, and a
different one for every clip. Lip-sync pipelines detect the offset with SyncNet (its weights
are not available offline); jeancore uses the classical model-free cue instead: the
**cross-correlation of the lip opening with the speech energy envelope**. In well-synchronised
speech the envelope follows the opening of the lips with a short lag; a clip whose best lag is
far from that is out of sync by the difference.

* lip opening o(t): vertical distance of the outer (iBUG 51-57) plus inner (62-66) lip
  midpoints, divided by the inter-ocular distance (36-45), per video frame;
* speech envelope e(tau): mean log-mel energy (dB) of the 300-4000 Hz bands, 100 steps per
  second (librosa);
* both standardised; for each candidate lag L (10 ms grid, |L| <= ``max_lag_s``) the Pearson
  correlation c(L) = corr(o(t), e(t + L)) over the frames; the lag is the maximum (refined by a
  parabola through its neighbours); the **confidence** is c(peak) - median_L c(L) (SyncNet's
  confidence: peak minus median over the offsets searched);
* **significance**: the same search repeated with the lips circularly shifted against the
  speech by 1 s or more (up to 200 shifts: both signals keep their own rhythm, their alignment
  is broken) gives a null distribution of peak correlations; the significance is the peak's
  z-score against it. Other people's speech under a talking face reaches z <= 2.5 (19 cuts of
  4-8 s from the shared clips); the synchronised clips 3.1-10.

The correction to apply is ``lag - reference_lag_s`` seconds: the audio features of frame t
are then taken around t + correction, so every clip gets the same lip-to-speech lag.
``REFERENCE_LAG_S`` (0.1 s) is the lag measured on the shared clips whose best lag agreed
(84-112 ms on obama_b_30s, aoc and noem_18s; docs/audio.md). The correction is applied only
when the significance reaches ``min_significance`` (4: clips with little speech, a static
mouth or a few seconds only keep their timing) and the correction is at least ``tolerance_s``
(one frame at 25 fps: the in-sync clips spread over about that much).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import BadInputError

__all__ = ["REFERENCE_LAG_S", "MIN_SIGNIFICANCE", "TOLERANCE_S", "AVOffset", "LagSearch",
           "lip_opening", "speech_envelope", "lag_search", "estimate_av_offset"]

REFERENCE_LAG_S = 0.1
MIN_SIGNIFICANCE = 4.0
TOLERANCE_S = 0.04
ENVELOPE_RATE = 100.0


@dataclass
class AVOffset:
    """Result of :func:`estimate_av_offset` (all times in seconds).

    Attributes:
        lag_s: lag at which the speech envelope best follows the lip opening (positive: the
            speech comes after the lips).
        correlation: Pearson correlation at that lag.
        confidence: correlation at the peak minus the median over all lags searched.
        significance: z-score of the peak against the circularly shifted null.
        significant: ``significance >= min_significance`` (the lag is trusted).
        offset_s: correction to apply (``lag_s - reference_lag_s``) when ``applied``.
        applied: significant and |lag - reference| >= ``tolerance_s`` (else ``offset_s`` is
            0).
        reference_lag_s, min_significance, tolerance_s: the settings used.
    """

    lag_s: float
    correlation: float
    confidence: float
    significance: float
    significant: bool
    offset_s: float
    applied: bool
    reference_lag_s: float
    min_significance: float
    tolerance_s: float

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def lip_opening(landmarks) -> np.ndarray:
    """Lip opening per frame in inter-ocular distances.

    Args:
        landmarks: float [T, 68, 2] iBUG-68 points (pixels or any unit).

    Returns:
        float64 [T]: |p51 - p57| + |p62 - p66| over |p36 - p45|.

    Raises:
        BadInputError: not [T, 68, 2], or eyes at one point.
    """
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise BadInputError(f"landmarks must be iBUG-68 points [T, 68, 2], got {pts.shape}")
    iod = np.linalg.norm(pts[:, 36] - pts[:, 45], axis=1)
    if np.any(iod <= 1e-9) or not np.all(np.isfinite(pts)):
        raise BadInputError("landmarks have coincident eye corners or non-finite values")
    outer = np.linalg.norm(pts[:, 51] - pts[:, 57], axis=1)
    inner = np.linalg.norm(pts[:, 62] - pts[:, 66], axis=1)
    return (outer + inner) / iod


def speech_envelope(wav, sr: int = 16000) -> np.ndarray:
    """Speech energy envelope: mean log-mel energy (dB) of 32 bands from 300 to 4000 Hz, at
    ``ENVELOPE_RATE`` (100) steps per second; the project's log-mel
    (:class:`jeancore.data.audio.LogMelFeatures`, 25 ms windows, not normalised).

    Args:
        wav: float [N] mono audio at ``sr`` = 16 kHz.

    Returns:
        float64 [S], S = 1 + N // 160; step s is centred at s / 100 seconds.

    Raises:
        BadInputError: not mono, shorter than 0.1 s, or non-finite samples.
        ValueError: not at 16 kHz.
    """
    from .audio import LogMelFeatures

    if np.ndim(wav) != 1 or np.size(wav) == 0:
        raise BadInputError(f"wav must be a non-empty mono signal [N], got {np.shape(wav)}")
    mel = LogMelFeatures(fps=ENVELOPE_RATE / 2, n_mels=32, fmin=300.0, fmax=4000.0,
                         normalize="none")     # its step rate is 2 * fps
    return mel(wav, sr).mean(1).astype(np.float64)


@dataclass
class LagSearch:
    """Result of :func:`lag_search` (times in seconds).

    Attributes:
        lag_s: lag of the correlation peak (positive: the speech comes after the lips),
            refined by a parabola through its neighbours.
        correlation: Pearson correlation at the peak.
        confidence: the peak minus the median over all lags searched.
        significance: z-score of the peak against the circularly shifted null.
        lags: float64 [L] the lags searched; correlations: float64 [L] c(L).
    """

    lag_s: float
    correlation: float
    confidence: float
    significance: float
    lags: np.ndarray
    correlations: np.ndarray


def lag_search(opening, wav, fps: float, *, sr: int = 16000, first_frame: int = 0,
               max_lag_s: float = 0.5) -> LagSearch:
    """Cross-correlation of a lip-opening signal with the speech envelope over lags, and its
    significance against circularly shifted lips (the search of the module docstring; the
    core of :func:`estimate_av_offset`).

    Args:
        opening: float [T] lip opening of frames ``first_frame .. first_frame+T-1``
            (:func:`lip_opening`; any unit, it is standardised).
        wav: float [N] mono speech of the whole video at ``sr`` (16 kHz).
        fps: video frame rate (frame k is centred at (k + 0.5) / fps seconds of ``wav``).
        max_lag_s: largest lag searched either way (seconds).

    Returns:
        :class:`LagSearch`.

    Raises:
        BadInputError: non-positive fps / max_lag_s, fewer than 2 s + 20 frames (the
            significance test needs them), non-finite openings, or audio shorter than the
            frames.
    """
    if fps <= 0 or max_lag_s <= 0:
        raise BadInputError("fps and max_lag_s must be positive")
    o = np.asarray(opening, np.float64)
    if o.ndim != 1 or not np.all(np.isfinite(o)):
        raise BadInputError(f"the lip opening must be a finite signal [T], got {o.shape}")
    gap = int(round(fps))
    if len(o) < 2 * gap + 20:
        raise BadInputError(f"{len(o)} frames are too few to estimate the audio-video offset "
                            f"(at least {2 * gap + 20}: 2 s and 20 more)")
    env = speech_envelope(wav, sr)
    t = (first_frame + np.arange(len(o)) + 0.5) / fps
    if t[-1] > (len(env) - 1) / ENVELOPE_RATE + 0.5 / fps:
        raise BadInputError("the audio is shorter than the frames whose offset is estimated")
    lags = np.arange(-int(round(max_lag_s * ENVELOPE_RATE)),
                     int(round(max_lag_s * ENVELOPE_RATE)) + 1) / ENVELOPE_RATE
    grid = np.arange(len(env)) / ENVELOPE_RATE
    o = (o - o.mean()) / (o.std() + 1e-12)
    env_at = np.stack([np.interp(t + lag, grid, env) for lag in lags])     # [L, T], clamped
    env_at = (env_at - env_at.mean(1, keepdims=True)) / (env_at.std(1, keepdims=True) + 1e-12)
    corr = env_at @ o / len(o)                                               # [L]
    k = int(np.argmax(corr))
    lag = float(lags[k])
    if 0 < k < len(lags) - 1:                      # parabolic refinement of the peak
        a, b, c = corr[k - 1], corr[k], corr[k + 1]
        den = a - 2 * b + c
        if den < 0:
            lag += float(0.5 * (a - c) / den) / ENVELOPE_RATE
    conf = float(corr[k] - np.median(corr))
    # null distribution: the same search with the lips circularly shifted by >= 1 s against
    # the speech (keeps both signals' own rhythm, breaks their alignment)
    rolls = np.arange(gap, len(o) - gap + 1)
    rolls = rolls[np.linspace(0, len(rolls) - 1, min(len(rolls), 200)).round().astype(int)]
    null = (np.stack([np.roll(o, r) for r in rolls]) @ env_at.T / len(o)).max(1)
    z = float((corr[k] - null.mean()) / (null.std() + 1e-12))
    return LagSearch(lag_s=lag, correlation=float(corr[k]), confidence=conf, significance=z,
                     lags=lags, correlations=corr)


def estimate_av_offset(landmarks, wav, fps: float, *, sr: int = 16000, first_frame: int = 0,
                       max_lag_s: float = 0.5, reference_lag_s: float = REFERENCE_LAG_S,
                       min_significance: float = MIN_SIGNIFICANCE,
                       tolerance_s: float = TOLERANCE_S) -> AVOffset:
    """Estimates the audio-video offset of a clip (see the module docstring):
    :func:`lip_opening`, then :func:`lag_search`.

    Args:
        landmarks: float [T, 68, 2] iBUG-68 points of frames ``first_frame .. first_frame+T-1``
            of the video (frame k is centred at (k + 0.5) / fps seconds of ``wav``).
        wav: float [N] mono speech of the whole video, sample rate ``sr`` (16 kHz).
        fps: video frame rate.
        max_lag_s: largest lag searched either way (seconds).
        reference_lag_s: the lag of well-synchronised speech (seconds).
        min_significance: smallest significance (z-score) at which the correction is applied.
        tolerance_s: smallest correction that is applied (seconds).

    Returns:
        :class:`AVOffset`.

    Raises:
        BadInputError: bad shapes, fewer than 2 s + 20 frames (the significance test needs
            them), or audio shorter than the frames.
    """
    if fps <= 0 or max_lag_s <= 0:
        raise BadInputError("fps and max_lag_s must be positive")
    res = lag_search(lip_opening(landmarks), wav, fps, sr=sr, first_frame=first_frame,
                     max_lag_s=max_lag_s)
    lag, z = res.lag_s, res.significance
    significant = bool(z >= min_significance)
    applied = significant and abs(lag - reference_lag_s) >= tolerance_s
    return AVOffset(lag_s=lag, correlation=res.correlation, confidence=res.confidence,
                    significance=z, significant=significant,
                    offset_s=(lag - reference_lag_s) if applied else 0.0, applied=applied,
                    reference_lag_s=float(reference_lag_s),
                    min_significance=float(min_significance),
                    tolerance_s=float(tolerance_s))
