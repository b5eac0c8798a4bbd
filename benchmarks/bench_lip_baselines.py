"""What the speech does to the mouth, as a measured number (issue: grid backbone, lip sync).

On the validation frames of a trained run (the last 10% of its clip: their own, unseen speech,
their expression and pose), M-LMD (iBUG-68 mouth points 48-67, pixels, dlib on the renders)
against the ground truth, for three mouths:

* **own speech**: the frames rendered with their own audio windows (the self-driven test of
  ``jean evaluate``);
* **silent window**: the same frames rendered with the audio window of the quietest training
  frame (lowest mean log-mel energy) for every frame: what the model does without speech;
* **training-mean mouth**: the ground-truth landmarks with the mouth replaced by the training
  frames' mean mouth (:func:`jeancore.metrics.face.mean_mouth_baseline`): a mouth that does not
  move at all.

Also the inner-lip gap's Pearson r against the ground truth's, and its spread, for the first two.

    python benchmarks/bench_lip_baselines.py RUN [--dataset DATA] [--max-frames N] [--json OUT]

Markdown on stdout, JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _gap_stats(marks, gt_gap):
    """(Pearson r of the inner-lip gap vs the ground truth's, its std, frames with a face)."""
    from jeancore.metrics.lipsync import inner_lip_gap

    ok = np.isfinite(marks).all(axis=(1, 2))
    if ok.sum() < 3:
        return None, float("nan"), int(ok.sum())
    gap = inner_lip_gap(marks[ok])
    r = float(np.corrcoef(gap, gt_gap[ok])[0, 1]) if gap.std() > 0 else None
    return r, float(gap.std()), int(ok.sum())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a trained NeRF run directory (jean train --out)")
    p.add_argument("--dataset", type=Path, default=None, help="its dataset (default: recorded)")
    p.add_argument("--max-frames", type=int, default=None, help="evenly spaced validation frames")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)

    from jeancore.data.dataset import TalkingHeadDataset
    from jeancore.metrics.face import landmarks_of_frames, m_lmd, mean_mouth_baseline
    from jeancore.metrics.lipsync import inner_lip_gap
    from jeancore.nerf import load_nerf_run
    from jeancore.render.pipeline import resolve_dataset

    run = load_nerf_run(a.run, "cpu")
    root = resolve_dataset(run, a.dataset)
    val = TalkingHeadDataset(root, "val")
    train = TalkingHeadDataset(root, "train", images=False)
    allds = TalkingHeadDataset(root, "all", images=False)
    idx = np.arange(len(val))
    if a.max_frames is not None and len(idx) > a.max_frames:
        idx = np.unique(np.linspace(0, len(idx) - 1, a.max_frames).round().astype(int))
    side = run.size
    codes = run.expression_codes_from_features(allds.emotion)[val.indices[idx]]
    poses = val.camera_to_head[idx]
    own = np.asarray(val.audio[idx])
    train_audio = np.asarray(train.audio)
    quiet = int(np.argmin(train_audio.reshape(len(train_audio), -1).mean(1)))
    silent = np.repeat(train_audio[quiet:quiet + 1], len(idx), axis=0)
    bg = val.background.astype(np.float32)

    def frames(windows):
        out = []
        for head, opacity in run.render_frames(poses, windows, codes, background=(0.0, 0.0, 0.0),
                                               with_opacity=True):
            over = head.astype(np.float32) + (1.0 - opacity[..., None]) * bg
            out.append(np.clip(over + 0.5, 0, 255).astype(np.uint8))
        return np.stack(out)

    gt = val.landmarks[idx].astype(np.float32) * (side / val.size)
    gt_gap = inner_lip_gap(gt)
    res = {"run": str(a.run), "dataset": str(root), "frames": int(len(idx)),
           "silent_train_frame": int(train.indices[quiet])}
    t0 = time.perf_counter()
    for name, windows in (("own_speech", own), ("silent_window", silent)):
        marks = landmarks_of_frames(frames(windows))
        r, spread, found = _gap_stats(marks, gt_gap)
        res[name] = {"m_lmd": m_lmd(marks, gt), "gap_pearson_r": r, "gap_std": spread,
                     "faces": found}
    res["render_and_detect_s"] = time.perf_counter() - t0
    tm = train.landmarks.astype(np.float32) * (side / val.size)
    res["training_mean_mouth"] = {"m_lmd": m_lmd(mean_mouth_baseline(gt, tm), gt)}
    res["ground_truth_gap_std"] = float(gt_gap.std())

    print(f"| mouth ({res['frames']} validation frames, {root.name}) | M-LMD px | "
          "inner-lip gap r vs ground truth | gap std | faces |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("own_speech", "rendered, own speech"),
                        ("silent_window", "rendered, silent window for every frame"),
                        ("training_mean_mouth", "training-mean mouth (ground truth otherwise)")):
        d = res[name]
        r, spread = d.get("gap_pearson_r"), d.get("gap_std")
        print(f"| {label} | {d['m_lmd']:.3f} | {'' if r is None else f'{r:.2f}'} | "
              f"{'' if spread is None else f'{spread:.4f}'} | {d.get('faces', '')} |")
    print(f"| ground truth |  |  | {res['ground_truth_gap_std']:.4f} |  |")
    if a.json is not None:
        a.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
