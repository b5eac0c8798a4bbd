"""The expression source of a rendering (JEAN Sec. 3.2, 4.1): any face video; per frame the
128-d emotion-CNN feature the expression transformer takes, computed the way preprocessing does
(one square crop for the clip, dlib landmarks, short gaps interpolated, 64x64 grey face crop,
mini-Xception), plus the colour face crops for the frame grid."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ...errors import BadInputError
from .face_video import face_video

__all__ = ["ExpressionSource", "expression_source"]

log = logging.getLogger("jeancore.render")


def _check_face_fraction(path, track, min_face_fraction, fps):
    from ...data.landmarks import frame_ranges

    valid = track.valid
    if not track.found.any():
        raise BadInputError(f"{path}: no face found in any of its {len(valid)} frames")
    if valid.mean() < min_face_fraction:
        raise BadInputError(
            f"{path}: only {int(valid.sum())} of {len(valid)} frames have a face (no face in "
            f"frames {frame_ranges(~valid, fps)}); cut the video to the part with the face")


def _hold_index(valid: np.ndarray) -> np.ndarray:
    """For each frame, the nearest valid frame (itself when valid; ties: the earlier)."""
    idx = np.flatnonzero(valid)
    k = np.arange(len(valid))
    pos = np.clip(np.searchsorted(idx, k), 0, len(idx) - 1)
    prev = idx[np.maximum(pos - 1, 0)]
    nxt = idx[pos]
    return np.where(np.abs(k - prev) <= np.abs(nxt - k), prev, nxt)


@dataclasses.dataclass
class ExpressionSource:
    """Per-frame expression input of a rendering, from :func:`expression_source`.

    Attributes:
        features: float32 [T, 128] emotion-CNN features (mini-Xception, Sec. 3.2), the
            expression transformer's input.
        probs: float32 [T, 7] emotion class probabilities
            (:data:`jeancore.data.emotion.EMOTION_LABELS`).
        crops: uint8 [T, S, S, 3] the video through one square face crop for the clip
            (preprocessing's crop: 2.6 x the face box), resized to S = ``crop_size``: the
            "source expression frame" of the frame grid.
        landmarks: float32 [T, 68, 2] iBUG-68 points in crop pixels (pixel-corner
            convention); NaN where ``valid`` is False.
        found: bool [T] a face was detected in the frame.
        interpolated: bool [T] landmarks interpolated over a short gap (<= ``max_gap``).
        held: bool [T] no usable face: features, probs and the grid crop are copied from the
            nearest frame with a face.
        fps: frame rate of the sequence.
        crop: (x0, y0, side) of the face crop in source-video pixels.
        path: the video.
    """

    features: np.ndarray
    probs: np.ndarray
    crops: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray
    interpolated: np.ndarray
    held: np.ndarray
    fps: float
    crop: tuple
    path: str

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """bool [T]: detected or interpolated (not held)."""
        return self.found | self.interpolated


def expression_source(path, fps: float = 25.0, *, max_seconds: float | None = None,
                      max_frames: int | None = None, crop_size: int = 256, max_gap: int = 5,
                      min_face_fraction: float = 0.5, model=None, detector=None,
                      device: str = "cpu", progress: bool = False) -> ExpressionSource:
    """Emotion features of a face video on the output frame grid (JEAN Sec. 3.2, 4.1).

    As preprocessing computes them for a dataset (``decode`` / ``landmarks`` / ``emotion``
    steps): the video is decoded at ``fps`` (nearest timestamps), seen through ONE square crop
    chosen from face detections about 5 times per second, 68 dlib landmarks are detected per
    frame and gaps of up to ``max_gap`` frames interpolated
    (:func:`jeancore.data.landmarks.fill_gaps`); each frame's 64x64 grey face crop
    (:func:`jeancore.data.facecrop.face_crop_grey`) goes through the mini-Xception
    (:func:`jeancore.data.emotion.emotion_from_crops`). Frames in longer runs without a face
    take the features of the nearest frame with one (``held``), so the sequence keeps one row
    per frame; the expression transformer then windows it as it does a dataset's features.

    Args:
        path: a video with a face (any format FFmpeg reads).
        fps: frame rate of the output grid.
        max_seconds, max_frames: use only the start of the video.
        crop_size: side in pixels of the stored face crops (``crops``); memory is
            ``T * crop_size^2 * 3`` bytes.
        max_gap: longest run of frames without a face that is interpolated.
        min_face_fraction: fewest frames (fraction) that must have a face.
        model: a loaded emotion CNN (default :func:`jeancore.data.emotion.load_emotion_cnn`).
        detector: landmark detector (default dlib, as preprocessing).
        device: torch device of the emotion CNN.
        progress: a progress bar for the landmarks.

    Returns:
        :class:`ExpressionSource` with T = the video's frames at ``fps`` (cut by
        ``max_seconds`` / ``max_frames``).

    Raises:
        BadInputError: missing, unreadable or truncated file; no face in the video; fewer
            than ``min_face_fraction`` of the frames with a face (the message lists them).
    """
    from ...data.emotion import emotion_from_crops, load_emotion_cnn
    from ...data.facecrop import face_crop_grey

    fv = face_video(path, fps, max_seconds, max_frames, int(crop_size), max_gap, detector,
                    progress)
    track = fv.track
    _check_face_fraction(path, track, min_face_fraction, fps)
    valid = track.valid
    if not valid.all():
        from ...data.landmarks import frame_ranges

        log.warning("%s: no face in frames %s: their expression is held from the nearest frame "
                    "with a face", path, frame_ranges(~valid, fps))
    hold = _hold_index(valid)
    keep = np.flatnonzero(valid)
    grey = np.stack([face_crop_grey(fv.frames[i], track.points[i]) for i in keep])
    feats, probs = emotion_from_crops(grey, model=model or load_emotion_cnn(device=device),
                                      device=device)
    row = np.searchsorted(keep, hold)  # row of each frame's (nearest) valid frame
    crops = np.stack(fv.frames)[hold]
    return ExpressionSource(
        features=feats[row], probs=probs[row], crops=crops,
        landmarks=track.points.astype(np.float32), found=track.found.copy(),
        interpolated=track.interpolated.copy(), held=~valid, fps=float(fps), crop=fv.crop,
        path=str(path))
