"""``jean evaluate``: render a trained model and measure it (JEAN Sec. 4.1.2, suppl. 8.5).

* **Self-driven** (ground truth known): the validation frames (the dataset's last 10%) are
  rendered with their own pose, speech and expression over the training background and
  compared with the real head images: PSNR and SSIM on the face crop, LMD / M-LMD / F-LMD and
  LMDV from the offline landmark detector on both (:func:`jeancore.render.evaluate_self`).
* **Cross-driven** (as the paper's Table 1): speech and expression from other clips, the
  dataset's poses: identity distance to the identity's frames, Exp-Diff against the
  expression source (:func:`jeancore.render.evaluate_cross`).
* **Audio-lip agreement** (both settings): audio-to-mouth retrieval top-1 / top-5 among 32
  frames between the driving speech's audio codes and the mouth codes of the landmarks
  detected on the output, with jeancore's own contrastive audio encoder and landmark
  autoencoder (Sec. 3.1). It is our encoder's score, not SyncNet's LSE-C; the same score on
  the real validation frames is reported beside it as the reachable value.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from .._config import with_settings
from ..errors import BadInputError

__all__ = ["EvaluateConfig", "evaluate_run"]

log = logging.getLogger("jeancore.render")


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frames.shape[1] == size:
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


@dataclasses.dataclass
class EvaluateConfig:
    """Settings of :func:`evaluate_run` (``jean evaluate``)."""

    size: int | None = None
    """Rendering side in pixels (None: the dataset's); the ground truth is resized to it."""
    max_frames: int | None = None
    """Evaluate at most this many frames per setting (evenly spaced for the self-driven
    validation frames; the first ones for cross-driven; None: all)."""
    device: str = "auto"
    """Torch device: 'auto' (CUDA when available), 'cpu', 'cuda', ..."""


def _dataset_speech(root, ds, first: int, n: int) -> np.ndarray | None:
    """The dataset's own speech (audio.wav, 16 kHz) under frames first .. first+n-1."""
    from ..data.video import load_audio

    path = Path(root) / "audio.wav"
    if not path.is_file():
        return None
    sr = 16000
    wav = load_audio(path, sr)
    start = (int(ds.first_frame) + first) / ds.fps
    a = int(round(start * sr))
    return np.asarray(wav[a:a + int(round(n / ds.fps * sr))], np.float32)


def _lip_sync(pred_marks, wav, gt_marks, fps: float, gt_wav=None) -> dict:
    """``lip_sync_z`` (+ lag) of the rendered landmarks with ``wav`` and of the ground truth's
    with ``gt_wav`` (default the same speech); None where the clip is too short or silent."""
    from ..metrics.lipsync import lip_sync_from_landmarks

    out = {}
    for key, marks, w in (("lip_sync_z", pred_marks, wav),
                          ("lip_sync_z_ground_truth", gt_marks,
                           wav if gt_wav is None else gt_wav)):
        out[key] = out[key + "_lag_s"] = None
        if w is None:
            continue
        try:
            r = lip_sync_from_landmarks(marks, w, fps)
        except BadInputError as e:
            log.info("%s not computed: %s", key, e)
            continue
        out[key], out[key + "_lag_s"] = float(r.z), float(r.lag_s)
    return out


def evaluate_run(run_dir, config: EvaluateConfig | None = None, *, dataset=None, audio=None,
                 expression=None, out=None, audio_model=None, lpips_weights=None,
                 syncnet_weights=None, run=None, progress: bool = True, compare=None,
                 rendered=None, **settings) -> dict:
    """Self-driven (and, with ``audio`` and ``expression``, cross-driven) evaluation.

    Args:
        run_dir: a ``jean train`` run (ignored when ``run``, a loaded NerfRun, is given).
        dataset: its training dataset folder (default: the one recorded in the run).
        audio, expression: speech file and face video of the cross-driven test (both or none).
        config: :class:`EvaluateConfig` (size, max_frames, device); default: its defaults.
        out: JSON file to write (atomically), or None.
        audio_model: encoders of the audio-lip score (default: the shipped generic ones).
        lpips_weights, syncnet_weights: optional weight files (see docs/evaluation.md);
            without them LPIPS and LSE-C are reported unavailable, never 0.
        progress: progress bars.
        settings: fields of :class:`EvaluateConfig` to change (e.g. ``max_frames=12``).

    Returns:
        dict: ``self`` (metrics of :func:`~jeancore.render.evaluate_self` + ``psnr_full`` /
        ``ssim_full`` (the rendered head over the same frame's torso and the background,
        against the recorded frame; None without torso labels), ``audio_lip`` and
        ``audio_lip_ground_truth``, ``lip_sync_z`` / ``lip_sync_z_ground_truth`` with their
        lags (:func:`jeancore.metrics.lipsync.lip_sync_from_landmarks` with the validation
        speech; None when the validation split is shorter than 2 s + 20 frames or frames were
        skipped)), optionally ``cross`` (:func:`~jeancore.render.evaluate_cross` on the full
        frames + ``audio_lip`` + ``lip_sync_z`` of the output with its new speech and
        ``lip_sync_z_ground_truth`` of the dataset with its own), ``compare`` (the
        side-by-side video) and ``info`` (run, dataset, frames, size, seconds, rendering
        frames/s).

    Raises:
        BadInputError: only one of audio / expression, a missing source, a run whose dataset
            is gone, a dataset without audio features.
        ConfigError: an unknown setting.
    """
    import torch
    from tqdm.auto import tqdm

    from .._io import save_json
    from ..checkpoints import load_audio_model
    from ..data.dataset import TalkingHeadDataset
    from ..metrics.audio import audio_lip_agreement
    from ..metrics.face import landmarks_of_frames, m_lmd, mean_mouth_baseline, psnr, ssim
    from ..models.audio_model import AudioModel
    from .evaluate import evaluate_cross, evaluate_self
    from .pipeline import FPS, resolve_dataset
    from .sources import audio_windows, expression_source, fit_length

    cfg = with_settings(EvaluateConfig, config, settings)
    size, max_frames, device = cfg.size, cfg.max_frames, cfg.device
    if (audio is None) != (expression is None):
        raise BadInputError("the cross-driven test needs both --audio and --expression")
    if rendered is not None and audio is None:
        raise BadInputError("a rendered video is evaluated cross-driven: pass the --audio and "
                            "--expression it was rendered with")
    if rendered is not None and not Path(rendered).is_file():
        raise BadInputError(f"rendered video {str(rendered)!r}: no such file")
    t0 = time.perf_counter()
    if run is None:
        from ..nerf import load_nerf_run

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        run = load_nerf_run(run_dir, device)
    root = resolve_dataset(run, dataset)
    run.check_dataset(root)
    side = run.size if size is None else int(size)
    val = TalkingHeadDataset(root, "val")
    allds = TalkingHeadDataset(root, "all", images=False)
    if not val.has_audio:
        raise BadInputError(f"{root} has no audio features: self-driven evaluation needs them")
    idx = np.arange(len(val))
    if max_frames is not None and len(idx) > max_frames:
        idx = np.unique(np.linspace(0, len(idx) - 1, int(max_frames)).round().astype(int))
    # expression codes over the whole clip (windows reach across the split), then the val rows
    codes_all = run.expression_codes_from_features(allds.emotion)
    rows = val.indices[idx]
    render_s = [0.0]
    try:
        from .fullframe import DatasetTorso

        torso = DatasetTorso(root)
    except BadInputError as e:  # no torso labels: the full-frame metrics are unavailable
        log.info("no full-frame metrics: %s", e)
        torso = None

    def render(poses, windows, codes, torso_frames, background, desc):
        """(frames over ``background``, full frames over the torso or None)."""
        heads, fulls = [], []
        it = run.render_frames(poses, windows, codes, size=side, background=(0.0, 0.0, 0.0),
                               with_opacity=True)
        bg = np.broadcast_to(np.asarray(background, np.float32), (side, side, 3))
        for k in tqdm(range(len(poses)), desc=desc, unit="frame", disable=not progress,
                      leave=False):
            ts = time.perf_counter()
            head, opacity = next(it)
            render_s[0] += time.perf_counter() - ts
            over = head.astype(np.float32) + (1.0 - opacity[..., None]) * bg
            heads.append(np.clip(over + 0.5, 0, 255).astype(np.uint8))
            if torso is not None:
                h, o = head, opacity
                if side != torso.size:
                    h, o = _resize(h[None], torso.size)[0], _resize(o[None], torso.size)[0]
                fulls.append(torso.compose(h, o, int(torso_frames[k])))
        return np.stack(heads), (np.stack(fulls) if fulls else None)

    bg = _resize(val.background[None], side)[0].astype(np.float32)
    pred, pred_full = render(val.camera_to_head[idx], np.asarray(val.audio[idx]),
                             codes_all[rows], rows, bg, "self-driven")
    gt = _resize(np.stack([val.head_image(int(j)) for j in idx]), side)
    gt_marks = val.landmarks[idx] * (side / val.size)
    if not isinstance(audio_model, AudioModel):  # load once for the three scores
        audio_model = load_audio_model(audio_model)
    pred_marks = landmarks_of_frames(pred)
    res_self = evaluate_self(pred, gt, gt_landmarks=gt_marks, pred_landmarks=pred_marks,
                             lpips_weights=lpips_weights)
    train_marks = TalkingHeadDataset(root, "train", images=False).landmarks * (side / val.size)
    res_self["m_lmd_mean_mouth"] = m_lmd(mean_mouth_baseline(gt_marks, train_marks), gt_marks)
    res_self["psnr_full"] = res_self["ssim_full"] = None
    gt_full = None
    if pred_full is not None:
        gt_full = np.stack([torso.frame(int(j)) for j in rows])
        res_self["psnr_full"] = psnr(pred_full, gt_full)
        res_self["ssim_full"] = ssim(pred_full, gt_full)
    res_self["audio_lip"] = audio_lip_agreement(pred_marks, val.audio[idx], audio_model)
    res_self["audio_lip_ground_truth"] = audio_lip_agreement(gt_marks, val.audio[idx],
                                                             audio_model)
    contiguous = len(idx) == len(val)
    val_wav = _dataset_speech(root, allds, int(rows[0]), len(rows)) if contiguous else None
    res_self.update(_lip_sync(pred_marks, val_wav, gt_marks, FPS))
    n_rendered = len(pred)
    results = {"self": res_self}
    if compare is not None and pred_full is not None:
        from .side_by_side import write_side_by_side

        write_side_by_side(compare, gt_full, pred_full, FPS, audio=val_wav,
                           labels=("ground truth", "JEAN (self-driven)"))
        results["compare"] = str(compare)

    if audio is not None:
        windows, wav = audio_windows(audio, root, FPS, return_wav=True)
        n = len(windows) if max_frames is None else min(len(windows), int(max_frames))
        windows = windows[:n]
        src = expression_source(expression, FPS, max_frames=n, progress=progress)
        codes = run.expression_codes_from_features(fit_length(src.features, n))
        if rendered is not None:   # the output of `jean render` with this audio/expression
            from ..data.video import iter_frames

            pred_x = np.stack(list(iter_frames(rendered, FPS, max_frames=n)))
            if len(pred_x) < n:
                raise BadInputError(f"{rendered}: {len(pred_x)} frames, but the speech "
                                    f"{audio} gives {n}: pass the video rendered with it")
        else:
            poses = fit_length(allds.camera_to_head, n)
            t_idx = fit_length(np.arange(len(allds)), n)
            heads_x, full_x = render(poses, windows, codes, t_idx, (255.0, 255.0, 255.0),
                                     "cross-driven")
            pred_x = full_x if full_x is not None else heads_x
        train = TalkingHeadDataset(root, "train")
        ident_src = [torso.frame(int(j)) if torso is not None else train.head_image(int(j))
                     for j in np.linspace(0, len(train) - 1, 16).round().astype(int)]
        marks_x = landmarks_of_frames(pred_x)
        res_cross = evaluate_cross(pred_x, _resize(np.stack(ident_src), pred_x.shape[1]),
                                   fit_length(src.crops, n), wav=wav,
                                   syncnet_weights=syncnet_weights, pred_landmarks=marks_x)
        res_cross["audio_lip"] = audio_lip_agreement(marks_x, windows, audio_model)
        ds_marks = allds.landmarks.astype(np.float32)
        ds_wav = _dataset_speech(root, allds, 0, len(allds))
        res_cross.update(_lip_sync(marks_x, wav[: int(round(n / FPS * 16000))], ds_marks,
                                   FPS, ds_wav))
        results["cross"] = res_cross
        if rendered is None:
            n_rendered += len(pred_x)
    results["info"] = {"run": str(run_dir), "dataset": str(root), "size": side,
                       "training_steps": run.step, "frames_rendered": n_rendered,
                       "render_fps": n_rendered / max(render_s[0], 1e-9),
                       "seconds": time.perf_counter() - t0, "device": str(run.device),
                       "audio": None if audio is None else str(audio),
                       "expression": None if expression is None else str(expression)}
    if out is not None:
        save_json(Path(out), results)
    return results
