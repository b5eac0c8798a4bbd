"""``jean preprocess``: turn a talking-head video into a training dataset, offline.

Steps (:mod:`jeancore.data.steps`; each cached in ``DIR/.steps/<step>.json`` with a key of its
inputs and settings, :mod:`jeancore.data.stepcache`, so an interrupted run resumes at the first
step that did not finish; every file is written atomically):

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

Then ``meta.json`` is written last (:mod:`jeancore.data.meta`): a directory without it is not a
finished dataset. The layout is documented in ``docs/dataset.md``; the settings are
:class:`~jeancore.data.config.PreprocessConfig`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .. import __version__
from .._io import file_sha256, save_json
from ..errors import BadInputError
from .config import PreprocessConfig, PreprocessResult
from .meta import FORMAT_VERSION, SOURCE_FILE, write_meta
from .stepcache import StepCache
from .steps import STEPS, StepContext
from .video import load_audio, probe_video

__all__ = ["PreprocessConfig", "PreprocessResult", "preprocess", "FORMAT_VERSION", "SOURCE_FILE",
           "STEPS"]


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
    cache = StepCache(root, cfg, {"format": FORMAT_VERSION, "jeancore": __version__,
                                  "source": source}, progress)
    ctx = StepContext(root, cfg, video, cache, progress)
    t_start = time.perf_counter()
    try:
        save_json(root / SOURCE_FILE, source)
        meta_path = root / "meta.json"
        if meta_path.exists():
            meta_path.unlink()  # re-written when every step is done
        cache.run(STEPS["decode"], ctx)
        cache.run(STEPS["landmarks"], ctx)
        # tracking, emotion and audio need only the landmarks: they run in a thread here
        # while the parsing step's worker processes work (2 cores kept busy)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as side:
            def side_steps():
                for step in ("tracking", "emotion", "audio"):
                    cache.run(STEPS[step], ctx)

            side_job = side.submit(side_steps)
            try:
                cache.run(STEPS["parsing"], ctx)
            finally:
                side_job.result()
        cache.run(STEPS["contact_sheet"], ctx)
    except BadInputError:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        ctx.close()
    total = time.perf_counter() - t_start
    meta = write_meta(root, cfg, source, cache.summaries, cache.seconds, total)
    summary = _summary(root, meta, total)
    return PreprocessResult(root, meta, summary)


def _summary(root: Path, meta: dict, total: float) -> dict:
    lm, tr = meta["landmarks"], meta["tracking"]
    return {
        "dataset": str(root), "frames": meta["n_frames"], "fps": meta["fps"],
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
