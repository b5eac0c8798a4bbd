"""Paste-back: the rendered square crop blended back into the source video's frames, at the
source's full size and frame rate (SyncTalk's ``--portrait`` mode).

A dataset is the source video seen through one square crop ``(x0, y0, side)`` (source
pixels), decoded at 25 fps by nearest timestamps and resized to ``size`` (meta.json, see
``docs/dataset.md``). Paste-back inverts that: each rendered frame (``size`` x ``size``) is
resized to ``side`` x ``side`` and blended into a source frame over the crop square, with a
feathered border (weight 0 -> 1 over ``feather`` pixels inward from the square's edge);
pixels outside the square are the source's own.

**Which source frame.** Rendered frame ``j`` (25 fps, the speech's clock) has its head pose
and torso from dataset frame ``d[j]`` (``dataset_frames``: for pose ``dataset`` the
ping-pong index of :func:`jeancore.render.sources.fit_length`; one frame for ``frozen``; the
nearest-pose frame for a retargeted video). Dataset frame ``i`` is decoded frame
``first_frame + i``, i.e. the source frame nearest to time ``(first_frame + i) / 25`` (the
decode step's rule). The output runs at the source's frame rate: output frame ``m`` (time
``t = m / fps_source``) shows rendered frame ``round(25 t)`` pasted into the source frame
nearest to time ``(first_frame + u) / 25``, where ``u`` is ``d`` read at the fractional index
``25 t`` (linear between neighbours that differ by at most one frame, so the backdrop keeps the
source's own motion at any frame rate; nearest across a jump). With a 25 fps source and pose
``dataset`` this is frame for frame: output ``m`` = render ``m`` over source frame
``first_frame + d[m]``; audio longer than the clip walks the source frames forward and back
(ping-pong) exactly as the poses do.

**Streamed.** Source frames are decoded on the fly (:func:`iter_source_frames`): forward runs
sequentially, backward runs (ping-pong) in blocks of at most ``block_bytes`` decoded from the
key frame before the block; renders are consumed in order. Memory does not grow with the
number of frames; the mp4 is written by :func:`jeancore.data.video.write_video`, atomically.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import BadInputError, ConfigError

__all__ = ["PasteBackSource", "PasteBackResult", "SourceTimeline", "source_timeline",
           "paste_back_source", "paste_back_plan", "check_crop", "feather_mask", "paste_crop",
           "iter_source_frames", "iter_paste_back", "write_paste_back", "pad_even"]

log = logging.getLogger("jeancore.render")

DATASET_FPS = 25.0


# ------------------------------------------------------------------------------------------
# the source video's frames and their times
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SourceTimeline:
    """The frames of a video's first video stream in presentation order.

    Attributes:
        pts: int64 [M] presentation timestamps (stream time base).
        times: float64 [M] seconds from the stream's start (as the decode step measures).
        keyframe: bool [M].
        fps: the stream's average frame rate.
        width, height: frame size.
    """

    pts: np.ndarray
    times: np.ndarray
    keyframe: np.ndarray
    fps: float
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.pts)

    def nearest(self, t) -> np.ndarray:
        """Index of the frame nearest to time(s) ``t`` (seconds), as the decode step chooses
        (:func:`jeancore.data.video.iter_frames`: a time exactly between two frames takes
        the later one). int64, the shape of ``t``."""
        times = self.times
        mids = 0.5 * (times[:-1] + times[1:])
        return np.searchsorted(mids, np.asarray(t, np.float64), side="right").astype(np.int64)


def source_timeline(path) -> SourceTimeline:
    """Read the timestamps of every frame of a video (demuxing only, no decoding).

    Raises:
        BadInputError: not a video, no video stream, frames without timestamps (re-encode to
            mp4), an empty stream.
    """
    from ..data.video import _open, probe_video

    info = probe_video(path)
    pts, key = [], []
    with _open(path) as c:
        s = c.streams.video[0]
        tb = s.time_base
        start = s.start_time * tb if s.start_time is not None else 0.0
        for pkt in c.demux(s):
            if pkt.size == 0 or pkt.is_discard:
                continue
            if pkt.pts is None:
                raise BadInputError(f"{path}: video frames without timestamps; re-encode it "
                                    "(e.g. to mp4) before pasting back")
            pts.append(int(pkt.pts))
            key.append(bool(pkt.is_keyframe))
    if not pts:
        raise BadInputError(f"{path}: the video stream has no frames")
    order = np.argsort(pts, kind="stable")
    pts_a = np.asarray(pts, np.int64)[order]
    times = np.array([float(int(p) * tb - start) for p in pts_a], np.float64)
    return SourceTimeline(pts=pts_a, times=times, keyframe=np.asarray(key, bool)[order],
                          fps=info.fps, width=info.width, height=info.height)


def iter_source_frames(path, indices, *, timeline: SourceTimeline | None = None,
                       block_bytes: int = 256 << 20) -> Iterator[np.ndarray]:
    """Decode the frames ``indices`` (presentation order, any order) of a video, streamed.

    Runs of non-decreasing indices are decoded sequentially (seeking only to jump backward or
    far ahead); decreasing runs (the backward half of a ping-pong) in blocks of at most
    ``block_bytes`` of decoded frames, each decoded forward from the key frame before it and
    yielded in reverse. A repeated index reuses the frame.

    Args:
        path: the video.
        indices: int [N] frame indices into :func:`source_timeline`'s frames.
        timeline: the video's timeline (read when None).
        block_bytes: memory bound of a backward block.

    Yields:
        uint8 RGB [H, W, 3] frames, one per index.

    Raises:
        BadInputError: an index out of range, a file that cannot be decoded there.
    """
    tl = source_timeline(path) if timeline is None else timeline
    idx = np.asarray(indices, np.int64).reshape(-1)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(tl)):
        raise BadInputError(f"{path}: frame {int(idx.max())} requested of a video with "
                            f"{len(tl)} frames")
    block = max(1, int(block_bytes) // max(1, tl.width * tl.height * 3))
    with _Decoder(path, tl) as dec:
        i, n = 0, len(idx)
        while i < n:
            j = i + 1
            if j < n and idx[j] < idx[i]:
                # a decreasing run (the backward half of a ping-pong): blocks from the top
                while j < n and idx[j] <= idx[j - 1]:
                    j += 1
                run = idx[i:j]
                k = 0
                while k < len(run):
                    top = int(run[k])
                    bottom = max(int(run[-1]), top - block + 1)
                    rest = run[k:]
                    frames = dec.range(bottom, top, set(rest[rest >= bottom].tolist()))
                    while k < len(run) and run[k] >= bottom:
                        yield frames[int(run[k])]
                        k += 1
                    del frames
            else:
                while j < n and idx[j] >= idx[j - 1]:
                    j += 1
                for q in idx[i:j]:
                    yield dec.get(int(q))
            i = j


class _Decoder:
    """Sequential decoding with seeks, frames identified by their timestamps."""

    _MAX_SKIP = 250  # decode through at most this many frames instead of seeking ahead

    def __init__(self, path, timeline: SourceTimeline):
        from ..data.video import _open

        self.path, self.tl = path, timeline
        self._c = _open(path)
        self._s = self._c.streams.video[0]
        self._s.thread_type = "AUTO"
        self._index = {int(p): k for k, p in enumerate(timeline.pts)}
        self._it = None
        self._next = 0          # index of the next frame the decoder will give
        self._held = (-1, None)  # last converted frame

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._c.close()

    def _seek(self, k: int) -> None:
        self._c.seek(int(self.tl.pts[k]), stream=self._s, backward=True, any_frame=False)
        self._it = self._c.decode(self._s)
        self._next = -1  # unknown until a frame arrives

    def _frames(self) -> Iterator[tuple[int, object]]:
        import av

        if self._it is None:
            self._it = self._c.decode(self._s)
        try:
            for f in self._it:
                k = self._index.get(int(f.pts)) if f.pts is not None else None
                if k is None:
                    continue
                self._next = k + 1
                yield k, f
        except av.error.FFmpegError as e:
            raise BadInputError(f"{self.path}: decoding failed ({e}); the file is truncated "
                                "or corrupt") from e

    def _advance_to(self, k: int):
        if not (0 <= self._next <= k and k - self._next <= self._MAX_SKIP):
            self._seek(k)
        for got, f in self._frames():
            if got >= k:
                if got != k:
                    break
                return f
        raise BadInputError(f"{self.path}: frame {k} (pts {int(self.tl.pts[k])}) could not be "
                            "decoded; the file is truncated or corrupt: re-encode it")

    def get(self, k: int) -> np.ndarray:
        if self._held[0] != k:
            self._held = (k, self._advance_to(k).to_ndarray(format="rgb24"))
        return self._held[1]

    def range(self, lo: int, hi: int, keep: set) -> dict:
        out = {}
        f = self._advance_to(lo)
        if lo in keep:
            out[lo] = f.to_ndarray(format="rgb24")
        if hi > lo:
            for got, f in self._frames():
                if got in keep:
                    out[got] = f.to_ndarray(format="rgb24")
                if got >= hi:
                    break
        missing = keep - set(out)
        if missing:
            raise BadInputError(f"{self.path}: frames {sorted(missing)[:5]} could not be "
                                "decoded; the file is truncated or corrupt: re-encode it")
        return out


# ------------------------------------------------------------------------------------------
# which frames
# ------------------------------------------------------------------------------------------
def paste_back_plan(dataset_frames, first_frame: int, timeline: SourceTimeline | np.ndarray,
                    out_fps: float | None = None, fps: float = DATASET_FPS
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Which rendered frame goes over which source frame (see the module docstring).

    Args:
        dataset_frames: int [n] the dataset frame of each rendered frame (its pose / torso).
        first_frame: meta.json ``first_frame`` (decoded frame of dataset frame 0).
        timeline: the source's :class:`SourceTimeline`, or its frame times float [M] seconds.
        out_fps: output frame rate (default: the timeline's, i.e. the source's).
        fps: the dataset's (and the renders') frame rate.

    Returns:
        (source_index int64 [N], render_index int64 [N]) with
        ``N = round(n / fps * out_fps)`` (:func:`jeancore.data.video.output_frame_count`).

    Raises:
        ValueError: empty or negative ``dataset_frames``, no ``out_fps`` for bare times.
    """
    from ..data.video import output_frame_count

    d = np.asarray(dataset_frames, np.int64).reshape(-1)
    if len(d) == 0 or d.min() < 0:
        raise ValueError("dataset_frames must be a non-empty list of dataset frame indices")
    if isinstance(timeline, SourceTimeline):
        tl = timeline
        out_fps = tl.fps if out_fps is None else out_fps
    else:
        times = np.asarray(timeline, np.float64)
        tl = SourceTimeline(np.arange(len(times)), times, np.ones(len(times), bool),
                            float(out_fps or 0), 0, 0)
    if not out_fps or out_fps <= 0:
        raise ValueError("paste_back_plan needs a positive out_fps")
    n = len(d)
    n_out = max(1, output_frame_count(n / fps, out_fps))
    x = np.arange(n_out) / float(out_fps) * fps               # fractional render index
    render = np.minimum(np.floor(x + 0.5).astype(np.int64), n - 1)
    j0 = np.minimum(np.floor(x).astype(np.int64), n - 1)
    j1 = np.minimum(j0 + 1, n - 1)
    frac = np.where(j1 > j0, x - j0, 0.0)
    d0, d1 = d[j0].astype(np.float64), d[j1].astype(np.float64)
    u = np.where(np.abs(d1 - d0) <= 1, d0 + frac * (d1 - d0), d[render])
    source = tl.nearest((first_frame + u) / fps)
    return np.minimum(source, len(tl) - 1), render


