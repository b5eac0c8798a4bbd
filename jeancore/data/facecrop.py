"""Face crops, of two kinds (both torch-free, so the preprocessing worker processes can use
them without loading torch):

* **The clip's crop** (:func:`scan_face_boxes`, :func:`choose_crop`): ONE square crop for a
  whole video, chosen from face detections about 5 times per second; ``jean preprocess``
  decodes a dataset's frames through it (the NeRF needs a fixed camera), and the driving
  sources of a rendering (:mod:`jeancore.render.sources`) see a driving video through it.
* **The emotion CNN's face crop** (:func:`crop_boxes`, :func:`face_crops`,
  :func:`face_crop_grey`): a 64x64 grey crop per frame around the iBUG-68 landmarks, the
  mini-Xception's input (:mod:`jeancore.data.emotion`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["INPUT_SIZE", "choose_crop", "crop_boxes", "face_crops", "face_crop_grey",
           "scan_face_boxes"]


# ------------------------------------------------------------------------------------------
# the clip's crop
# ------------------------------------------------------------------------------------------
def choose_crop(boxes: np.ndarray, width: int, height: int, scale: float = 2.6,
                face_height: float = 0.45) -> tuple[int, int, int]:
    """One square crop for the whole clip from the face boxes found in it.

    The side is ``scale`` x the 90th percentile of the face box size, clamped to the frame's
    shorter side; the crop is centred horizontally on the median face centre and placed so
    that this centre is at ``face_height`` of the crop's height, then shifted to lie inside the
    frame.

    Args:
        boxes: float [K, 4] face boxes (left, top, right, bottom) in source pixels.
        width, height: source frame size.

    Returns:
        (x0, y0, side) in source pixels.

    Raises:
        ValueError: no boxes.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        raise ValueError("choose_crop needs at least one face box")
    sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    side = int(min(round(scale * np.percentile(sizes, 90)), width, height))
    cx = np.median((boxes[:, 0] + boxes[:, 2]) / 2)
    cy = np.median((boxes[:, 1] + boxes[:, 3]) / 2)
    x0 = int(round(np.clip(cx - side / 2, 0, width - side)))
    y0 = int(round(np.clip(cy - face_height * side, 0, height - side)))
    return x0, y0, side


class _ScanDetector:
    """Face boxes in full source frames: tries detection copies with shorter sides 256, 480
    and the full frame, and stops at the first that finds a face (dlib's HOG detector finds
    large faces best on a small copy and small faces only at full size or upscaled; its
    smallest face is about 80 px)."""

    def __init__(self):
        from .landmarks import DlibLandmarkDetector

        self._det = DlibLandmarkDetector(upsample_retry=False)

    def __call__(self, frame):
        short = min(frame.shape[:2])
        for side in sorted({256, 480, short}):  # small videos are upscaled
            boxes = self._det.detect_faces(frame, detect_side=side)
            if boxes:
                return boxes[0]
        return None


def scan_face_boxes(frames, n: int, fps: float, *, keep: list | None = None):
    """Face boxes of a clip from about 5 frames per second (at most 100 frames), as the
    decode step chooses its crop from them (dlib's HOG detector, see :func:`choose_crop`).

    Args:
        frames: iterable of the clip's uint8 RGB frames [H, W, 3] (n of them).
        n: number of frames; fps: their rate (frames per second).
        keep: a list to append every frame to (to reuse the decoded frames), or None.

    Returns:
        (boxes: list of (x0, y0, x1, y1) in source pixels, frames examined, step between
        them in frames).
    """
    step = max(1, int(round(fps / 5)), -(-n // 100))
    scan = _ScanDetector()
    boxes, looked = [], 0
    for i, frame in enumerate(frames):
        if keep is not None:
            keep.append(frame)
        if i % step == 0:
            looked += 1
            box = scan(frame)
            if box is not None:
                boxes.append(box)
    return boxes, looked, step


# ------------------------------------------------------------------------------------------
# the emotion CNN's face crop
# ------------------------------------------------------------------------------------------

#: Side of the emotion network's square grey input, pixels.
INPUT_SIZE = 64

# Face box relative to the landmark bounding box (see face_crops): side = _BOX_SCALE * max(w, h)
# of the 68-point box, centre shifted up by _BOX_SHIFT_UP * that max(w, h) (toward the forehead,
# which the landmarks do not cover).
_BOX_SCALE = 1.25
_BOX_SHIFT_UP = 0.10


def _check_frames_landmarks(frames, landmarks) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    landmarks = np.asarray(landmarks)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 RGB [N, H, W, 3], got {frames.dtype} "
                         f"{frames.shape}")
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be [N, 68, 2] (iBUG-68, x/y pixels), got "
                         f"{landmarks.shape}")
    if not np.issubdtype(landmarks.dtype, np.floating) and not np.issubdtype(
            landmarks.dtype, np.integer):
        raise ValueError(f"landmarks must be a float array, got {landmarks.dtype}")
    if landmarks.shape[0] != frames.shape[0]:
        raise ValueError(f"{frames.shape[0]} frames but {landmarks.shape[0]} landmark sets")
    landmarks = landmarks.astype(np.float64)
    if not np.isfinite(landmarks).all():
        bad = np.flatnonzero(~np.isfinite(landmarks).all(axis=(1, 2)))
        raise ValueError(f"landmarks contain NaN/inf (frames {bad[:10].tolist()}"
                         f"{' ...' if bad.size > 10 else ''}); drop or fill those frames first")
    return frames, landmarks


