"""The seven steps of ``jean preprocess`` (the order and what each leaves:
:mod:`jeancore.data.pipeline`, ``docs/dataset.md``), each a :class:`~.stepcache.Step` of the
step cache, and the :class:`StepContext` they run in."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._io import atomic_dir, file_sha256, read_image, save_image, save_npy, save_npz
from ..errors import BadInputError
from . import _workers
from . import audio as audio_mod
from .facecrop import choose_crop, scan_face_boxes
from .landmarks import check_backend, fill_gaps, frame_ranges
from .stepcache import Step, StepCache
from .video import crop_resize, iter_frames, load_audio, output_frame_count, probe_video

__all__ = ["STEPS", "StepContext"]

log = logging.getLogger("jeancore.preprocess")

_FRAME_BUFFER_BYTES = 2 << 30  # decode once when the clip's frames fit in 2 GB, else twice


class StepContext:
    """What a step sees: the dataset folder, the settings, the source video, the earlier
    steps' summaries, progress bars and the worker processes of the per-frame steps.

    Args:
        root: dataset folder; cfg: :class:`~jeancore.data.config.PreprocessConfig`;
        video: the source video; cache: the run's :class:`~.stepcache.StepCache`;
        progress: show progress bars.
    """

    def __init__(self, root: Path, cfg, video: Path, cache: StepCache, progress: bool):
        self.root, self.cfg, self.video, self.progress = root, cfg, video, progress
        self.cache = cache
        self.summaries = cache.summaries
        self._frames = _workers.FramePool(root, cfg.workers)

    def bar(self, it, desc, total=None):
        from tqdm.auto import tqdm

        return tqdm(it, desc=f"{desc:>13}", total=total, unit="frame", leave=False,
                    disable=not self.progress, dynamic_ncols=True, mininterval=0.5)

    @property
    def kept(self) -> range:
        """The decoded frames the dataset keeps (after the landmarks step)."""
        s = self.summaries["landmarks"]
        return range(s["first_frame"], s["first_frame"] + s["n_frames"])

    def map_frames(self, fn, indices, *args, desc: str, per_frame_args=None, chunk: int = 16):
        """:meth:`jeancore.data._workers.FramePool.map` with a progress bar ``desc``."""
        indices = list(indices)
        yield from self._frames.map(fn, indices, *args, bar=self.bar(None, desc, len(indices)),
                                    per_frame_args=per_frame_args, chunk=chunk)

    def close(self) -> None:
        self._frames.close()


def _step_decode(ctx: StepContext) -> dict:
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


def _step_landmarks(ctx: StepContext) -> dict:
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


def _step_tracking(ctx: StepContext) -> dict:
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


def _step_parsing(ctx: StepContext) -> dict:
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


def _step_emotion(ctx: StepContext) -> dict:
    from .emotion import EMOTION_LABELS, emotion_from_crops, face_crop_grey, load_emotion_cnn

    points, found, _ = _load_landmarks(ctx)
    crops = np.load(ctx.root / "face_crops.npy")
    for j in np.flatnonzero(~found):  # interpolated frames: crop from their landmarks
        frame = read_image(_workers.frame_file(ctx.root, "frames", ctx.kept[j]))
        crops[j] = face_crop_grey(frame, points[j])
    feats, probs = emotion_from_crops(crops, model=load_emotion_cnn(device=ctx.cfg.device),
                                      batch_size=64, device=ctx.cfg.device)
    save_npz(ctx.root / "emotion.npz", features=feats, probs=probs,
             labels=np.array(EMOTION_LABELS))
    top = np.bincount(probs.argmax(1), minlength=len(EMOTION_LABELS)) / len(probs)
    return {"dim": int(feats.shape[1]), "labels": list(EMOTION_LABELS),
            "top_class_fraction": {k: float(v) for k, v in zip(EMOTION_LABELS, top)}}


def _step_audio(ctx: StepContext) -> dict:
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


def _av_sync(ctx: StepContext, wav: np.ndarray, sr: int) -> dict:
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


def _step_contact_sheet(ctx: StepContext) -> dict:
    from .contact_sheet import make_contact_sheet

    make_contact_sheet(ctx.root, ctx.root / "contact_sheet.png",
                       first_frame=ctx.kept.start, fps=ctx.cfg.fps)
    return {"path": "contact_sheet.png"}


def _precomputed_features_key(cfg) -> dict:
    if cfg.audio_features in ("logmel", "mfcc"):
        return {}
    return {"features_sha256": file_sha256(cfg.audio_features)}


#: The steps by name, in order. ``config``: the settings each depends on (besides the
#: upstream steps and the source files); ``outputs``: the files it leaves.
STEPS: dict[str, Step] = {s.name: s for s in (
    Step("decode", _step_decode,
         config=("fps", "size", "crop_scale", "face_height", "max_seconds", "no_audio"),
         outputs=("frames",), audio_outputs=("audio.wav",)),
    Step("landmarks", _step_landmarks, config=("landmarks", "max_gap", "missing_face",
                                               "min_frames"),
         upstream=("decode",), outputs=("landmarks.npz", "face_crops.npy")),
    Step("tracking", _step_tracking, upstream=("landmarks",), outputs=("tracking.npz",)),
    Step("parsing", _step_parsing, config=("background_frames",), upstream=("landmarks",),
         outputs=("parsing", "head", "background.png")),
    Step("emotion", _step_emotion, upstream=("landmarks",), outputs=("emotion.npz",)),
    Step("audio", _step_audio, config=("audio_features", "audio_feature_rate", "n_mels",
                                       "audio_window", "av_sync"),
         upstream=("landmarks",), audio_outputs=("audio_features.npy",),
         extra_key=_precomputed_features_key),
    Step("contact_sheet", _step_contact_sheet, upstream=("tracking", "parsing", "emotion"),
         outputs=("contact_sheet.png",)),
)}
