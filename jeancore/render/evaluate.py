"""Evaluation of rendered talking faces (JEAN Sec. 4.1.2, suppl. 8.5; docs/evaluation.md).

* :func:`evaluate_self` -- self-driven reconstruction (validation split, ground truth known):
  PSNR, SSIM (and LPIPS with weights) on the face crop; LMD, M-LMD, F-LMD, LMDV from the
  offline landmark detector run on output and ground truth alike.
* :func:`evaluate_cross` -- cross-driven (audio and expression from other clips, as Table 1):
  identity distance (ACD-style) and Exp-Diff (and LSE-C with SyncNet weights).
* :func:`format_table` -- the short table printed to the terminal.

Metrics that need weights the user did not pass are ``None`` in the dict and "unavailable
(pass ...)" in the table, never 0.
"""

from __future__ import annotations

import math

import numpy as np

from ..metrics import face as F

__all__ = ["evaluate_self", "evaluate_cross", "format_audio_lip", "format_table", "METRIC_INFO"]

#: name -> (label, unit, "higher"/"lower" is better)
METRIC_INFO = {
    "psnr": ("PSNR (face crop)", "dB", "higher"),
    "ssim": ("SSIM (face crop)", "", "higher"),
    "psnr_full": ("PSNR (full frame, head over torso)", "dB", "higher"),
    "ssim_full": ("SSIM (full frame)", "", "higher"),
    "lpips": ("LPIPS (face crop)", "", "lower"),
    "lmd": ("LMD (68 points)", "px", "lower"),
    "m_lmd": ("M-LMD (mouth 48-67)", "px", "lower"),
    "m_lmd_mean_mouth": ("  baseline: training-mean mouth", "px", "lower"),
    "f_lmd": ("F-LMD (face 0-47)", "px", "lower"),
    "lmdv": ("LMDV (velocity)", "px/frame", "lower"),
    "identity_distance": ("identity distance (dlib, ACD-style)", "cos", "lower"),
    "exp_diff": ("Exp-Diff (3DMM expression MSE)", "", "lower"),
    "lse_c": ("LSE-C (SyncNet)", "", "higher"),
    "lse_d": ("LSE-D (SyncNet)", "", "lower"),
    "lip_sync_z": ("lip-speech sync z (not LSE-C)", "", "higher"),
    "lip_sync_z_ground_truth": ("  ground truth's", "", "higher"),
}


def _frames(x, name):
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB [T, H, W, 3], got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name}: no frames")
    return x


def _face_crops(pred, gt, boxes, gt_landmarks):
    from ..data.video import crop_resize

    t, h, w = gt.shape[:3]
    if boxes is None:
        boxes = F.face_box(gt_landmarks, (w, h))
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape == (3,):
        box = tuple(int(round(v)) for v in boxes)
        return F.crop_frames(pred, box), F.crop_frames(gt, box), [int(v) for v in box]
    if boxes.shape != (t, 3):
        raise ValueError(f"face_boxes must be one (x0, y0, side) or [T, 3], got {boxes.shape}")
    side = int(round(np.median(boxes[:, 2])))
    bx = [tuple(int(round(v)) for v in b) for b in boxes]
    return (np.stack([crop_resize(f, b, side) for f, b in zip(pred, bx)]),
            np.stack([crop_resize(f, b, side) for f, b in zip(gt, bx)]), boxes.tolist())