# ------------------------------------------------------------------------------------------
# pixels
# ------------------------------------------------------------------------------------------
def check_crop(crop, width: int, height: int, what: str = "the crop") -> tuple[int, int, int]:
    """``crop = (x0, y0, side)`` as ints, checked to lie inside a ``width`` x ``height`` frame.

    Raises:
        BadInputError: a crop (partly) outside the frame or with side < 1.
    """
    try:
        x0, y0, side = (int(v) for v in crop)
    except (TypeError, ValueError) as e:
        raise BadInputError(f"{what} must be (x0, y0, side), got {crop!r}") from e
    if side < 1 or x0 < 0 or y0 < 0 or x0 + side > width or y0 + side > height:
        raise BadInputError(
            f"{what} (x0={x0}, y0={y0}, side={side}) is not inside the {width}x{height} source "
            "frame: paste-back needs the crop the dataset was made with, inside the video it "
            "was made from")
    return x0, y0, side


def feather_mask(side: int, feather: float) -> np.ndarray:
    """Blend weights of a square pasted with a feathered border: float32 [side, side], the
    product of a row and a column ramp that rise (smoothstep) from 0 at the square's edge to
    1 at ``feather`` pixels inside (pixel centres; ``feather`` 0: all 1).

    Raises:
        ValueError: side < 1 or feather < 0.
    """
    if side < 1 or feather < 0:
        raise ValueError(f"side must be >= 1 and feather >= 0, got {side}, {feather}")
    if feather == 0:
        return np.ones((side, side), np.float32)
    i = np.arange(side, dtype=np.float64)
    edge = np.minimum(i, side - 1 - i) + 0.5
    r = np.clip(edge / feather, 0.0, 1.0)
    r = r * r * (3.0 - 2.0 * r)
    return np.outer(r, r).astype(np.float32)


