"""Video and audio input/output with PyAV (FFmpeg's libraries, bundled in the ``av`` wheel).

Decoding resamples any frame rate to the dataset rate (25 fps, as AD-NeRF and JEAN) by
nearest timestamps, the way FFmpeg's ``fps`` filter does; audio is decoded and resampled to
16 kHz mono float32. Every failure to read a file is turned into a
:class:`~jeancore.errors.BadInputError` that names the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import BadInputError

__all__ = ["VideoInfo", "probe_video", "iter_frames", "crop_resize", "load_audio", "has_audio",
           "output_frame_count", "write_video"]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reads from a file's headers.

    Attributes:
        path: the file.
        width, height: frame size in pixels.
        fps: average frame rate of the video stream (frames per second, float).
        duration: video duration in seconds.
        n_frames: number of frames in the stream as declared by the container (0 if unknown).
        audio_rate: sample rate of the first audio stream in Hz, or None without audio.
        audio_duration: duration of the first audio stream in seconds, or None.
        codec: the video codec name.
    """

    path: Path
    width: int
    height: int
    fps: float
    duration: float
    n_frames: int
    audio_rate: int | None
    audio_duration: float | None
    codec: str

    @property
    def has_audio(self) -> bool:
        return self.audio_rate is not None


def _open(path):
    import av

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if path.is_dir():
        raise BadInputError(f"{path} is a directory, expected a video file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise BadInputError(
            f"{path} could not be opened as a video ({e}); the file is not a video, or it is "
            "truncated or corrupt: re-encode or re-download it") from e


def _stream_duration(stream, container) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1e6
    return None


def probe_video(path) -> VideoInfo:
    """Read a video file's stream headers (no decoding).

    Args:
        path: a video file (any container/codec FFmpeg reads: mp4, mov, mkv, avi, webm, ...).

    Returns:
        :class:`VideoInfo`.

    Raises:
        BadInputError: the file does not exist, is not a video (no video stream), or cannot be
            opened (truncated / corrupt).
    """
    with _open(path) as c:
        if not c.streams.video:
            raise BadInputError(f"{path} has no video stream (is it an audio file?)")
        v = c.streams.video[0]
        rate = v.average_rate or v.guessed_rate or v.base_rate
        if not rate or float(rate) <= 0:
            raise BadInputError(f"{path}: the video stream has no frame rate; re-encode it")
        duration = _stream_duration(v, c)
        if duration is None or duration <= 0:
            n = v.frames
            duration = n / float(rate) if n else 0.0
        if duration <= 0:
            raise BadInputError(f"{path}: the video stream is empty")
        a_rate = a_dur = None
        if c.streams.audio:
            a = c.streams.audio[0]
            a_rate = int(a.rate or a.codec_context.sample_rate or 0) or None
            a_dur = _stream_duration(a, c)
        return VideoInfo(Path(path), int(v.width), int(v.height), float(rate), float(duration),
                         int(v.frames or 0), a_rate, a_dur, v.codec_context.name)


def has_audio(path) -> bool:
    """True when the file has an audio stream (a video with sound, or an audio file)."""
    with _open(path) as c:
        return bool(c.streams.audio)


def output_frame_count(duration: float, fps: float) -> int:
    """Number of frames a clip of ``duration`` seconds has at ``fps`` (rounded to nearest)."""
    return int(math.floor(duration * fps + 0.5))


