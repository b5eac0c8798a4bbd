"""``jean preprocess``: turn a talking-head video into a training dataset, offline.

Steps (each cached in ``DIR/.steps/<step>.json`` with a key of its inputs and settings, so an
interrupted run resumes at the first step that did not finish; every file is written
atomically):

1. ``decode``: read the audio (the video's own track, or ``--audio``), resample the video to
   ``fps``, find the face over the clip and choose ONE square crop for the whole clip (the NeRF
   needs a fixed camera), crop, resize to ``size``; write ``frames/`` and ``audio.wav``.
2. ``landmarks``: 68 iBUG points per frame (dlib by default); short gaps are interpolated,
   frames without a face are handled as documented in :class:`PreprocessConfig`.
3. ``tracking``: 3DMM fit (identity, expression, pose, focal) -> camera-to-head transforms,
   intrinsics, near/far (:func:`jeancore.data.tracking.fit_3dmm`).
4. ``parsing``: person mask (mediapipe), head/torso split at the jaw line, background image,
   head images (head over the background: the NeRF's supervision).
5. ``emotion``: 128-d emotion features and 7 class probabilities per frame.
6. ``audio``: speech features windowed per frame, [T, 16, D].
7. ``contact_sheet``: ``contact_sheet.png``, what a user looks at to trust the data.

Then ``meta.json`` is written last: a directory without it is not a finished dataset.
The layout is documented in ``docs/dataset.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from .._io import atomic_dir, file_sha256, read_image, save_image, save_json, save_npy, save_npz
from ..errors import BadInputError, ConfigError
from . import _workers
from . import audio as audio_mod
from .landmarks import check_backend, fill_gaps, frame_ranges
from .video import crop_resize, iter_frames, load_audio, output_frame_count, probe_video

__all__ = ["PreprocessConfig", "PreprocessResult", "preprocess", "choose_crop",
           "FORMAT_VERSION", "SOURCE_FILE"]

log = logging.getLogger("jeancore.preprocess")

FORMAT_VERSION = 1
SOURCE_FILE = ".jeancore-source.json"   # identifies the video a directory belongs to
_FRAME_BUFFER_BYTES = 2 << 30  # decode once when the clip's frames fit in 2 GB, else twice
STEPS = ("decode", "landmarks", "tracking", "parsing", "emotion", "audio", "contact_sheet")


@dataclass
class PreprocessConfig:
    """Settings of :func:`preprocess` (the CLI flags of ``jean preprocess``).

    Attributes:
        fps: output frame rate (AD-NeRF / JEAN: 25).
        size: output frame size in pixels (square).
        audio: a separate speech file for a video without (or with unwanted) sound.
        no_audio: expression-only mode: no audio features (e.g. MEAD clips without sound).
        landmarks: landmark backend, ``"dlib"`` (offline default) or ``"face-alignment"``.
        audio_features: ``"logmel"`` (default), ``"mfcc"``, or a path to a ``.npy`` of
            precomputed features [S, D] (DeepSpeech, wav2vec 2.0, HuBERT...) at
            ``audio_feature_rate`` steps per second.
        audio_feature_rate: step rate of precomputed features.
        n_mels: mel bands of the log-mel features (their width D).
        audio_window: feature steps per video frame window (AD-NeRF: 16).
        av_sync: audio-video offset correction of the speech windows: ``"auto"`` (default:
            estimated from the lips and the speech envelope, applied when significant and at
            least one frame, :func:`jeancore.data.sync.estimate_av_offset`), ``"off"``, or a
            number of seconds within +-2 (positive: the speech comes late). Recorded in
            meta.json (``audio.av_sync``); ``audio.wav`` itself is never shifted.
        crop_scale: crop side = ``crop_scale`` x the face box size (dlib box, 90th percentile
            over the clip); clamped to the frame.
        face_height: where the face box centre sits in the crop, as a fraction of its height.
        max_gap: runs of at most this many frames without a face are interpolated.
        missing_face: what to do with longer runs of frames without a face: ``"trim"``
            (default) keeps the longest stretch of the clip in which every gap is short and
            drops the rest (the dropped frames are reported and listed in meta.json), as long as
            it has at least ``min_frames`` frames; ``"error"`` stops with the list of frames.
        min_frames: fewest frames a dataset may have.
        max_seconds: use only the first seconds of the clip (quick looks, tests).
        val_fraction: the last fraction of frames forms the validation split (peers: 10%).
        background_frames: frames sampled (evenly) for the background median.
        device: torch device for the 3DMM fit and the emotion CNN.
        workers: processes for the per-frame steps (landmarks, parsing); 0 = one per CPU core
            (at most 8), 1 = none (everything in this process).
    """

    fps: float = 25.0
    size: int = 450
    audio: str | None = None
    no_audio: bool = False
    landmarks: str = "dlib"
    audio_features: str = "logmel"
    audio_feature_rate: float = 50.0
    n_mels: int = 80
    audio_window: int = 16
    av_sync: str = "auto"
    crop_scale: float = 2.6
    face_height: float = 0.45
    max_gap: int = 5
    missing_face: str = "trim"
    min_frames: int = 25
    max_seconds: float | None = None
    val_fraction: float = 0.1
    background_frames: int = 60
    device: str = "cpu"
    workers: int = 0

    def validate(self) -> None:
        """Raises ConfigError (a ValueError) for settings out of range."""
        if self.fps <= 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        if not 32 <= self.size <= 4096 or self.size % 2:
            raise ConfigError(f"size must be an even number of pixels in [32, 4096], got {self.size}")
        if self.missing_face not in ("trim", "error"):
            raise ConfigError(f"missing_face must be 'trim' or 'error', got {self.missing_face!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.crop_scale <= 0 or not 0 < self.face_height < 1:
            raise ConfigError("crop_scale must be positive and face_height in (0, 1)")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.no_audio and self.audio:
            raise ConfigError("--audio and --no-audio contradict each other: choose one")
        self.av_sync_offset()

    def av_sync_offset(self) -> float | None:
        """The fixed offset (seconds) that ``av_sync`` asks for; None for ``"auto"``."""
        v = str(self.av_sync).strip().lower()
        if v == "auto":
            return None
        if v == "off":
            return 0.0
        try:
            x = float(v)
        except ValueError:
            x = float("nan")
        if not np.isfinite(x) or abs(x) > 2.0:
            raise ConfigError(f"av_sync must be 'auto', 'off' or an offset in seconds within "
                              f"+-2, got {self.av_sync!r}")
        return x


@dataclass
class PreprocessResult:
    """What :func:`preprocess` returns: the dataset folder, its meta.json content, and the
    summary printed at the end (per-step seconds included)."""

    root: Path
    meta: dict
    summary: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# crop
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
    decode step chooses its crop from them.

    Args:
        frames: iterable of the clip's uint8 RGB frames (n of them).
        n: number of frames; fps: their rate.
        keep: a list to append every frame to (to reuse the decoded frames), or None.

    Returns:
        (boxes: list of (x0, y0, x1, y1), frames examined, step between them).
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
# the step runner
# ------------------------------------------------------------------------------------------
class _Context:
    def __init__(self, root: Path, cfg: PreprocessConfig, video: Path, progress: bool):
        self.root, self.cfg, self.video, self.progress = root, cfg, video, progress
        self.steps_dir = root / ".steps"
        self.keys: dict[str, str] = {}
        self.summaries: dict[str, dict] = {}
        self.seconds: dict[str, float] = {}
        self.source: dict = {}
        self._pool = None

    def bar(self, it, desc, total=None):
        from tqdm.auto import tqdm

        return tqdm(it, desc=f"{desc:>13}", total=total, unit="frame", leave=False,
                    disable=not self.progress, dynamic_ncols=True, mininterval=0.5)

    @property
    def kept(self) -> range:
        s = self.summaries["landmarks"]
        return range(s["first_frame"], s["first_frame"] + s["n_frames"])

    def map_frames(self, fn, indices, *args, desc: str, per_frame_args=None, chunk: int = 16):
        """Run ``fn(root, chunk_indices, [per_frame_args chunk,] *args)`` over chunks of
        ``indices`` in the worker processes (or here with one worker); yields the per-frame
        results in order."""
        indices = list(indices)
        chunks = [indices[s:s + chunk] for s in range(0, len(indices), chunk)]

        def call_args(c, s):
            extra = () if per_frame_args is None else (per_frame_args[s:s + len(c)],)
            return (str(self.root), c, *extra, *args)

        bar = self.bar(None, desc, len(indices))
        try:
            pool = self.pool(len(indices))
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

    def pool(self, n_frames: int):
        import os

        workers = self.cfg.workers or min(os.cpu_count() or 1, 8)
        if workers <= 1 or n_frames < 48:
            return None
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


# config fields each step depends on (besides the upstream steps and the source files)
_STEP_CONFIG = {
    "decode": ("fps", "size", "crop_scale", "face_height", "max_seconds", "no_audio"),
    "landmarks": ("landmarks", "max_gap", "missing_face", "min_frames"),
    "tracking": (),
    "parsing": ("background_frames",),
    "emotion": (),
    "audio": ("audio_features", "audio_feature_rate", "n_mels", "audio_window", "av_sync"),
    "contact_sheet": (),
}
_STEP_UPSTREAM = {
    "decode": (), "landmarks": ("decode",), "tracking": ("landmarks",),
    "parsing": ("landmarks",), "emotion": ("landmarks",), "audio": ("landmarks",),
    "contact_sheet": ("tracking", "parsing", "emotion"),
}


# files each step leaves (a step whose outputs were deleted runs again)
_STEP_OUTPUTS = {
    "decode": ("frames",), "landmarks": ("landmarks.npz", "face_crops.npy"),
    "tracking": ("tracking.npz",),
    "parsing": ("parsing", "head", "background.png"), "emotion": ("emotion.npz",),
    "audio": (), "contact_sheet": ("contact_sheet.png",),
}


def _step_key(ctx: _Context, step: str) -> str:
    payload = {
        "step": step, "format": FORMAT_VERSION, "jeancore": __version__,
        "source": ctx.source,
        "config": {k: getattr(ctx.cfg, k) for k in _STEP_CONFIG[step]},
        "upstream": {u: ctx.keys[u] for u in _STEP_UPSTREAM[step]},
    }
    if step == "audio" and ctx.cfg.audio_features not in ("logmel", "mfcc"):
        payload["features_sha256"] = file_sha256(ctx.cfg.audio_features)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _run_step(ctx: _Context, step: str, fn) -> None:
    key = _step_key(ctx, step)
    ctx.keys[step] = key
    marker = ctx.steps_dir / f"{step}.json"
    if marker.is_file():
        try:
            done = json.loads(marker.read_text())
        except json.JSONDecodeError:
            done = {}
        outputs = list(_STEP_OUTPUTS[step])
        if step in ("decode", "audio") and not ctx.cfg.no_audio:
            outputs.append("audio.wav" if step == "decode" else "audio_features.npy")
        if done.get("key") == key and all((ctx.root / o).exists() for o in outputs):
            ctx.summaries[step] = done["summary"]
            ctx.seconds[step] = 0.0
            log.info("%s: cached", step)
            if ctx.progress:
                print(f"  {step:<14} cached", file=sys.stderr)
            return
    t0 = time.perf_counter()
    summary = fn(ctx)
    dt = time.perf_counter() - t0
    ctx.summaries[step] = summary
    ctx.seconds[step] = dt
    save_json(marker, {"key": key, "summary": summary, "seconds": dt})
    if ctx.progress:
        print(f"  {step:<14} {dt:6.2f} s", file=sys.stderr)


# ------------------------------------------------------------------------------------------
# steps
# ------------------------------------------------------------------------------------------
def _step_decode(ctx: _Context) -> dict:
    import soundfile as sf

    cfg = ctx.cfg
    info = probe_video(ctx.video)
    duration = info.duration
    wav = None
    if not cfg.no_audio:
        wav = load_audio(cfg.audio or ctx.video, audio_mod.SAMPLE_RATE)
        audio_dur = len(wav) / audio_mod.SAMPLE_RATE
        if audio_dur < duration - 1.0 / cfg.fps:
            log.warning("the audio (%.2f s) is shorter than the video (%.2f s): using the "
                        "first %.2f s", audio_dur, duration, audio_dur)
        duration = min(duration, audio_dur)
    if cfg.max_seconds is not None:
        duration = min(duration, cfg.max_seconds)
    n = output_frame_count(duration, cfg.fps)
    if n < 1:
        raise BadInputError(f"{ctx.video}: shorter than one frame at {cfg.fps:g} fps")

    # find the face over the clip; keep the decoded frames for the crop pass when they fit
    # in the memory budget
    budget = _FRAME_BUFFER_BYTES // max(1, info.width * info.height * 3)
    buffer: list | None = [] if n <= budget else None
    boxes, looked, step = scan_face_boxes(
        ctx.bar(iter_frames(ctx.video, cfg.fps, max_frames=n), "find face", n), n, cfg.fps,
        keep=buffer)
    if not boxes:
        raise BadInputError(
            f"{ctx.video}: no face found in any of the {looked} frames examined (every "
            f"{step / cfg.fps:.2f} s over {n / cfg.fps:.2f} s). jeancore needs a video of one "
            "person facing the camera.")
    x0, y0, side = choose_crop(np.array(boxes), info.width, info.height, cfg.crop_scale,
                               cfg.face_height)
    if side < cfg.size:
        log.warning("the face crop is %d px, smaller than --size %d: frames are upscaled",
                    side, cfg.size)
    centres = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes])
    motion = float(np.linalg.norm(centres.std(0)) / side)

    if buffer is not None:
        frames = (crop_resize(f, (x0, y0, side), cfg.size) for f in buffer)
    else:
        frames = iter_frames(ctx.video, cfg.fps, crop=(x0, y0, side), size=cfg.size,
                             max_frames=n)
    from concurrent.futures import ThreadPoolExecutor

    with atomic_dir(ctx.root / "frames") as tmp, ThreadPoolExecutor(2) as writer:
        k = 0
        pending = []
        for frame in ctx.bar(frames, "decode", n):  # OpenCV encodes without the GIL
            pending.append(writer.submit(save_image, tmp / f"{k:06d}.jpg", frame))
            k += 1
            if len(pending) > 32:
                pending.pop(0).result()
        for f in pending:
            f.result()
    del buffer
    if wav is not None:
        wav = wav[: int(round(n / cfg.fps * audio_mod.SAMPLE_RATE))]
        tmp = ctx.root / ".audio.tmp.wav"
        sf.write(tmp, wav, audio_mod.SAMPLE_RATE, subtype="FLOAT")
        tmp.replace(ctx.root / "audio.wav")
    else:
        (ctx.root / "audio.wav").unlink(missing_ok=True)
    return {"n_decoded": k, "crop": [x0, y0, side], "face_motion": motion,
            "faces_in_scan": len(boxes), "frames_scanned": looked,
            "source": {"width": info.width, "height": info.height, "fps": info.fps,
                       "duration": info.duration, "codec": info.codec},
            "duration": k / cfg.fps, "has_audio": wav is not None}


def _step_landmarks(ctx: _Context) -> dict:
    cfg = ctx.cfg
    n = ctx.summaries["decode"]["n_decoded"]
    check_backend(cfg.landmarks)  # fail here, clearly, if the backend cannot load
    pts, found, crops = [], [], []
    for p, crop in ctx.map_frames(_workers.landmarks_chunk, range(n), cfg.landmarks,
                                  desc="landmarks"):
        found.append(p is not None)
        pts.append(p if p is not None else np.full((68, 2), np.nan, np.float32))
        crops.append(crop)
    track = fill_gaps(np.stack(pts), np.array(found), max_gap=cfg.max_gap)
    valid = track.valid
    if not track.found.any():
        raise BadInputError(f"{ctx.video}: no face found in any of the {n} frames")
    missing = ~valid
    first, last = 0, n
    if missing.any():
        where = frame_ranges(missing, cfg.fps)
        if cfg.missing_face == "error":
            raise BadInputError(
                f"{ctx.video}: {int(missing.sum())} of {n} frames have no face (gaps longer "
                f"than {cfg.max_gap} frames): frames {where}. Cut the video to the part with "
                "the face, or use --missing-face trim.")
        # longest run of valid frames
        best, start = (0, 0), None
        for i, v in enumerate(np.append(valid, False)):
            if v and start is None:
                start = i
            elif not v and start is not None:
                if i - start > best[1] - best[0]:
                    best = (start, i)
                start = None
        first, last = best
        if last - first < cfg.min_frames:
            raise BadInputError(
                f"{ctx.video}: {int(missing.sum())} of {n} frames have no face (frames "
                f"{where}); the longest stretch with a face has {last - first} frames, fewer "
                f"than --min-frames {cfg.min_frames}. jeancore needs a video in which the "
                "face stays in view.")
        log.warning("frames without a face: %s; keeping frames %d-%d (%d of %d)", where,
                    first, last - 1, last - first, n)
    save_npz(ctx.root / "landmarks.npz", points=track.points[first:last],
             found=track.found[first:last], interpolated=track.interpolated[first:last])
    # the emotion CNN's face crops, cut while the frames were in memory (interpolated frames:
    # zeros here, cut by the emotion step from their interpolated landmarks)
    blank = np.zeros((64, 64), np.uint8)
    save_npy(ctx.root / "face_crops.npy",
             np.stack([c if c is not None else blank for c in crops[first:last]]))
    return {"first_frame": first, "n_frames": last - first, "n_decoded": n,
            "found": int(track.found[first:last].sum()),
            "interpolated": int(track.interpolated[first:last].sum()),
            "interpolated_frames": frame_ranges(track.interpolated[first:last]),
            "no_face_frames": frame_ranges(~track.found, cfg.fps),
            "dropped": n - (last - first), "backend": cfg.landmarks}


def _load_landmarks(ctx):
    with np.load(ctx.root / "landmarks.npz") as z:
        return z["points"], z["found"], z["interpolated"]


def _step_tracking(ctx: _Context) -> dict:
    from .tracking import fit_3dmm

    points, found, interp = _load_landmarks(ctx)
    size = ctx.cfg.size
    tr = fit_3dmm(points, (size, size), valid=found | interp, device=ctx.cfg.device,
                  progress=ctx.progress)
    tr.save(ctx.root / "tracking.npz")
    err = tr.reprojection_error[np.isfinite(tr.reprojection_error)]
    return {"focal": tr.focal, "cx": tr.cx, "cy": tr.cy, "near": tr.near, "far": tr.far,
            "reprojection_error_px_mean": float(err.mean()),
            "reprojection_error_px_max": float(err.max())}


def _step_parsing(ctx: _Context) -> dict:
    from .parsing import BackgroundAccumulator, check_segmenter

    check_segmenter()  # fail here, clearly, if mediapipe is missing
    points, _, _ = _load_landmarks(ctx)
    kept = ctx.kept
    # background first, from evenly sampled frames, so that one pass over all frames can
    # then write the label maps and the head images
    sample = (kept.start + np.linspace(0, len(kept) - 1, min(len(kept),
              ctx.cfg.background_frames)).round().astype(int)).tolist()
    bg = BackgroundAccumulator()
    for frame, person in ctx.map_frames(_workers.person_chunk, sorted(set(sample)),
                                        desc="background", chunk=8):
        bg.add(frame, person)
    background, seen = bg.result()
    save_image(ctx.root / "background.png", background)
    save_image(ctx.root / "background_seen.png", seen.astype(np.uint8) * 255)
    with atomic_dir(ctx.root / "parsing") as p_tmp, atomic_dir(ctx.root / "head") as h_tmp:
        head_frac = np.array(list(ctx.map_frames(
            _workers.parsing_chunk, kept, str(p_tmp), str(h_tmp), background,
            per_frame_args=points, desc="parsing")), np.float32)
    return {"background_seen_fraction": float(seen.mean()),
            "head_fraction_mean": float(head_frac.mean()),
            "frames_without_head": int((head_frac == 0).sum())}


def _step_emotion(ctx: _Context) -> dict:
    from .emotion import EMOTION_LABELS, emotion_from_crops, face_crop_grey, load_emotion_cnn

    points, found, _ = _load_landmarks(ctx)
    crops = np.load(ctx.root / "face_crops.npy")
    for j in np.flatnonzero(~found):  # interpolated frames: crop from their landmarks
        crops[j] = face_crop_grey(read_image(_workers.frame_file(ctx.root, "frames", ctx.kept[j])), points[j])
    feats, probs = emotion_from_crops(crops, model=load_emotion_cnn(device=ctx.cfg.device),
                                      batch_size=64, device=ctx.cfg.device)
    save_npz(ctx.root / "emotion.npz", features=feats, probs=probs,
             labels=np.array(EMOTION_LABELS))
    top = np.bincount(probs.argmax(1), minlength=len(EMOTION_LABELS)) / len(probs)
    return {"dim": int(feats.shape[1]), "labels": list(EMOTION_LABELS),
            "top_class_fraction": {k: float(v) for k, v in zip(EMOTION_LABELS, top)}}


def _step_audio(ctx: _Context) -> dict:
    import soundfile as sf

    cfg = ctx.cfg
    if cfg.no_audio:
        (ctx.root / "audio_features.npy").unlink(missing_ok=True)
        return {"features": None}
    wav, sr = sf.read(ctx.root / "audio.wav", dtype="float32")
    if cfg.audio_features in ("logmel", "mfcc"):
        extractor = audio_mod.make_feature_extractor(cfg.audio_features, fps=cfg.fps,
                                                     n_mels=cfg.n_mels)
    else:
        extractor = audio_mod.PrecomputedFeatures(path=cfg.audio_features,
                                                  rate=cfg.audio_feature_rate)
    feats = extractor(wav, sr)
    n = ctx.summaries["landmarks"]["n_decoded"]
    kept = ctx.kept
    sync = _av_sync(ctx, wav, sr)
    windows = audio_mod.window_features(feats, n, cfg.fps, extractor.rate, cfg.audio_window,
                                        offset_s=sync["offset_s"])
    save_npy(ctx.root / "audio_features.npy", windows[kept.start:kept.stop])
    return {"features": extractor.config, "window": cfg.audio_window,
            "shape": [len(kept), cfg.audio_window, extractor.dim], "av_sync": sync}


def _av_sync(ctx: _Context, wav: np.ndarray, sr: int) -> dict:
    """The audio-video offset correction of the audio step (``PreprocessConfig.av_sync``)."""
    from .sync import estimate_av_offset

    fixed = ctx.cfg.av_sync_offset()
    if fixed is not None:
        return {"mode": "off" if fixed == 0.0 else "manual", "offset_s": fixed,
                "applied": fixed != 0.0}
    points, _, _ = _load_landmarks(ctx)
    try:
        est = estimate_av_offset(points, wav, ctx.cfg.fps, sr=sr, first_frame=ctx.kept.start)
    except BadInputError as e:
        log.info("audio-video offset not estimated: %s", e)
        return {"mode": "auto", "offset_s": 0.0, "applied": False, "reason": str(e)}
    out = {"mode": "auto", **est.as_dict()}
    if est.applied:
        msg = (f"the speech comes {abs(est.offset_s):.2f} s "
               f"{'late' if est.offset_s > 0 else 'early'} against the lips "
               f"(significance z={est.significance:.1f}); corrected in the speech windows "
               f"(--av-sync off keeps the clip's timing)")
        log.warning("audio-video offset: %s", msg)
    return out


def _step_contact_sheet(ctx: _Context) -> dict:
    from .contact_sheet import make_contact_sheet

    make_contact_sheet(ctx.root, ctx.root / "contact_sheet.png",
                       first_frame=ctx.kept.start, fps=ctx.cfg.fps)
    return {"path": "contact_sheet.png"}


_STEP_FUNCS = {
    "decode": _step_decode, "landmarks": _step_landmarks, "tracking": _step_tracking,
    "parsing": _step_parsing, "emotion": _step_emotion, "audio": _step_audio,
    "contact_sheet": _step_contact_sheet,
}


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------
def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version(), "jeancore": __version__}
    for pkg in ("torch", "numpy", "av", "librosa", "dlib-bin", "mediapipe", "opencv-python-headless"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _check_output_dir(root: Path, source: dict, overwrite: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise BadInputError(f"--out {root} exists and is not a directory")
    entries = [p for p in root.iterdir()]
    if not entries:
        return
    marker = root / SOURCE_FILE
    ours = marker.is_file() or (root / "meta.json").is_file()
    if not ours:
        raise BadInputError(
            f"--out {root} is a non-empty directory that is not a jeancore dataset; choose a "
            "new or empty directory (jeancore never deletes files it did not make)")
    try:
        prev = json.loads(marker.read_text()) if marker.is_file() else {}
    except json.JSONDecodeError:
        prev = {}
    same = (prev.get("video_sha256") == source["video_sha256"]
            and prev.get("audio_sha256") == source["audio_sha256"])
    if same:
        return  # resume / update
    if not overwrite:
        raise BadInputError(
            f"--out {root} holds a dataset of another video ({prev.get('video', '?')}); "
            "pass --overwrite to replace it, or choose another directory")
    for p in entries:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def preprocess(video, out, config: PreprocessConfig | None = None, *, overwrite: bool = False,
               progress: bool = True) -> PreprocessResult:
    """Preprocess a talking-head video into a dataset directory (see the module docstring).

    Args:
        video: the video file (any format FFmpeg reads).
        out: the dataset directory to create (or to resume: a directory from an interrupted
            run on the same video continues where it stopped).
        config: :class:`PreprocessConfig` (defaults: 25 fps, 450 px, dlib, log-mel).
        overwrite: replace a dataset of another video in ``out``.
        progress: progress bars and the per-step lines on stderr.

    Returns:
        :class:`PreprocessResult`.

    Raises:
        BadInputError: the video is unreadable or truncated, has no face, no audio (without
            ``audio``/``no_audio``), too few frames with a face; ``out`` holds something else.
            If this call created ``out``, it is removed again (nothing half-written stays).
        ConfigError: bad settings.
    """
    cfg = config or PreprocessConfig()
    cfg.validate()
    video = Path(video)
    root = Path(out)
    info = probe_video(video)  # not a video / truncated -> BadInputError before anything
    if cfg.audio:
        if not Path(cfg.audio).is_file():
            raise BadInputError(f"--audio {cfg.audio}: no such file")
        load_audio(cfg.audio)  # readable, has samples
    elif not cfg.no_audio and not info.has_audio:
        raise BadInputError(
            f"{video} has no audio track. Pass the speech as a separate file "
            "(--audio speech.wav), or preprocess for expression only (--no-audio).")
    source = {
        "video": str(video.resolve()), "video_sha256": file_sha256(video),
        "audio": str(Path(cfg.audio).resolve()) if cfg.audio else None,
        "audio_sha256": file_sha256(cfg.audio) if cfg.audio else None,
    }
    _check_output_dir(root, source, overwrite)
    created = not root.exists() or not any(root.iterdir())
    root.mkdir(parents=True, exist_ok=True)
    ctx = _Context(root, cfg, video, progress)
    ctx.source = source
    t_start = time.perf_counter()
    try:
        save_json(root / SOURCE_FILE, source)
        meta_path = root / "meta.json"
        if meta_path.exists():
            meta_path.unlink()  # re-written when every step is done
        _run_step(ctx, "decode", _STEP_FUNCS["decode"])
        _run_step(ctx, "landmarks", _STEP_FUNCS["landmarks"])
        # tracking, emotion and audio need only the landmarks: they run in a thread here
        # while the parsing step's worker processes work (2 cores kept busy)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as side:
            def side_steps():
                for step in ("tracking", "emotion", "audio"):
                    _run_step(ctx, step, _STEP_FUNCS[step])

            side_job = side.submit(side_steps)
            try:
                _run_step(ctx, "parsing", _STEP_FUNCS["parsing"])
            finally:
                side_job.result()
        _run_step(ctx, "contact_sheet", _STEP_FUNCS["contact_sheet"])
    except BadInputError:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        ctx.close()
    total = time.perf_counter() - t_start
    meta = _write_meta(ctx, total)
    summary = _summary(ctx, meta, total)
    return PreprocessResult(root, meta, summary)


def _write_meta(ctx: _Context, total: float) -> dict:
    cfg, s = ctx.cfg, ctx.summaries
    lm, tr = s["landmarks"], s["tracking"]
    n = lm["n_frames"]
    n_val = int(round(n * cfg.val_fraction))
    meta = {
        "format": "jeancore-dataset", "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {**ctx.source, **s["decode"]["source"]},
        "config": asdict(cfg),
        "fps": cfg.fps, "size": cfg.size, "n_frames": n,
        "first_frame": lm["first_frame"], "n_decoded": lm["n_decoded"],
        "duration": n / cfg.fps,
        "crop": s["decode"]["crop"], "face_motion": s["decode"]["face_motion"],
        "has_audio": bool(s["decode"]["has_audio"]),
        "audio": s["audio"] if s["audio"]["features"] else None,
        "landmarks": {k: lm[k] for k in ("backend", "found", "interpolated",
                                         "interpolated_frames", "no_face_frames", "dropped")},
        "tracking": tr,
        "parsing": s["parsing"],
        "emotion": s["emotion"],
        "split": {"val_fraction": cfg.val_fraction, "n_train": n - n_val, "n_val": n_val,
                  "val_start": n - n_val},
        "versions": _versions(),
        "seconds": {k: round(v, 3) for k, v in ctx.seconds.items()},
        "seconds_total": round(total, 3),
    }
    save_json(ctx.root / "meta.json", meta)
    return meta


def _summary(ctx: _Context, meta: dict, total: float) -> dict:
    lm, tr = meta["landmarks"], meta["tracking"]
    return {
        "dataset": str(ctx.root), "frames": meta["n_frames"], "fps": meta["fps"],
        "size": meta["size"], "duration_s": round(meta["duration"], 2),
        "faces_found": lm["found"], "interpolated": lm["interpolated"],
        "dropped": lm["dropped"], "no_face_frames": lm["no_face_frames"],
        "reprojection_error_px": round(tr["reprojection_error_px_mean"], 3),
        "reprojection_error_px_max": round(tr["reprojection_error_px_max"], 3),
        "audio_features": (meta["audio"] or {}).get("shape"),
        "av_sync": (meta["audio"] or {}).get("av_sync"),
        "seconds": meta["seconds"], "seconds_total": round(total, 2),
        "realtime_factor": round(meta["duration"] / total, 2) if total > 0 else None,
    }