def crop_boxes(landmarks: np.ndarray) -> np.ndarray:
    """Square face boxes used by :func:`face_crops`, from iBUG-68 landmarks.

    The box is centred on the landmark bounding box shifted up by 0.10 of its larger side
    (toward the forehead, which the 68 points do not cover) and has side 1.25 times that
    larger side. On frontal faces this spans roughly hairline to just below the chin and ear
    to ear, like a FER2013 face and like the ``fer`` package's crop (a face-detector box made
    square and padded by 10 px per side).

    Args:
        landmarks: float [N, 68, 2] pixel coordinates, x = column, y = row, pixel-corner
            convention (the centre of pixel (i, j) is at (j + 0.5, i + 0.5)).

    Returns:
        float64 [N, 3]: (x0, y0, side) of each box in the same pixel units; the box covers
        x in [x0, x0 + side), y in [y0, y0 + side). It may extend beyond the frame.

    Raises:
        ValueError: landmarks not [N, 68, 2] or not finite.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be [N, 68, 2], got {landmarks.shape}")
    lo = landmarks.min(axis=1)
    hi = landmarks.max(axis=1)
    extent = (hi - lo).max(axis=1)
    cx = 0.5 * (lo[:, 0] + hi[:, 0])
    cy = 0.5 * (lo[:, 1] + hi[:, 1]) - _BOX_SHIFT_UP * extent
    side = _BOX_SCALE * extent
    return np.stack([cx - 0.5 * side, cy - 0.5 * side, side], axis=1)


def face_crops(frames: np.ndarray, landmarks: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Grey square face crops, the mini-Xception's input.

    For each frame: a square box around the face (:func:`crop_boxes`: the landmark bounding
    box, shifted up 0.10 and enlarged 1.25x of its larger side, so the crop holds the whole
    face from forehead to chin like FER2013's faces and the ``fer`` package's padded
    detector box) is cut out at integer pixel bounds, any part outside the frame is filled by
    replicating the frame's border pixels, converted to grey with the ITU-R BT.601 weights
    (0.299 R + 0.587 G + 0.114 B, as ``cv2.COLOR_RGB2GRAY``), resized to ``size`` x ``size``
    with ``cv2.INTER_AREA`` (area averaging when shrinking, bilinear when enlarging) and
    scaled to [-1, 1] as ``grey / 255 * 2 - 1``.

    Args:
        frames: uint8 RGB [N, H, W, 3].
        landmarks: float [N, 68, 2] iBUG-68 points in pixels (x = column, y = row;
            pixel-corner convention: the centre of pixel (i, j) is at (j + 0.5, i + 0.5)).
        size: output side in pixels (64 for :class:`MiniXception`).

    Returns:
        float32 [N, 1, size, size] in [-1, 1].

    Raises:
        ValueError: frames not uint8 [N, H, W, 3]; landmarks not [N, 68, 2] or not finite;
            N differs between them; size < 1.
    """

    frames, landmarks = _check_frames_landmarks(frames, landmarks)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    out = np.empty((frames.shape[0], 1, size, size), np.float32)
    for i, box in enumerate(crop_boxes(landmarks)):
        out[i, 0] = _grey_crop(frames[i], box, size).astype(np.float32) * (2.0 / 255.0) - 1.0
    return out


def _grey_crop(frame: np.ndarray, box, size: int) -> np.ndarray:
    import cv2

    x0, y0, side = (float(v) for v in box)
    h, w = frame.shape[:2]
    s = max(round(side), 1)
    # integer box with the same centre
    c0 = math.floor(x0 + 0.5 * side - 0.5 * s + 0.5)
    r0 = math.floor(y0 + 0.5 * side - 0.5 * s + 0.5)
    if c0 >= 0 and r0 >= 0 and c0 + s <= w and r0 + s <= h:
        crop = frame[r0:r0 + s, c0:c0 + s]
    else:  # leaves the frame: clamped indices replicate the border pixels outward
        rows = np.clip(np.arange(r0, r0 + s), 0, h - 1)
        cols = np.clip(np.arange(c0, c0 + s), 0, w - 1)
        crop = frame[np.ix_(rows, cols)]
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


def face_crop_grey(frame: np.ndarray, landmarks: np.ndarray, size: int = INPUT_SIZE
                   ) -> np.ndarray:
    """One frame's face crop as :func:`face_crops` cuts it, before scaling: uint8 grey
    [size, size] (``face_crops`` = this * 2 / 255 - 1). For callers that have one frame in
    memory at a time (the preprocessing workers).

    Args:
        frame: uint8 RGB [H, W, 3]; landmarks: float [68, 2] pixels (pixel-corner convention).
    """
    frames, lms = _check_frames_landmarks(np.asarray(frame)[None], np.asarray(landmarks)[None])
    return _grey_crop(frames[0], crop_boxes(lms)[0], int(size))