def paste_crop(frame, crop_image, crop, mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a rendered crop into a source frame.

    ``crop_image`` is resized to ``side`` x ``side`` (:func:`jeancore.data.video.crop_resize`:
    area when shrinking, bicubic when enlarging) and blended over the square
    ``crop = (x0, y0, side)`` with the weights ``mask`` (default :func:`feather_mask` with a
    border of 4% of ``side``); every pixel outside the square is the frame's own.

    Args:
        frame: uint8 [H, W, 3] the source frame (not modified).
        crop_image: uint8 [s, s, 3] (or float in [0, 1]) the rendered crop.
        crop: (x0, y0, side) source pixels, inside the frame.
        mask: float [side, side] blend weights in [0, 1].

    Returns:
        uint8 [H, W, 3].

    Raises:
        BadInputError: the crop is not inside the frame; ValueError: a mask of another size.
    """
    from ..data.video import crop_resize

    frame = np.asarray(frame)
    x0, y0, side = check_crop(crop, frame.shape[1], frame.shape[0])
    img = np.asarray(crop_image)
    if img.dtype != np.uint8:
        img = np.clip(np.asarray(img, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.ndim != 3 or img.shape[-1] != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"crop_image must be a square [s, s, 3], got {list(img.shape)}")
    img = crop_resize(img, None, side)
    m = feather_mask(side, 0.04 * side) if mask is None else np.asarray(mask, np.float32)
    if m.shape != (side, side):
        raise ValueError(f"mask must be [{side}, {side}], got {list(m.shape)}")
    out = frame.copy()
    region = out[y0:y0 + side, x0:x0 + side].astype(np.float32)
    blend = region + m[..., None] * (img.astype(np.float32) - region)
    out[y0:y0 + side, x0:x0 + side] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    return out


def pad_even(img: np.ndarray) -> np.ndarray:
    """Pad a frame by one replicated row / column where its height / width is odd (H.264
    4:2:0 needs even sizes); even frames are returned as they are."""
    h, w = img.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return img
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


# ------------------------------------------------------------------------------------------
# a dataset's source
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PasteBackSource:
    """A dataset's source video and crop (meta.json), checked (:func:`paste_back_source`).

    Attributes:
        video: the source video file.
        crop: (x0, y0, side) in source pixels, inside the frame.
        first_frame: decoded frame of dataset frame 0; n_frames: dataset frames.
        fps: the dataset's frame rate; size: its frame side in pixels.
        timeline: the source's frames and times.
    """

    video: Path
    crop: tuple[int, int, int]
    first_frame: int
    n_frames: int
    fps: float
    size: int
    timeline: SourceTimeline

    @property
    def width(self) -> int:
        return self.timeline.width

    @property
    def height(self) -> int:
        return self.timeline.height


def paste_back_source(dataset, video=None, *, check_hash: bool = True) -> PasteBackSource:
    """The source video and crop of a dataset, ready for paste-back.

    Args:
        dataset: a dataset folder (``jean preprocess``).
        video: the source video, when it is no longer where meta.json ``source.video`` says.
        check_hash: verify the video's SHA-256 against meta.json (a different file would be
            pasted into at the wrong place or time).

    Raises:
        BadInputError: not a dataset; a dataset that records no source video or crop; the
            video missing (pass ``video``) or not the one the dataset was made from; a crop
            not inside the source frame.
    """
    from .._io import file_sha256
    from ..data.dataset import read_meta

    root = Path(dataset)
    meta = read_meta(root)
    src = meta.get("source") or {}
    crop = meta.get("crop")
    recorded = src.get("video")
    if not recorded or crop is None or "first_frame" not in meta:
        raise BadInputError(f"{root}: the dataset records no source video and crop (meta.json "
                            "source.video / crop): paste-back is not possible; render the "
                            "crop only")
    path = Path(video) if video is not None else Path(recorded)
    if not path.is_file():
        raise BadInputError(f"the source video {str(path)!r} of {root} is not there (moved or "
                            "deleted?): pass it with video= / --source-video")
    if check_hash and src.get("video_sha256") and file_sha256(path) != src["video_sha256"]:
        raise BadInputError(f"{path} is not the video {root} was made from (its SHA-256 "
                            "differs from meta.json source.video_sha256)")
    tl = source_timeline(path)
    crop = check_crop(crop, tl.width, tl.height, f"the crop of {root}")
    return PasteBackSource(video=path, crop=crop, first_frame=int(meta["first_frame"]),
                           n_frames=int(meta["n_frames"]), fps=float(meta["fps"]),
                           size=int(meta["size"]), timeline=tl)


def iter_paste_back(renders: Iterable, dataset_frames, source: PasteBackSource, *,
                    feather: float | None = None, block_bytes: int = 256 << 20
                    ) -> Iterator[np.ndarray]:
    """Stream the pasted-back frames (:func:`paste_back_plan`, :func:`paste_crop`).

    Args:
        renders: iterable of the rendered frames, ``size`` x ``size`` uint8 (or float in
            [0, 1]) [size, size, 3], one per entry of ``dataset_frames``, in order (a
            generator: they are consumed one at a time).
        dataset_frames: int [n] the dataset frame of each rendered frame.
        source: :func:`paste_back_source`.
        feather: border width in source pixels (default 4% of the crop side).
        block_bytes: see :func:`iter_source_frames`.

    Yields:
        uint8 [H, W, 3] at the source's size (padded by one pixel where odd), output frame
        rate = the source's.

    Raises:
        BadInputError: a dataset frame index out of range, fewer renders than
            ``dataset_frames``, a render of the wrong size.
    """
    d = np.asarray(dataset_frames, np.int64).reshape(-1)
    if len(d) and (d.min() < 0 or d.max() >= source.n_frames):
        raise BadInputError(f"dataset frame {int(d.max())} is out of range for a dataset of "
                            f"{source.n_frames} frames")
    src_idx, render_idx = paste_back_plan(d, source.first_frame, source.timeline,
                                          fps=source.fps)
    side = source.crop[2]
    mask = feather_mask(side, 0.04 * side if feather is None else float(feather))
    it = iter(renders)
    cur, cur_j = None, -1
    for frame, j in zip(iter_source_frames(source.video, src_idx, timeline=source.timeline,
                                           block_bytes=block_bytes), render_idx):
        while cur_j < j:
            cur = next(it, None)
            cur_j += 1
            if cur is None:
                raise BadInputError(f"paste-back got {cur_j} rendered frames for {len(d)} "
                                    "dataset frames")
        if np.shape(cur)[:2] != (source.size, source.size):
            raise BadInputError(f"rendered frames must be {source.size}x{source.size} (the "
                                f"dataset's size), got {np.shape(cur)}")
        yield pad_even(paste_crop(frame, cur, source.crop, mask))


@dataclasses.dataclass
class PasteBackResult:
    """What :func:`write_paste_back` made: the mp4, its frame count, rate and size."""

    video: Path
    n_frames: int
    fps: float
    width: int
    height: int


def write_paste_back(out, renders: Iterable, dataset_frames, dataset, audio=None, *,
                     sr: int = 16000, video=None, feather: float | None = None,
                     crf: int = 18, block_bytes: int = 256 << 20) -> PasteBackResult:
    """Write the pasted-back video (source size and frame rate) with the new speech, atomically.

    Args:
        out: the .mp4 to write.
        renders: the rendered frames at the dataset's size, in order, one per
            ``dataset_frames`` entry (streamed).
        dataset_frames: int [n] the dataset frame of each rendered frame (25 fps).
        dataset: the dataset folder (its meta.json's source video and crop).
        audio: float32 mono speech at ``sr`` Hz (cut to ``n / 25`` s), or None (silent).
        video: the source video, if it moved (see :func:`paste_back_source`).
        feather: border width in source pixels (default 4% of the crop side).
        crf: H.264 quality.

    Returns:
        :class:`PasteBackResult`.

    Raises:
        ConfigError: ``out`` not an .mp4.
        BadInputError: see :func:`paste_back_source` and :func:`iter_paste_back` (nothing is
            written).
    """
    from ..data.video import write_video

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"output must be an .mp4 file, got {str(out)!r}")
    src = paste_back_source(dataset, video)
    d = np.asarray(dataset_frames, np.int64).reshape(-1)
    n_out = len(paste_back_plan(d, src.first_frame, src.timeline, fps=src.fps)[0])
    wav = None
    if audio is not None:
        wav = np.asarray(audio, np.float32).reshape(-1)[: int(round(len(d) / src.fps * sr))]
    if src.width % 2 or src.height % 2:
        log.warning("the source is %dx%d: the pasted-back video is padded to even sizes "
                    "(H.264)", src.width, src.height)
    fps = src.timeline.fps
    write_video(out, iter_paste_back(renders, d, src, feather=feather,
                                     block_bytes=block_bytes),
                fps, audio=wav, sr=sr, crf=crf)
    return PasteBackResult(video=out, n_frames=n_out, fps=fps,
                           width=src.width + src.width % 2, height=src.height + src.height % 2)
