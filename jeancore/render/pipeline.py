"""Render a trained JEAN model from three driving sources to an mp4 with sound (JEAN Sec. 3,
4.1; suppl. 8.5): speech (lip sync), an expression video (facial expression) and a head-pose
source, plus a frame grid (expression source | output) for a quick look.

The audio's length sets the output length (25 fps); the expression and pose sequences are
brought to that length with :func:`jeancore.render.sources.fit_length` (ping-pong by default).
Frames are rendered one at a time in bounded ray chunks and streamed into the encoder, so the
memory does not grow with the clip; the mp4 is written atomically (an interrupted or failed
render leaves no partial file under the output name).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from .._config import with_settings
from ..errors import BadInputError, ConfigError

__all__ = ["BACKGROUNDS", "COMPOSITES", "RenderConfig", "RenderResult", "grid_indices",
           "render", "render_grid", "resolve_dataset", "torso_frames"]

log = logging.getLogger("jeancore.render")

FPS = 25.0

BACKGROUNDS = ("white", "dataset")
"""The named values of :attr:`RenderConfig.background` (else: an image file)."""

COMPOSITES = ("full", "head")
"""The values of :attr:`RenderConfig.composite`."""


@dataclasses.dataclass
class RenderConfig:
    """Settings of :func:`render` (``jean render``)."""

    composite: str = "full"
    """'full': the rendered head over the torso of the dataset frame its pose comes from
    (head region removed, neck blended) over the dataset background, at the dataset's
    resolution (RAD-NeRF / ER-NeRF); 'head': the head alone over ``background`` (JEAN)."""
    background: str = "white"
    """Behind the head with ``composite='head'``: 'white' (JEAN's inference setting),
    'dataset' (the training background) or an image file (resized to the output)."""
    paste_back: bool | None = None
    """Also write ``<stem>_pasted.mp4``: the output blended back into the source video at its
    size and frame rate (SyncTalk's --portrait). None: when the dataset records its source
    video and crop and ``composite='full'``."""
    source_video: str | None = None
    """The dataset's source video, when it moved from where meta.json says (paste-back)."""
    size: int | None = None
    """Output side in pixels (even, for H.264). None: the dataset's with composite='full' (the
    head, rendered at the training resolution, is resized to it), the training resolution
    with 'head'."""
    fit: str = "pingpong"
    """How shorter expression / pose sequences are extended: 'pingpong', 'loop' or 'hold'
    (longer ones are cut)."""
    max_seconds: float | None = None
    """Use only the first seconds of the audio (None: all of it)."""
    device: str = "auto"
    """Torch device: 'auto' (CUDA when available), 'cpu', 'cuda', ..."""
    grid: bool = True
    """Write the frame grid (expression source | output) beside the video."""
    grid_rows: int = 6
    """Rows of the frame grid."""
    chunk_rays: int = 16384
    """Rays per network pass (bounds memory)."""


@dataclasses.dataclass
class RenderResult:
    """What :func:`render` made.

    Attributes:
        video: the mp4 (H.264 + AAC mono 16 kHz).
        grid: the frame-grid PNG (None when not asked for): expression source | output
            (| the recorded frame of the pose and torso, with ``composite='full'``).
        pasted: the pasted-back mp4 (None when not written).
        torso_frames: int64 [n_frames] the dataset frame whose torso (and source frame) each
            output frame uses (``composite='full'``; None for 'head').
        n_frames: frames rendered (= round(audio seconds * fps)).
        fps: output frame rate.
        seconds: wall time of the whole call (sources, rendering and encoding).
        render_fps: frames per second of the NeRF rendering alone.
        size: output side in pixels.
    """

    video: Path
    grid: Path | None
    pasted: Path | None
    torso_frames: np.ndarray | None
    n_frames: int
    fps: float
    seconds: float
    render_fps: float
    size: int


def resolve_dataset(run, dataset=None) -> Path:
    """The training dataset folder of a NeRF run: ``dataset`` if given, else the folder the
    run was trained on (recorded in its checkpoint).

    Raises:
        BadInputError: the folder is gone (moved or deleted): pass ``dataset=``.
    """
    root = Path(dataset) if dataset is not None else Path(run.dataset.get("root", ""))
    if not (root / "meta.json").is_file():
        raise BadInputError(
            f"the training dataset {str(root)!r} of this run is not there (moved or deleted?): "
            "pass its folder with --dataset / dataset=; it holds the audio-feature settings, "
            "the head poses and the background")
    return root


def _check_file(path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{what} {str(path)!r}: no such file")
    return p


def grid_indices(n_frames: int, rows: int = 6) -> np.ndarray:
    """``rows`` evenly spaced frame indices of a sequence of ``n_frames`` (fewer when short)."""
    return np.unique(np.linspace(0, n_frames - 1, max(1, min(rows, n_frames))).round()
                     .astype(int))


def render_grid(source_frames, output_frames, pose_frames=None) -> np.ndarray:
    """A frame grid: expression source | output (| pose source), one row per time.

    Args:
        source_frames: uint8 [R, h, w, 3] expression-source crops.
        output_frames: uint8 [R, H, W, 3] the rendered frames at the same times.
        pose_frames: optional uint8 [R, h', w', 3] the recorded frames the poses (and torso)
            come from.

    Returns:
        uint8 [R * H, 2 * W (3 * W with poses), 3]: each source resized to H x W.

    Raises:
        ValueError: different numbers of frames, or none.
    """
    import cv2

    if len(source_frames) != len(output_frames) or len(output_frames) == 0 or (
            pose_frames is not None and len(pose_frames) != len(output_frames)):
        raise ValueError(f"render_grid needs as many source (and pose) as output frames "
                         f"(>= 1), got {len(source_frames)} and {len(output_frames)}")
    rows = []
    for k, (src, out) in enumerate(zip(source_frames, output_frames)):
        h, w = out.shape[:2]
        cells = [cv2.resize(np.ascontiguousarray(src), (w, h), interpolation=cv2.INTER_AREA),
                 out]
        if pose_frames is not None:
            cells.append(cv2.resize(np.ascontiguousarray(pose_frames[k]), (w, h),
                                    interpolation=cv2.INTER_AREA))
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


def torso_frames(pose, n_frames: int, torso, poses, fit: str = "pingpong") -> np.ndarray:
    """The dataset frame of each output frame's torso (and paste-back source frame).

    Pose ``"dataset"`` (or the training dataset's own folder): frame for frame, extended as
    the poses are (:func:`~jeancore.render.sources.fit_length`); any other pose source
    (``"frozen"``, another dataset, a retargeted video, an array): the training frame nearest
    in head pose (:meth:`~jeancore.render.fullframe.DatasetTorso.nearest_frame`; for
    ``"frozen"`` that is the frozen frame itself).

    Args:
        pose: the pose source given to :func:`render`. n_frames: output length.
        torso: the training dataset's :class:`~jeancore.render.fullframe.DatasetTorso`.
        poses: float [n_frames, 4, 4] the output's camera-to-head poses. fit: the length rule.

    Returns:
        int64 [n_frames].
    """
    from .sources import fit_length

    same = isinstance(pose, (str, Path)) and (
        str(pose) == "dataset" or (Path(pose).is_dir()
                                    and Path(pose).resolve() == torso.root.resolve()))
    if same:
        return np.asarray(fit_length(np.arange(torso.n_frames), n_frames, fit), np.int64)
    return np.asarray(torso.nearest_frame(np.asarray(poses)), np.int64).reshape(-1)


def _background_image(path, side: int) -> np.ndarray:
    import cv2

    p = _check_file(path, "background image")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise BadInputError(f"background image {str(path)!r}: not an image file (PNG/JPEG)")
    return cv2.resize(img[..., ::-1], (side, side), interpolation=cv2.INTER_AREA)


def render(run_dir, audio, expression, pose="dataset", out="render.mp4",
           config: RenderConfig | None = None, *, dataset=None, run=None,
           progress: bool = True, **settings) -> RenderResult:
    """Render a trained NeRF driven by speech, an expression video and a head-pose source.

    Args:
        run_dir: a ``jean train`` run directory (or checkpoint); ignored when ``run`` (a loaded
            :class:`jeancore.nerf.NerfRun`) is given.
        audio: speech: any audio file (wav, mp3, m4a, flac) or a video with sound; features as
            the training dataset's (:func:`jeancore.render.sources.audio_windows`). Its length
            sets the output length.
        expression: a face video (any person; ideally the same identity): per-frame emotion
            features through the run's expression transformer (windowed, middle output).
        pose: ``"dataset"`` (the training poses in order), ``"frozen"`` (one pose), another
            dataset folder, or a video (tracked, its head motion retargeted onto the training
            camera); see :func:`jeancore.render.sources.head_poses`.
        out: output .mp4 path; the grid goes beside it as ``<stem>_grid.png``, the
            pasted-back video as ``<stem>_pasted.mp4``.
        config: :class:`RenderConfig` (composite, background, paste_back, source_video, size,
            fit, max_seconds, device, grid, grid_rows, chunk_rays); default: its defaults.
        dataset: the training dataset folder (default: the one recorded in the run).
        progress: progress bar (frames/s).
        settings: fields of :class:`RenderConfig` to change (e.g. ``size=256``).

    Returns:
        :class:`RenderResult`.

    Raises:
        BadInputError: a missing or unreadable source, audio without sound, an expression
            video without a face, a pose source that cannot be used, a run whose dataset is
            gone (pass ``dataset``). Nothing is written then.
        ConfigError: bad settings (output not .mp4, odd size, unknown fit mode/background,
            unknown setting).
    """
    import torch
    from tqdm.auto import tqdm

    from .._io import save_image
    from ..data.video import write_video
    from .sources import FIT_MODES, audio_windows, expression_source, fit_length, head_poses

    t0 = time.perf_counter()
    cfg = with_settings(RenderConfig, config, settings)
    background, size, fit, device = cfg.background, cfg.size, cfg.fit, cfg.device
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"output must be an .mp4 file, got {str(out)!r}")
    if fit not in FIT_MODES:
        raise ConfigError(f"fit must be one of {FIT_MODES}, got {fit!r}")
    if cfg.composite not in COMPOSITES:
        raise ConfigError(f"composite must be one of {COMPOSITES}, got {cfg.composite!r}")
    if background not in BACKGROUNDS:
        _check_file(background, "background image")
    if cfg.paste_back and cfg.composite != "full":
        raise ConfigError("paste_back needs composite='full' (the head alone has no frame "
                          "around it to paste)")
    if size is not None and (int(size) < 2 or int(size) % 2):
        raise ConfigError(f"size must be an even number of pixels >= 2 (H.264), got {size}")
    audio = _check_file(audio, "audio")
    expression = _check_file(expression, "expression video")
    if run is None:
        from ..nerf import load_nerf_run

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        run = load_nerf_run(run_dir, device)
    root = resolve_dataset(run, dataset)
    render_side = run.size if size is None else int(size)   # the head's resolution
    full = cfg.composite == "full"
    torso = paste_src = None
    if full:
        from .fullframe import DatasetTorso

        torso = DatasetTorso(root)        # BadInputError: no torso labels
        paste = cfg.paste_back
        if paste is None or paste:
            from .paste_back import paste_back_source

            try:
                paste_src = paste_back_source(root, cfg.source_video)
            except BadInputError as e:
                if paste:
                    raise
                log.info("no paste-back: %s", e)
    # the output: full frames at --size or the dataset's (the head, rendered at the run's
    # resolution or --size, is composed at the dataset's); the head alone at its resolution
    side = torso.size if full and size is None else render_side
    if side % 2:
        raise ConfigError(f"the dataset's size {side} is odd; pass an even --size for H.264")

    windows, wav = audio_windows(audio, root, FPS, max_seconds=cfg.max_seconds, return_wav=True)
    n = len(windows)
    log.info("audio %s: %d frames (%.2f s)", audio, n, n / FPS)
    src = expression_source(expression, FPS, max_frames=n, progress=progress)
    feats = fit_length(src.features, n, fit)
    crops = fit_length(src.crops, n, fit)
    codes = run.expression_codes_from_features(feats)
    poses = head_poses(root if pose == "dataset" else pose, n, dataset=root, fps=FPS, mode=fit,
                       progress=progress)
    torso_idx = torso_frames(pose, n, torso, poses, fit) if full else None
    if full:
        bg_arg = (0.0, 0.0, 0.0)           # premultiplied head for compose_full
    else:
        bg_arg = background if background in BACKGROUNDS else _background_image(background, side)

    keep = set(grid_indices(n, cfg.grid_rows).tolist()) if cfg.grid else set()
    kept = {}
    bar = tqdm(total=n, desc="render", unit="frame", disable=not progress, dynamic_ncols=True)
    t_render = [0.0]
    store = None
    store_path = out.with_name(f".{out.stem}.frames.tmp")
    if paste_src is not None:  # the dataset-size frames again for the paste-back, on disk
        store = np.lib.format.open_memmap(store_path, mode="w+", dtype=np.uint8,
                                          shape=(n, torso.size, torso.size, 3))

    def frames():
        k = 0
        it = run.render_frames(poses, windows, codes, size=render_side, background=bg_arg,
                               chunk_rays=cfg.chunk_rays, with_opacity=full)
        while True:
            ts = time.perf_counter()
            img = next(it, None)
            t_render[0] += time.perf_counter() - ts
            if img is None:
                return
            if full:
                head, opacity = img
                if head.shape[0] != torso.size:
                    head = _resize_frame(head, torso.size, up=True)
                    opacity = _resize_frame(opacity, torso.size, up=True)
                img = torso.compose(head, opacity, int(torso_idx[k]))
                if store is not None:
                    store[k] = img
                if img.shape[0] != side:
                    img = _resize_frame(img, side)
            if k in keep:
                kept[k] = img
            k += 1
            bar.update(1)
            yield img

    speech = wav[: int(round(n / FPS * 16000))]
    pasted = None
    try:
        write_video(out, frames(), FPS, audio=speech, sr=16000)
        if store is not None:
            from .paste_back import write_paste_back

            store.flush()
            pasted = out.with_name(out.stem + "_pasted.mp4")
            write_paste_back(pasted, iter(store), torso_idx, root, speech, sr=16000,
                             video=paste_src.video)
    finally:
        bar.close()
        if store is not None:
            del store
            store_path.unlink(missing_ok=True)
    grid_path = None
    if cfg.grid:
        grid_path = out.with_name(out.stem + "_grid.png")
        idx = sorted(kept)
        pose_imgs = None if torso is None else np.stack([torso.frame(int(torso_idx[i]))
                                                         for i in idx])
        save_image(grid_path, render_grid(crops[idx], np.stack([kept[i] for i in idx]),
                                          pose_imgs))
    return RenderResult(video=out, grid=grid_path, pasted=pasted, torso_frames=torso_idx,
                        n_frames=n, fps=FPS, seconds=time.perf_counter() - t0,
                        render_fps=n / max(t_render[0], 1e-9), size=side)


def _resize_frame(img: np.ndarray, side: int, up: bool = False) -> np.ndarray:
    import cv2

    return cv2.resize(img, (side, side),
                      interpolation=cv2.INTER_LINEAR if up else cv2.INTER_AREA)
