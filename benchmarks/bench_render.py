#!/usr/bin/env python
"""Rendering speed and self-driven quality of a trained NeRF on its validation frames.

    python benchmarks/bench_render.py RUN_DIR [--dataset DIR] [--size PX] [--frames N]
                                      [--json out.json] [--save-frames frames.npz]

Renders the validation frames (the dataset's last 10%) with their own pose, speech and
expression over the training background, at ``--size`` (default: the dataset's), and reports
frames per second (after one warm-up frame; CUDA synchronised) and PSNR / SSIM on the head
region against the real frames. ``--save-frames`` keeps the rendered and real frames
(JPEG q95 inside an npz) so that the landmark metrics (``jean evaluate``'s LMD etc., which
need dlib) can be computed on another machine. Needs only torch, numpy, OpenCV and
torchmetrics (it runs on the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None, help="at most this many val frames")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--save-frames", default=None)
    args = ap.parse_args(argv)

    import cv2

    from jeancore.metrics.face import psnr, ssim
    from jeancore.nerf import load_nerf_run
    from jeancore.nerf.data import load_nerf_data

    run = load_nerf_run(args.run, args.device)
    root = Path(args.dataset or run.dataset["root"])
    size = args.size or run.size
    data = load_nerf_data(root, size)
    val = data.val_idx
    if args.frames is not None and len(val) > args.frames:
        val = val[np.unique(np.linspace(0, len(val) - 1, args.frames).round().astype(int))]
    codes = run.expression_codes_from_features(data.emotion)
    bg = data.background.numpy()
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    it = run.render_frames(data.camera_to_head[val], data.audio[val], codes[val], size=size,
                           background=bg)
    frames = [next(it)]  # warm-up (kernels, autotuning)
    sync()
    t0 = time.perf_counter()
    for img in it:
        frames.append(img)
    sync()
    dt = time.perf_counter() - t0
    fps = (len(frames) - 1) / dt if len(frames) > 1 else float("nan")
    pred = np.stack(frames)
    gt = data.images[val].numpy()
    boxes = data.rects[val].numpy()
    crops_p, crops_g = [], []
    for k in range(len(val)):
        x0, y0, x1, y1 = (int(v) for v in boxes[k])
        crops_p.append(cv2.resize(pred[k, y0:y1, x0:x1], (128, 128)))
        crops_g.append(cv2.resize(gt[k, y0:y1, x0:x1], (128, 128)))
    res = {"machine": machine_info(), "run": str(args.run), "dataset": str(root), "size": size,
           "frames": len(val), "render_fps": fps, "training_steps": run.step,
           "psnr_full_frame": psnr(pred, gt), "ssim_full_frame": ssim(pred, gt)}
    if crops_p:
        res["psnr_head_box"] = psnr(np.stack(crops_p), np.stack(crops_g))
        res["ssim_head_box"] = ssim(np.stack(crops_p), np.stack(crops_g))
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str) + "\n")
    if args.save_frames:
        enc = lambda a: np.frombuffer(cv2.imencode(".jpg", a[..., ::-1],  # noqa: E731
                                                   [cv2.IMWRITE_JPEG_QUALITY, 95])[1], np.uint8)
        np.savez(args.save_frames, indices=val,
                 **{f"pred_{k}": enc(p) for k, p in enumerate(pred)},
                 **{f"gt_{k}": enc(g) for k, g in enumerate(gt)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
