"""Per-frame work of the preprocessing steps, run in worker processes over chunks of frames.

dlib holds the GIL, so frames are spread over processes (spawned, not forked: OpenCV's and
OpenMP's thread pools do not survive a fork). This module imports only numpy at the top so a
worker starts quickly; each worker builds its detector / segmenter once and keeps it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CACHE: dict = {}


def frame_file(root, kind: str, i: int) -> Path:
    """``root/<kind>/<i:06d>.jpg`` (``.png`` for the ``parsing`` label maps): the per-frame
    image files of a dataset (docs/dataset.md)."""
    ext = "png" if kind == "parsing" else "jpg"
    return Path(root) / kind / f"{i:06d}.{ext}"


def _frame(root, kind, i):
    from .._io import read_image

    return read_image(frame_file(root, kind, i))


def landmarks_chunk(root: str, indices: list[int], backend: str) -> list:
    """Per frame of ``root/frames``: (68 landmarks float32 [68, 2] or None, the emotion CNN's
    face crop uint8 [64, 64] or None) -- the crop is cut here, while the frame is in memory."""
    from .facecrop import face_crop_grey
    from .landmarks import make_detector

    det = _CACHE.get(("landmarks", backend))
    if det is None:
        det = _CACHE[("landmarks", backend)] = make_detector(backend)
    out = []
    for i in indices:
        frame = _frame(root, "frames", i)
        pts = det(frame)
        out.append((pts, None if pts is None else face_crop_grey(frame, pts)))
    return out


def _segmenter():
    from .parsing import PersonSegmenter

    seg = _CACHE.get("segmenter")
    if seg is None:
        seg = _CACHE["segmenter"] = PersonSegmenter()
    return seg


def person_chunk(root: str, indices: list[int]) -> list:
    """Per frame: (frame uint8 [H, W, 3], person mask bool [H, W]) -- for the background."""
    seg = _segmenter()
    out = []
    for i in indices:
        frame = _frame(root, "frames", i)
        out.append((frame, seg(frame) > 0.5))
    return out


def parsing_chunk(root: str, indices: list[int], points: np.ndarray, parsing_dir: str,
                  head_dir: str, background: np.ndarray) -> list:
    """Per frame: person mask -> head / torso label map (``parsing_dir/NNNNNN.png``) and the
    head composited over the background (``head_dir/NNNNNN.jpg``); returns the head
    fraction of each frame."""
    from .._io import save_image
    from .parsing import LABEL_HEAD, LABEL_TORSO, composite_over, head_torso_masks

    seg = _segmenter()
    out = []
    for i, pts in zip(indices, points):
        frame = _frame(root, "frames", i)
        head, torso = head_torso_masks(seg(frame), pts)
        label = np.zeros(head.shape, np.uint8)
        label[torso] = LABEL_TORSO
        label[head] = LABEL_HEAD
        save_image(Path(parsing_dir) / f"{i:06d}.png", label)
        save_image(Path(head_dir) / f"{i:06d}.jpg", composite_over(frame, head, background))
        out.append(float(head.mean()))
    return out