def evaluate_self(pred_frames, gt_frames, face_boxes=None, *, gt_landmarks=None,
                  pred_landmarks=None, lpips_weights=None, detector=None) -> dict:
    """Self-driven reconstruction metrics (ground truth known; JEAN Sec. 4.1.2, suppl. 8.5).

    Landmarks of output and ground truth come from the same offline detector (dlib,
    :func:`jeancore.metrics.face.landmarks_of_frames`); frames where either has no face are
    left out of the landmark metrics (counted in ``frames_with_face``).

    Args:
        pred_frames: uint8 RGB [T, H, W, 3] rendered frames.
        gt_frames: uint8 RGB [T, H, W, 3] ground-truth frames (same shape).
        face_boxes: the face crop of PSNR / SSIM / LPIPS: one (x0, y0, side) in pixels, or
            [T, 3] per frame (crops resized to the median side); default one box for the clip
            from the ground-truth landmarks (:func:`jeancore.metrics.face.face_box`).
        gt_landmarks: float [T, 68, 2] ground-truth landmarks if already known (e.g. the
            dataset's ``landmarks.npz``); default detected here.
        pred_landmarks: float [T, 68, 2] landmarks already detected on ``pred_frames`` with
            :func:`~jeancore.metrics.face.landmarks_of_frames` (NaN rows: no face); default
            detected here.
        lpips_weights: AlexNet weights for LPIPS (:func:`~jeancore.metrics.face.lpips_distance`);
            None -> ``lpips`` is None.
        detector: landmark detector (default dlib).

    Returns:
        dict: ``psnr`` (dB), ``ssim``, ``lpips`` (or None), ``lmd``, ``m_lmd``, ``f_lmd``
        (pixels), ``lmdv`` (pixels per frame), ``frames``, ``frames_with_face``
        ({"output": n, "ground_truth": n}), ``face_box``.

    Raises:
        ValueError: shapes differ; BadInputError: no face in the ground truth (no face crop).
    """
    pred = _frames(pred_frames, "pred_frames")
    gt = _frames(gt_frames, "gt_frames")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_frames {pred.shape} and gt_frames {gt.shape} differ")
    lm_pred = (np.asarray(pred_landmarks, np.float32) if pred_landmarks is not None
               else F.landmarks_of_frames(pred, detector))
    lm_gt = (np.asarray(gt_landmarks, np.float32) if gt_landmarks is not None
             else F.landmarks_of_frames(gt, detector))
    if lm_gt.shape != lm_pred.shape:
        raise ValueError(f"gt_landmarks must be [T, 68, 2] = {lm_pred.shape}, got {lm_gt.shape}")
    pc, gc, box = _face_crops(pred, gt, face_boxes, lm_gt)
    return {
        "psnr": F.psnr(pc, gc), "ssim": F.ssim(pc, gc),
        "lpips": F.lpips_distance(pc, gc, lpips_weights),
        "lmd": F.lmd(lm_pred, lm_gt), "m_lmd": F.m_lmd(lm_pred, lm_gt),
        "f_lmd": F.f_lmd(lm_pred, lm_gt), "lmdv": F.lmdv(lm_pred, lm_gt),
        "frames": int(len(pred)),
        "frames_with_face": {"output": int(np.isfinite(lm_pred).all(axis=(1, 2)).sum()),
                             "ground_truth": int(np.isfinite(lm_gt).all(axis=(1, 2)).sum())},
        "face_box": box,
    }


