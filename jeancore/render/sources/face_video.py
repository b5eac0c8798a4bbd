"""A driving video seen as preprocessing sees a dataset's video: decoded through one square
face crop for the clip, with 68 landmarks per frame. Shared by the expression and the head-pose
sources."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...errors import BadInputError

__all__ = ["FaceVideo", "face_video"]


@dataclasses.dataclass
class FaceVideo:
    """A driving video through one face crop (:func:`face_video`)."""

    frames: list            # uint8 [size, size, 3] crops of the whole clip
    crop: tuple             # (x0, y0, side) in source pixels
    track: object           # LandmarkTrack in crop pixels


def face_video(path, fps, max_seconds, max_frames, size, max_gap, detector, progress
               ) -> FaceVideo:
    """Decode a driving video at ``fps`` through ONE square face crop, as preprocessing's
    decode step (scan for the face about 5 times per second,
    :func:`jeancore.data.facecrop.choose_crop`), and detect 68 landmarks per frame with short
    gaps interpolated (:func:`jeancore.data.landmarks.detect_landmarks`).

    Args:
        path: the video; fps: frame rate to decode at; max_seconds, max_frames: only the start;
        size: side of the square crops in pixels; max_gap: longest interpolated run without a
        face; detector: landmark detector (None: dlib); progress: a progress bar.

    Raises:
        BadInputError: unreadable video, shorter than one frame, no face in the scan.
    """
    from ...data.facecrop import choose_crop, scan_face_boxes
    from ...data.landmarks import detect_landmarks
    from ...data.video import iter_frames, output_frame_count, probe_video

    info = probe_video(path)
    duration = info.duration if max_seconds is None else min(info.duration, float(max_seconds))
    n = output_frame_count(duration, fps)
    if max_frames is not None:
        n = min(n, int(max_frames))
    if n < 1:
        raise BadInputError(f"{path}: shorter than one frame at {fps:g} fps")
    boxes, looked, step = scan_face_boxes(iter_frames(path, fps, max_frames=n), n, fps)
    if not boxes:
        raise BadInputError(f"{path}: no face found in any of the {looked} frames examined "
                            f"(every {step / fps:.2f} s over {n / fps:.2f} s); a driving video "
                            "needs a visible face")
    crop = choose_crop(np.array(boxes), info.width, info.height)
    frames = list(iter_frames(path, fps, crop=crop, size=size, max_frames=n))
    track = detect_landmarks(frames, detector, max_gap=max_gap, progress=progress,
                             total=len(frames))
    return FaceVideo(frames, tuple(int(v) for v in crop), track)