def crop_resize(img: np.ndarray, crop: tuple[int, int, int] | None = None,
                size: int | None = None) -> np.ndarray:
    """Cut the square ``crop = (x0, y0, side)`` (source pixels; parts outside the frame
    replicate its border) and resize it to ``size`` x ``size`` (area interpolation when
    shrinking, bicubic when enlarging); None skips either. uint8 [H, W, 3] in and out."""
    import cv2

    if crop is not None:
        x0, y0, side = crop
        h, w = img.shape[:2]
        pad_l, pad_t = max(0, -x0), max(0, -y0)
        pad_r, pad_b = max(0, x0 + side - w), max(0, y0 + side - h)
        if pad_l or pad_t or pad_r or pad_b:
            img = cv2.copyMakeBorder(img, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
            x0, y0 = x0 + pad_l, y0 + pad_t
        img = img[y0:y0 + side, x0:x0 + side]
    if size is not None and img.shape[0] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
        img = cv2.resize(img, (size, size), interpolation=interp)
    return np.ascontiguousarray(img)


def iter_frames(path, fps: float = 25.0, *, crop: tuple[int, int, int] | None = None,
                size: int | None = None, max_frames: int | None = None,
                ) -> Iterator[np.ndarray]:
    """Decode a video, resampled to ``fps`` by nearest timestamps, optionally cropped/resized.

    Output frame k shows the source frame nearest to time k / fps (FFmpeg ``fps`` filter
    semantics: a higher source rate drops frames, a lower one repeats them). The clip's
    length in output frames is :func:`output_frame_count` of the video duration.

    Args:
        path: video file.
        fps: output frame rate (frames per second).
        crop: ``(x0, y0, side)``: a square in source pixels (may extend past the frame; the
            outside is filled by replicating the border). None keeps the full frame.
        size: resize the (cropped) frame to ``size`` x ``size`` pixels (area interpolation
            when shrinking, bicubic when enlarging). None keeps the size.
        max_frames: stop after this many output frames.

    Yields:
        RGB frames, uint8 numpy arrays [H, W, 3] (C-contiguous).

    Raises:
        BadInputError: the file cannot be opened or decoding fails part-way (truncated or
            corrupt file; the message gives the frame where it failed).
    """
    import av

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    info = probe_video(path)
    total = output_frame_count(info.duration, fps)
    if max_frames is not None:
        total = min(total, max_frames)

    k = 0
    prev_img = prev_t = None
    with _open(path) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        start = stream.start_time * tb if stream.start_time is not None else 0.0
        try:
            for frame in c.decode(stream):
                if k >= total:
                    break
                t = float(frame.pts * tb - start) if frame.pts is not None else (
                    prev_t + 1.0 / info.fps if prev_t is not None else 0.0)
                if prev_img is not None:
                    # every output time closer to the previous source frame than to this one
                    mid = 0.5 * (prev_t + t)
                    while k < total and k / fps < mid:
                        yield prev_img
                        k += 1
                prev_img = crop_resize(frame.to_ndarray(format="rgb24"), crop, size)
                prev_t = t
        except av.error.FFmpegError as e:
            raise BadInputError(
                f"{path}: decoding failed at output frame {k} ({e}); the file is truncated "
                "or corrupt: re-encode or re-download it") from e
        while prev_img is not None and k < total:
            yield prev_img
            k += 1
    if k == 0:
        raise BadInputError(f"{path}: no frame could be decoded")
    if k < total:
        raise BadInputError(
            f"{path}: the headers promise {total} frames at {fps:g} fps but only {k} decoded; "
            "the file is truncated: re-encode or re-download it")


def load_audio(path, sr: int = 16000) -> np.ndarray:
    """Decode the first audio stream of any audio or video file to mono float32 at ``sr`` Hz.

    Args:
        path: audio file (wav, mp3, m4a, flac, ...) or a video with an audio track.
        sr: output sample rate in Hz.

    Returns:
        float32 numpy array [N] in [-1, 1] (channels averaged).

    Raises:
        BadInputError: the file cannot be opened, has no audio stream, or holds no samples.
    """
    import av

    chunks = []
    with _open(path) as c:
        if not c.streams.audio:
            raise BadInputError(
                f"{path} has no audio track: pass the speech as a separate file "
                "(`--audio speech.wav`), or use expression-only mode (`--no-audio`)")
        stream = c.streams.audio[0]
        # resample the rate only (planar float, channels kept) and average the channels here:
        # FFmpeg's own stereo->mono downmix scales by 1/sqrt(2) per channel, not 1/2
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=sr)
        try:
            for frame in c.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(0))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().mean(0))
        except av.error.FFmpegError as e:
            raise BadInputError(f"{path}: decoding the audio failed ({e}); the file is "
                                "truncated or corrupt") from e
    wav = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if wav.size == 0:
        raise BadInputError(f"{path}: the audio track is empty")
    return wav


def write_video(path, frames, fps: float = 25.0, *, audio: np.ndarray | None = None,
                sr: int = 16000, crf: int = 18) -> None:
    """Encode RGB frames (and optional mono audio) to an H.264/AAC mp4, atomically.

    The file is written to a temporary name beside ``path`` and renamed when complete, so an
    interrupted write never leaves a partial mp4 under the final name.

    Args:
        path: output .mp4 path.
        frames: iterable of uint8 RGB arrays [H, W, 3] (H and W even, as H.264 4:2:0 needs).
        fps: frame rate.
        audio: float32 mono samples in [-1, 1] at ``sr`` Hz, or None for a silent video.
        crf: H.264 constant rate factor (quality; lower is better).

    Raises:
        ValueError: no frames, frames of different sizes or odd sizes.
    """
    import av
    from fractions import Fraction

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.mp4")
    n = 0
    try:
        with av.open(str(tmp), mode="w") as c:
            vs = None
            for img in frames:
                img = np.ascontiguousarray(img, dtype=np.uint8)
                if vs is None:
                    h, w = img.shape[:2]
                    if h % 2 or w % 2:
                        raise ValueError(f"frame size {w}x{h} must be even for H.264")
                    vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
                    vs.options = {"crf": str(crf), "preset": "medium"}
                    as_ = None
                    if audio is not None:
                        as_ = c.add_stream("aac", rate=sr)
                        as_.layout = "mono"
                elif img.shape[:2] != (vs.height, vs.width):
                    raise ValueError(f"frame {n} has size {img.shape[1]}x{img.shape[0]}, "
                                     f"expected {vs.width}x{vs.height}")
                for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(pkt)
                n += 1
            if vs is None:
                raise ValueError("write_video: no frames to write")
            for pkt in vs.encode(None):
                c.mux(pkt)
            if as_ is not None:
                a = np.ascontiguousarray(np.clip(audio, -1, 1).astype(np.float32)[None])
                af = av.AudioFrame.from_ndarray(a, format="flt", layout="mono")
                af.sample_rate = sr
                # timestamps let the AAC encoder mark its priming samples (1024) as before
                # t = 0; the muxer then writes an edit list that skips them. Without them
                # the sound starts 64 ms late (at 16 kHz) and the stream is longer.
                af.pts, af.time_base = 0, Fraction(1, sr)
                for pkt in as_.encode(af):
                    c.mux(pkt)
                for pkt in as_.encode(None):
                    c.mux(pkt)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