def evaluate_cross(pred_frames, identity_frames, expression_frames, *,
                   max_identity_frames: int | None = 16, mode: str = "pingpong",
                   wav=None, syncnet_weights=None, pred_landmarks=None) -> dict:
    """Cross-driven metrics (audio and expression from other clips; JEAN Table 1).

    Args:
        pred_frames: uint8 RGB [T, H, W, 3] rendered frames.
        identity_frames: uint8 RGB [N, H', W', 3] real frames of the trained identity (e.g.
            its dataset's frames).
        expression_frames: uint8 RGB [T', H'', W'', 3] the expression source's frames on the
            output grid (e.g. :attr:`jeancore.render.sources.ExpressionSource.crops`); a
            different length is brought to T with :func:`~jeancore.render.sources.fit_length`
            (``mode``), as rendering does.
        max_identity_frames: frames per side used for the face descriptors.
        wav, syncnet_weights: 16 kHz audio and SyncNet weights for LSE-C / LSE-D (None ->
            None).
        pred_landmarks: landmarks already detected on the output (as
            :func:`evaluate_self`); default detected here.

    Returns:
        dict: ``identity_distance`` (cosine distance of mean dlib descriptors), ``exp_diff``
        (MSE of the 10 3DMM expression coefficients), ``lse_c`` and ``lse_d`` (SyncNet; None
        without weights), ``frames``,
        ``frames_with_face`` (output frames where the detector found a face). When no output
        frame has a face (an untrained or broken model), identity distance and Exp-Diff are
        NaN ("n/a (no face found)" in :func:`format_table`), not an error.

    Raises:
        BadInputError: no face in the identity or the expression frames.
    """
    from .sources import fit_length

    pred = _frames(pred_frames, "pred_frames")
    ident = _frames(identity_frames, "identity_frames")
    expr = _frames(expression_frames, "expression_frames")
    if len(expr) != len(pred):
        expr = fit_length(expr, len(pred), mode)
    marks = (np.asarray(pred_landmarks, np.float32) if pred_landmarks is not None
             else F.landmarks_of_frames(pred))
    n_face = int(np.isfinite(marks).all(axis=(1, 2)).sum())
    if n_face:
        ident_d = F.identity_distance(pred, ident, max_identity_frames)
        size = (pred.shape[2], pred.shape[1])
        e_diff = F.exp_diff(F.expression_parameters(landmarks=marks, image_size=size),
                            F.expression_parameters(expr))
    else:
        ident_d = e_diff = float("nan")
    lse_c = lse_d = None
    if syncnet_weights is not None:
        from ..metrics.syncnet import syncnet_scores

        sync = syncnet_scores(pred, wav, syncnet_weights)
        lse_c, lse_d = sync.lse_c, sync.lse_d
    return {"identity_distance": ident_d, "exp_diff": e_diff, "lse_c": lse_c,
            "lse_d": lse_d, "frames": int(len(pred)), "frames_with_face": n_face}


def _fmt_value(name, v):
    if v is None:
        return F.UNAVAILABLE.get(name, "unavailable")
    if isinstance(v, float) and math.isnan(v):
        return "n/a (no face found)"
    if isinstance(v, float):
        unit = METRIC_INFO.get(name, ("", "", ""))[1]
        return f"{v:.4f}" + (f" {unit}" if unit and unit != "cos" else "")
    return str(v)


def format_table(results: dict) -> str:
    """A short plain-text table of metric results, one metric per line, with units and which
    direction is better; metrics that were not computed show "unavailable (pass ...)".

    Args:
        results: a dict from :func:`evaluate_self` / :func:`evaluate_cross`, or a dict of
            such dicts (e.g. ``{"self-driven": {...}, "cross-driven": {...}}``), one section
            each. Keys not in :data:`METRIC_INFO` (counts, boxes) are left out.

    Returns:
        The table (lines joined with newlines, no trailing newline).
    """
    sections = ([(k, v) for k, v in results.items() if isinstance(v, dict)
                 and any(m in v for m in METRIC_INFO)] or [("", results)])
    width = max(len(info[0]) for info in METRIC_INFO.values())
    lines = []
    for title, res in sections:
        if title:
            lines.append(f"{title}:")
        for name, (label, _, better) in METRIC_INFO.items():
            if name not in res:
                continue
            arrow = "↑" if better == "higher" else "↓"
            lines.append(f"  {label:<{width}} {arrow}  {_fmt_value(name, res[name])}")
    return "\n".join(lines)


def format_audio_lip(results: dict) -> str:
    """The audio-lip agreement lines of :func:`jeancore.render.run_eval.evaluate_run`'s result
    (``self`` / ``cross`` -> ``audio_lip``, ``audio_lip_ground_truth``): top-1 and top-5
    against chance, one line each that was computed (no trailing newline)."""
    lines = []
    for name, key in (("self", "audio_lip"), ("self", "audio_lip_ground_truth"),
                      ("cross", "audio_lip")):
        r = results.get(name, {}).get(key)
        if r and r.get("top1") is not None:
            lines.append(f"{name}: {key} (jeancore's audio/landmark encoders, not SyncNet): "
                         f"top-1 {r['top1']:.3f}, top-5 {r['top5']:.3f} among "
                         f"{r['n_candidates']} frames (chance {r['chance_top1']:.3f})")
    return "\n".join(lines)
