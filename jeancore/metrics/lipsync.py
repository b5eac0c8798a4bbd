"""Lip-speech sync of a talking-face video without SyncNet (offline; **not LSE-C**).

SyncNet's LSE-C / LSE-D (:mod:`jeancore.metrics.syncnet`) need its weights, a separate
download. This score needs nothing but dlib: it asks whether the mouth of a video opens and
closes with the energy of its speech, with the model-free method that preprocessing uses to
find a clip's audio-video offset (:mod:`jeancore.data.sync`):

* mouth opening per frame: the outer (iBUG 51-57) plus inner (62-66) lip gaps over the
  inter-ocular distance (36-45), from dlib landmarks (:mod:`jeancore.data.landmarks`);
  frames without a face are filled by linear interpolation of the opening (their count is
  reported);
* speech envelope: mean log-mel energy of the 300-4000 Hz bands, 100 steps per second;
* the Pearson correlation of the two over lags of +-``max_lag_s`` (0.5 s); the **score is the
  z-score of the peak** against the same search with the lips circularly shifted against the
  speech by 1 s or more (:func:`jeancore.data.sync.lag_search`), with the lag of the peak.

Orientation (docs/evaluation.md): real clips with their own speech give z of about 3-10 and a
lag of 0.05-0.25 s (speech after the lips); the same lips under another person's speech give
z below about 2.5. The number is a jeancore measure, comparable between jeancore runs and with
the ground-truth video of the same person; it is not SyncNet's confidence (LSE-C) and must not
be reported as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import BadInputError

__all__ = ["LABEL", "LipSyncScore", "inner_lip_gap", "lip_sync_from_landmarks",
           "lip_sync_score", "mouth_opening"]

#: How a report labels the score.
LABEL = "lip-speech sync z (offline: lip opening vs speech envelope; not LSE-C)"

SR = 16000


@dataclass
class LipSyncScore:
    """Result of :func:`lip_sync_score` / :func:`lip_sync_from_landmarks`.

    Attributes:
        z: significance of the correlation peak (z-score against time-shifted controls);
            higher is better synchronised.
        lag_s: lag of the peak in seconds (positive: the speech comes after the lips).
        correlation: Pearson correlation of opening and envelope at the peak.
        confidence: the peak minus the median correlation over the lags searched.
        n_frames: frames scored; frames_with_face: those where dlib found a face (the others
            were interpolated).
        fps: frame rate of the frames; max_lag_s: the lag range searched (either way).
        label: :data:`LABEL`.
        landmarks: float32 [n_frames, 68, 2] the iBUG-68 points used (NaN rows: no face), e.g.
            for landmark metrics of the same frames; not in :meth:`as_dict`.
    """

    z: float
    lag_s: float
    correlation: float
    confidence: float
    n_frames: int
    frames_with_face: int
    fps: float
    max_lag_s: float
    label: str = LABEL
    landmarks: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """The numbers and the label (floats rounded to 4 digits), for a JSON report."""
        out = {}
        for f in fields(self):
            if f.name != "landmarks":
                v = getattr(self, f.name)
                out[f.name] = round(v, 4) if isinstance(v, float) else v
        return out


def inner_lip_gap(landmarks) -> np.ndarray:
    """Inner-lip gap per frame: the mean of |p61 - p67|, |p62 - p66|, |p63 - p65| (iBUG-68,
    0-based) over the inter-ocular distance |p36 - p45|.

    Args:
        landmarks: float [T, 68, 2] (pixels or any unit), finite.

    Returns:
        float64 [T] in inter-ocular distances (0: lips closed).

    Raises:
        BadInputError: not [T, 68, 2], non-finite values, or eyes at one point.
    """
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise BadInputError(f"landmarks must be iBUG-68 points [T, 68, 2], got {pts.shape}")
    iod = np.linalg.norm(pts[:, 36] - pts[:, 45], axis=1)
    if not np.all(np.isfinite(pts)) or np.any(iod <= 1e-9):
        raise BadInputError("landmarks have non-finite values or coincident eye corners")
    gap = sum(np.linalg.norm(pts[:, a] - pts[:, b], axis=1)
              for a, b in ((61, 67), (62, 66), (63, 65))) / 3.0
    return gap / iod


def mouth_opening(landmarks, *, min_face_fraction: float = 0.5) -> tuple[np.ndarray, int]:
    """Mouth opening per frame (:func:`jeancore.data.sync.lip_opening`), with frames without
    landmarks (NaN rows) filled by linear interpolation (held at the ends).

    Args:
        landmarks: float [T, 68, 2] iBUG-68 points (pixels or any unit), NaN rows for frames
            without a face.
        min_face_fraction: smallest fraction of frames that must have a face.

    Returns:
        (float64 [T] opening in inter-ocular distances, number of frames with a face).

    Raises:
        BadInputError: not [T, 68, 2], no face in any frame, or faces in fewer than
            ``min_face_fraction`` of the frames.
    """
    from ..data.landmarks import frame_ranges
    from ..data.sync import lip_opening

    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2) or len(pts) == 0:
        raise BadInputError(f"landmarks must be iBUG-68 points [T, 68, 2], got {pts.shape}")
    ok = np.isfinite(pts).all(axis=(1, 2))
    n_ok = int(ok.sum())
    if n_ok == 0:
        raise BadInputError(f"lip sync: no face found in any of the {len(pts)} frames")
    if n_ok < min_face_fraction * len(pts):
        raise BadInputError(
            f"lip sync: a face was found in only {n_ok} of {len(pts)} frames (at least "
            f"{min_face_fraction:.0%} needed); frames without one: {frame_ranges(~ok)}")
    idx = np.arange(len(pts))
    return np.interp(idx, idx[ok], lip_opening(pts[ok])), n_ok


def _check_wav(wav, sr: int, silence_db: float = -60.0) -> np.ndarray:
    w = np.asarray(wav, np.float32)
    if sr != SR:
        raise ValueError(f"the speech must be at {SR} Hz, got {sr} (resample it, e.g. "
                         "jeancore.data.video.load_audio(path, 16000))")
    if w.ndim != 1 or w.size == 0:
        raise BadInputError(f"the speech must be a non-empty mono waveform [N], got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise BadInputError("the speech has non-finite samples")
    peak = float(np.abs(w).max())
    if peak <= 10.0 ** (silence_db / 20.0):
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
        raise BadInputError(f"lip sync: the audio is silent (peak {level}): there is no speech "
                            "to compare the lips with")
    return w


def lip_sync_from_landmarks(landmarks, wav, fps: float, *, sr: int = SR, first_frame: int = 0,
                            max_lag_s: float = 0.5, min_face_fraction: float = 0.5
                            ) -> LipSyncScore:
    """Lip-speech sync score from precomputed landmarks (see the module docstring).

    Args:
        landmarks: float [T, 68, 2] iBUG-68 points of frames ``first_frame ..
            first_frame+T-1`` of the video, NaN rows for frames without a face.
        wav: float [N] mono speech at ``sr`` = 16 kHz; frame k of the video is centred at
            (k + 0.5) / fps seconds of it. As in preprocessing, the clip is cut to the
            shorter of frames and audio (``n_frames`` of the result says how many were
            scored).
        fps: frame rate of the landmarks (frames per second).
        max_lag_s: largest lag searched either way (seconds).
        min_face_fraction: see :func:`mouth_opening`.

    Returns:
        :class:`LipSyncScore`.

    Raises:
        BadInputError: bad landmarks, no face / too few faces, silent or empty audio, fewer
            than 2 s + 20 frames covered by both frames and audio (the time-shifted controls
            need them).
        ValueError: audio not at 16 kHz.
    """
    from ..data.sync import lag_search

    if fps <= 0 or max_lag_s <= 0:
        raise BadInputError(f"fps and max_lag_s must be positive, got {fps} and {max_lag_s}")
    pts = np.asarray(landmarks, np.float64)
    w = _check_wav(wav, sr)
    # as preprocessing, the clip is cut to the shorter of video and audio
    covered = max(0, int(math.floor((len(w) / sr) * fps + 1e-6)) - first_frame)
    if pts.ndim == 3 and len(pts) > covered:
        pts = pts[:covered]
    _check_length(len(pts), fps)
    opening, n_face = mouth_opening(pts, min_face_fraction=min_face_fraction)
    res = lag_search(opening, w, fps, sr=sr, first_frame=first_frame, max_lag_s=max_lag_s)
    return LipSyncScore(z=res.significance, lag_s=res.lag_s, correlation=res.correlation,
                        confidence=res.confidence, n_frames=len(opening),
                        frames_with_face=n_face, fps=float(fps), max_lag_s=float(max_lag_s),
                        landmarks=pts.astype(np.float32))


def _dataset_landmarks(root: Path, max_seconds):
    from ..data.dataset import read_meta

    meta = read_meta(root)
    fps = float(meta["fps"])
    path = root / "landmarks.npz"
    if not path.is_file():
        raise BadInputError(f"{root}: the dataset has no landmarks.npz: run `jean preprocess` "
                            "again to finish it")
    with np.load(path) as z:
        points = np.array(z["points"], np.float32)
        found = np.asarray(z["found"], bool)
    points[~found] = np.nan                        # interpolated gaps: interpolated here
    if max_seconds is not None:
        points = points[: int(round(max_seconds * fps))]
    return points, fps, int(meta.get("first_frame", 0))


def lip_sync_score(video, audio=None, *, fps: float | None = None, sr: int = SR,
                   max_lag_s: float = 0.5, max_seconds: float | None = None, detector=None,
                   min_face_fraction: float = 0.5, progress: bool = False) -> LipSyncScore:
    """Lip-speech sync score of a video (dlib landmarks, then
    :func:`lip_sync_from_landmarks`; not LSE-C).

    ``video`` is one of:

    * a video file (e.g. a rendered mp4 with its sound): decoded at ``fps`` (default its own
      rate), dlib landmarks on every frame; the speech is ``audio`` or else the file's own
      sound track;
    * a dataset folder of ``jean preprocess`` (the ground truth): its ``landmarks.npz``
      (dlib, as detected by preprocessing; interpolated frames count as without a face),
      its fps, and its ``audio.wav`` (aligned with decoded frame 0, so the dataset's
      ``first_frame`` is taken into account); another ``audio`` is taken as starting at the
      dataset's frame 0;
    * frames: uint8 RGB [T, H, W, 3] (numpy or torch) with ``fps`` and ``audio``.

    Args:
        video: see above.
        audio: a file (audio or video with sound; decoded to 16 kHz mono) or a float waveform
            [N] at ``sr`` = 16 kHz, starting with the first frame.
        fps: frame rate of the frames (required for frames; resampling rate for a file).
        max_lag_s: largest lag searched either way (seconds).
        max_seconds: score only the first seconds.
        detector: a landmark detector (default dlib, :class:`~jeancore.data.landmarks.
            DlibLandmarkDetector`).
        min_face_fraction: smallest fraction of frames with a face.
        progress: show a progress bar for the landmarks.

    Returns:
        :class:`LipSyncScore`.

    Raises:
        BadInputError: unreadable video or audio, no audio track and no ``audio``, silent
            audio, no face (or too few), a clip shorter than 2 s + 20 frames.
        ValueError: frames without ``fps``.
    """
    from ..data.landmarks import detect_landmarks
    from ..data.video import iter_frames, output_frame_count, probe_video

    first_frame = 0
    if isinstance(video, (str, Path)) and Path(video).is_dir():
        root = Path(video)
        marks, fps, first_frame = _dataset_landmarks(root, max_seconds)
        if audio is None:
            audio = root / "audio.wav"
        else:
            first_frame = 0
    elif isinstance(video, (str, Path)):
        path = Path(video)
        if not path.is_file():
            raise BadInputError(f"lip sync: {path}: no such file")
        info = probe_video(path)
        fps = float(fps or info.fps)
        n = output_frame_count(info.duration, fps)
        if max_seconds is not None:
            n = min(n, int(round(max_seconds * fps)))
        _check_length(n, fps)
        if audio is None:
            if info.has_audio is False:
                raise BadInputError(f"lip sync: {path} has no audio track: pass the speech as "
                                    "audio=SPEECH.wav")
            audio = path
        wav = _load(audio, sr)                       # audio errors before the slow landmarks
        marks = detect_landmarks(iter_frames(path, fps, max_frames=n), detector, max_gap=0,
                                 progress=progress, total=n).points
        return lip_sync_from_landmarks(marks, wav, fps, sr=SR, max_lag_s=max_lag_s,
                                       min_face_fraction=min_face_fraction)
    else:
        frames = video.detach().cpu().numpy() if hasattr(video, "detach") else np.asarray(video)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got {frames.dtype} "
                             f"{frames.shape}")
        if fps is None or audio is None:
            raise ValueError("frames need fps= and audio= (a file or a 16 kHz waveform)")
        if max_seconds is not None:
            frames = frames[: int(round(max_seconds * fps))]
        _check_length(len(frames), fps)
        wav = _load(audio, sr)
        marks = detect_landmarks((np.ascontiguousarray(f) for f in frames), detector,
                                 max_gap=0, progress=progress, total=len(frames)).points
        return lip_sync_from_landmarks(marks, wav, fps, sr=SR, max_lag_s=max_lag_s,
                                       min_face_fraction=min_face_fraction)
    return lip_sync_from_landmarks(marks, _load(audio, sr), fps, sr=SR, first_frame=first_frame,
                                   max_lag_s=max_lag_s, min_face_fraction=min_face_fraction)


def _check_length(n: int, fps: float) -> None:
    if fps <= 0:
        raise BadInputError(f"fps must be positive, got {fps}")
    need = 2 * int(round(fps)) + 20
    if n < need:
        raise BadInputError(f"lip sync: {n} frames ({n / fps:.2f} s) are too short; at least "
                            f"{need} frames (2 s and 20 frames) are needed for the time-shifted "
                            "controls")


def _load(audio, sr: int) -> np.ndarray:
    """A file -> 16 kHz mono float32; a waveform -> checked as it is."""
    from ..data.video import load_audio

    if isinstance(audio, (str, Path)):
        if not Path(audio).is_file():
            raise BadInputError(f"lip sync: audio {audio}: no such file")
        return _check_wav(load_audio(audio, SR), SR)
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().numpy()
    return _check_wav(audio, sr)
