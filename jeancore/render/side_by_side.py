"""Side-by-side videos (``compare.mp4``: ground truth | render), streamed into the project's
mp4 writer (:func:`jeancore.data.video.write_video`, atomic)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["side_by_side", "write_side_by_side"]


def _uint8(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(np.asarray(a, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"frames must be RGB [H, W, 3], got {list(a.shape)}")
    return a


def side_by_side(*frames, labels: Sequence[str] | None = None) -> np.ndarray:
    """Frames placed left to right at the first one's height (the others resized, aspect
    kept: area interpolation when shrinking, bicubic when enlarging), with an optional label
    in the top-left corner of each.

    Args:
        frames: two or more RGB frames, uint8 or float in [0, 1], [H_i, W_i, 3].
        labels: one short text per frame, or None.

    Returns:
        uint8 [H, sum W_i', 3], padded by one replicated row / column where odd (H.264).

    Raises:
        ValueError: fewer than two frames, not RGB, a wrong number of labels.
    """
    import cv2

    from .paste_back import pad_even

    if len(frames) < 2:
        raise ValueError("side_by_side needs at least two frames")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    imgs = [_uint8(f) for f in frames]
    h = imgs[0].shape[0]
    row = []
    for k, img in enumerate(imgs):
        if img.shape[0] != h:
            w = max(1, int(round(img.shape[1] * h / img.shape[0])))
            interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_CUBIC
            img = cv2.resize(img, (w, h), interpolation=interp)
        if labels is not None and labels[k]:
            img = img.copy()
            scale = max(0.3, h / 600)
            thick = max(1, int(round(2 * scale)))
            org = (int(6 * scale) + 2, int(24 * scale) + 4)
            cv2.putText(img, labels[k], org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                        thick + 2, cv2.LINE_AA)
            cv2.putText(img, labels[k], org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                        thick, cv2.LINE_AA)
        row.append(img)
    return pad_even(np.concatenate(row, axis=1))


def write_side_by_side(out, left: Iterable, right: Iterable, fps: float = 25.0, *,
                       audio=None, sr: int = 16000, labels: Sequence[str] | None = None,
                       crf: int = 18) -> int:
    """Write ``left | right`` frame pairs (e.g. ground truth | render) to an mp4, streamed
    and atomically (no partial file under ``out`` on error).

    Args:
        out: the .mp4 path.
        left, right: iterables of RGB frames (uint8 or float in [0, 1]) of equal length;
            right is resized to left's height.
        fps: frame rate.
        audio: float32 mono samples at ``sr`` Hz, or None; cut to the video's length when
            ``left`` has a length (a sequence), muxed whole otherwise.
        labels: e.g. ``("ground truth", "render")``, or None.
        crf: H.264 quality.

    Returns:
        the number of frames written.

    Raises:
        ConfigError: ``out`` not an .mp4; ValueError: sequences of different lengths, no
            frames.
    """
    from ..data.video import write_video

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"output must be an .mp4 file, got {str(out)!r}")
    count = [0]

    def frames():
        for a, b in zip(left, right, strict=True):
            count[0] += 1
            yield side_by_side(a, b, labels=labels)

    wav = None
    if audio is not None:
        wav = np.asarray(audio, np.float32).reshape(-1)
        n = _length(left)  # a sequence: cut the audio to the video; an iterator: keep it
        if n is not None:
            wav = wav[: int(round(n / fps * sr))]
    write_video(out, frames(), fps, audio=wav, sr=sr, crf=crf)
    return count[0]


def _length(x) -> int | None:
    try:
        return len(x)
    except TypeError:
        return None
