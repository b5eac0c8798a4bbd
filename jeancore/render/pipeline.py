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

__all__ = ["BACKGROUNDS", "RenderConfig", "RenderResult", "grid_indices", "render",
           "render_grid", "resolve_dataset"]

log = logging.getLogger("jeancore.render")

FPS = 25.0

BACKGROUNDS = ("white", "dataset")
"""The values of :attr:`RenderConfig.background`."""


@dataclasses.dataclass
class RenderConfig:
    """Settings of :func:`render` (``jean render``)."""

    background: str = "white"
    """'white' (JEAN's inference setting) or 'dataset' (the training background)."""
    size: int | None = None
    """Output side in pixels (even, for H.264; None: the dataset's)."""
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
        grid: the frame-grid PNG (None when not asked for).
        n_frames: frames rendered (= round(audio seconds * fps)).
        fps: output frame rate.
        seconds: wall time of the whole call (sources, rendering and encoding).
        render_fps: frames per second of the NeRF rendering alone.
        size: output side in pixels.
    """

    video: Path
    grid: Path | None
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


def render_grid(source_frames, output_frames) -> np.ndarray:
    """A frame grid: expression source (left) | output (right), one pair per row.

    Args:
        source_frames: uint8 [R, h, w, 3] expression-source crops.
        output_frames: uint8 [R, H, W, 3] the rendered frames at the same times.

    Returns:
        uint8 [R * H, 2 * W, 3]: each source crop resized to H x W beside its output.

    Raises:
        ValueError: different numbers of frames, or none.
    """
    import cv2

    if len(source_frames) != len(output_frames) or len(output_frames) == 0:
        raise ValueError(f"render_grid needs as many source as output frames (>= 1), got "
                         f"{len(source_frames)} and {len(output_frames)}")
    rows = []
    for src, out in zip(source_frames, output_frames):
        h, w = out.shape[:2]
        src = cv2.resize(np.ascontiguousarray(src), (w, h), interpolation=cv2.INTER_AREA)
        rows.append(np.concatenate([src, out], axis=1))
    return np.concatenate(rows, axis=0)


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
        out: output .mp4 path; the grid goes beside it as ``<stem>_grid.png``.
        config: :class:`RenderConfig` (background, size, fit, max_seconds, device, grid,
            grid_rows, chunk_rays); default: its defaults.
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
    if background not in BACKGROUNDS:
        raise ConfigError(f"background must be 'white' or 'dataset', got {background!r}")
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
    side = run.size if size is None else int(size)
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

    keep = set(grid_indices(n, cfg.grid_rows).tolist()) if cfg.grid else set()
    kept = {}
    bar = tqdm(total=n, desc="render", unit="frame", disable=not progress, dynamic_ncols=True)
    t_render = [0.0]

    def frames():
        k = 0
        it = run.render_frames(poses, windows, codes, size=side, background=background,
                               chunk_rays=cfg.chunk_rays)
        while True:
            ts = time.perf_counter()
            img = next(it, None)
            t_render[0] += time.perf_counter() - ts
            if img is None:
                return
            if k in keep:
                kept[k] = img
            k += 1
            bar.update(1)
            yield img

    try:
        write_video(out, frames(), FPS, audio=wav[: int(round(n / FPS * 16000))], sr=16000)
    finally:
        bar.close()
    grid_path = None
    if cfg.grid:
        grid_path = out.with_name(out.stem + "_grid.png")
        idx = sorted(kept)
        save_image(grid_path, render_grid(crops[idx], np.stack([kept[i] for i in idx])))
    return RenderResult(video=out, grid=grid_path, n_frames=n, fps=FPS,
                        seconds=time.perf_counter() - t0,
                        render_fps=n / max(t_render[0], 1e-9), size=side)
