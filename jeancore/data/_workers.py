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


class FramePool:
    """Runs the chunk functions of this module over a dataset's frames, in spawned worker
    processes (started on first use, kept for the whole run) or in this process.

    Args:
        root: the dataset folder the chunk functions read.
        workers: processes; 0 = one per CPU core (at most 8), 1 = none (everything here).
    """

    def __init__(self, root, workers: int = 0):
        self.root, self.workers = Path(root), int(workers)
        self._pool = None

    def map(self, fn, indices, *args, bar, per_frame_args=None, chunk: int = 16):
        """Run ``fn(root, chunk_indices, [per_frame_args chunk,] *args)`` over chunks of
        ``indices`` (in the workers when there are 48 frames or more); yields the per-frame
        results in order, advancing the progress bar ``bar`` (closed at the end)."""
        indices = list(indices)
        chunks = [indices[s:s + chunk] for s in range(0, len(indices), chunk)]

        def call_args(c, s):
            extra = () if per_frame_args is None else (per_frame_args[s:s + len(c)],)
            return (str(self.root), c, *extra, *args)

        try:
            pool = self._executor(len(indices))
            if pool is None:
                results = (fn(*call_args(c, k * chunk)) for k, c in enumerate(chunks))
            else:
                futures = [pool.submit(fn, *call_args(c, k * chunk)) for k, c in enumerate(chunks)]
                results = (f.result() for f in futures)
            for c, res in zip(chunks, results):
                bar.update(len(c))
                yield from res
        finally:
            bar.close()

    def _executor(self, n_frames: int):
        import os

        workers = self.workers or min(os.cpu_count() or 1, 8)
        if workers <= 1 or n_frames < 48:
            return None
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (pending chunks are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
