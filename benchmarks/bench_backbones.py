"""The NeRF backbones side by side at equal wall-clock training budgets (docs/nerf.md).

For each backbone (``grid``: the ``cpu`` preset; ``adnerf``: the paper's MLP at the
``cpu-smoke`` preset's sizes), trained in this one process on the dataset's own resolution, the
training clock (evaluation excluded) is stopped at each budget (``--minutes``, e.g. 2,5,10,20)
and the validation frames (the last 10% of the clip, their own speech, expression and pose)
are rendered: PSNR / SSIM on the face box, PSNR on the full frame and on the head mask;
samples per ray and rays/s of training. One run per backbone: its learning rate decays over the
longest budget (a run planned for a shorter budget would decay sooner), so the shorter budgets
are snapshots of that run.

After the last budget: rendering frames/s at the dataset's size (``--fps-frames`` full frames,
head over black). With ``--lip``:

* **mouth vs eyes**: a validation frame rendered with its pose and expression fixed and the
  audio codes of six other validation frames; the mean absolute change (grey levels, 0-255)
  against the frame's own audio, in the mouth box and in the eye box (iBUG-68 points 48-67 and
  36-47 of the ground truth, 4 px margin);
* **mouth follows speech**: every validation frame rendered self-driven; dlib iBUG-68 on the
  renders; Pearson r of the inner-lip gap (:func:`jeancore.metrics.lipsync.inner_lip_gap`) of
  the renders against the ground truth's.

    python benchmarks/bench_backbones.py DATASET --minutes 2,5,10,20 --backbones grid,adnerf
        --json out.json [--val-frames 4] [--lip] [--save DIR] [--fps-frames 4]

Markdown on stdout, JSON to ``--json``.
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

PRESET = {"grid": "cpu", "adnerf": "cpu-smoke"}


def _box(points: np.ndarray, margin: float, size: int) -> tuple[int, int, int, int]:
    lo = np.floor(points.min(0) - margin).clip(0, size - 1).astype(int)
    hi = np.ceil(points.max(0) + margin).clip(1, size).astype(int)
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


def _head_psnr(images, data, frames) -> float:
    from jeancore.metrics import face

    vals = []
    for (pred, gt), j in zip(images, frames):
        m = data.head_mask[j].numpy()
        vals.append(face.psnr(pred[m][None].astype(np.float32) / 255,
                              gt[m][None].astype(np.float32) / 255))
    return float(np.mean(vals))


@torch.no_grad()
def _render(tr, j: int, cond: torch.Tensor) -> np.ndarray:
    from jeancore.nerf.volume_rendering import render_image

    img = render_image(tr.backbone, tr.c2w[j], tr.data.intrinsics, tr.data.size, tr.data.near,
                       tr.data.far, cond, tr.background.float() / 255.0,
                       chunk_rays=tr.config.chunk_rays, ray_ops=tr.ray_ops)
    return (img * 255).round().byte().cpu().numpy()


@torch.no_grad()
def lip_tests(tr, landmarks: np.ndarray) -> dict:
    """Mouth-vs-eyes change and the inner-lip-gap correlation (module docstring)."""
    from jeancore.metrics.face import landmarks_of_frames
    from jeancore.metrics.lipsync import inner_lip_gap

    tr.backbone.eval()
    tr.conditioner.eval()
    val = [int(j) for j in tr.data.val_idx]
    conds = tr.cond(torch.tensor(val)).float()
    a = tr.conditioner.code_dim
    size = tr.data.size
    # mouth vs eyes
    k0 = len(val) // 2
    j0 = val[k0]
    own = _render(tr, j0, conds[k0]).astype(np.float32).mean(-1)
    lm = landmarks[j0] * size / tr.data.dataset_size
    mx0, my0, mx1, my1 = _box(lm[48:68], 4, size)
    ex0, ey0, ex1, ey1 = _box(lm[36:48], 4, size)
    others = [k for k in np.linspace(0, len(val) - 1, 7).round().astype(int) if k != k0][:6]
    mouth, eyes = [], []
    for k in others:
        c = torch.cat([conds[k, :a], conds[k0, a:]])
        img = _render(tr, j0, c).astype(np.float32).mean(-1)
        d = np.abs(img - own)
        mouth.append(float(d[my0:my1, mx0:mx1].mean()))
        eyes.append(float(d[ey0:ey1, ex0:ex1].mean()))
    # the inner-lip gap of every validation frame, rendered self-driven, against the truth
    renders = np.stack([_render(tr, j, conds[k]) for k, j in enumerate(val)])
    pred_lm = landmarks_of_frames(renders)
    ok = np.isfinite(pred_lm).all(axis=(1, 2))
    gap_pred = inner_lip_gap(pred_lm[ok])
    gap_gt = inner_lip_gap(landmarks[np.asarray(val)][ok])
    r = float(np.corrcoef(gap_pred, gap_gt)[0, 1]) if ok.sum() > 2 else float("nan")
    tr.backbone.train()
    tr.conditioner.train()
    return {"mouth_change": float(np.mean(mouth)),
            "eye_change": float(np.mean(eyes)),
            "mouth_over_eyes": float(np.mean(mouth) / max(np.mean(eyes), 1e-9)),
            "inner_gap_r": r, "faces_found": f"{int(ok.sum())}/{len(val)}",
            "gap_std_pred": float(np.std(gap_pred)), "gap_std_gt": float(np.std(gap_gt))}


@torch.no_grad()
def render_fps(tr, frames: int) -> float:
    """Frames/s of full frames (head over black) at the training size, validation poses."""
    from jeancore.nerf.volume_rendering import render_image

    tr.backbone.eval()
    tr.conditioner.eval()
    val = [int(j) for j in tr.data.val_idx][:frames]
    conds = tr.cond(torch.tensor(val)).float()
    t = time.perf_counter()
    for k, j in enumerate(val):
        render_image(tr.backbone, tr.c2w[j], tr.data.intrinsics, tr.data.size, tr.data.near,
                     tr.data.far, conds[k], torch.zeros(3), chunk_rays=tr.config.chunk_rays,
                     ray_ops=tr.ray_ops)
    fps = len(val) / (time.perf_counter() - t)
    tr.backbone.train()
    tr.conditioner.train()
    return fps


def run_backbone(name: str, dataset: str, minutes: list[float], val_frames: int,
                 lip: bool, save: str | None = None, frames: int = 4,
                 preset: str | None = None, device: str = "cpu") -> dict:
    from jeancore.nerf.data import load_nerf_data
    from jeancore.train import preset_config
    from jeancore.train._run import resolve_device
    from jeancore.train.nerf import NerfTrainer, resolve_audio_encoder, resolve_expression_model

    data = load_nerf_data(dataset, None)
    preset = preset or PRESET[name]
    cfg = preset_config(preset, device, backbone=name, resolution=None, val_frames=val_frames)
    cfg.validate()
    dev = resolve_device(device)
    tr = NerfTrainer(data, cfg, dev, resolve_audio_encoder(None, dataset),
                     resolve_expression_model(None))
    budget = max(minutes) * 60
    rows, t_train, spr, n_rays, steps = [], 0.0, [], 0, 0
    marks = sorted(minutes)
    planned = False
    while marks:
        t = time.perf_counter()
        info = tr.train_step()
        dt = time.perf_counter() - t
        t_train += dt
        steps += 1
        n_rays += cfg.n_rays
        spr.append(info["samples_per_ray"])
        if not planned and steps == 30:  # decay the learning rate over the whole budget
            tr.config.iters = max(60, int(budget / (t_train / steps)))
            planned = True
        if t_train >= marks[0] * 60:
            v = tr.validate()
            row = {"minutes": marks.pop(0), "steps": steps, "psnr_face": v["psnr"],
                   "ssim_face": v["ssim"], "psnr_full": v["psnr_full"],
                   "psnr_head": _head_psnr(v["images"], data, v["frames"]),
                   "samples_per_ray": float(np.mean(spr[-50:])),
                   "rays_per_s": n_rays / t_train}
            rows.append(row)
            print(f"  {name} {row['minutes']:g} min: {row}", flush=True)
    out = {"backbone": name, "preset": preset, "device": str(dev), "iters": tr.config.iters,
           "budgets": rows, "render_fps": render_fps(tr, frames)}
    print(f"  {name} rendering: {out['render_fps']:.3f} frames/s", flush=True)
    if lip:
        lm = np.load(Path(dataset) / "landmarks.npz")["points"]
        out["lip"] = lip_tests(tr, lm)
        print(f"  {name} lip: {out['lip']}", flush=True)
    if save:  # a run folder (load_nerf_run, jean render / evaluate) for later measurements
        from jeancore.checkpoints import NERF, write_checkpoint

        write_checkpoint(Path(save) / name / "checkpoint.pt", NERF,
                         tr.state({"val_history": []}))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--minutes", default="2,5,10,20")
    ap.add_argument("--backbones", default="grid,adnerf")
    ap.add_argument("--val-frames", type=int, default=4)
    ap.add_argument("--lip", action="store_true")
    ap.add_argument("--fps-frames", type=int, default=4, help="frames timed for frames/s")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--preset", default=None, help="preset of every backbone (default: grid "
                    "cpu, adnerf cpu-smoke; e.g. fast on a GPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--save", default=None, help="folder for the trained states")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    minutes = [float(m) for m in a.minutes.split(",")]
    res = {"machine": machine_info(), "dataset": a.dataset, "command": " ".join(sys.argv),
           "runs": []}
    for name in a.backbones.split(","):
        res["runs"].append(run_backbone(name, a.dataset, minutes, a.val_frames, a.lip, a.save,
                                        a.fps_frames, a.preset, a.device))
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1))
    print(f"\n{res['machine']['date']}, {res['machine']['cpu']} ({res['machine']['cpu_count']} "
          f"cores), torch {res['machine']['torch']}\n")
    print("| backbone | minutes | steps | face PSNR | face SSIM | full PSNR | head PSNR | "
          "samples/ray | rays/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res["runs"]:
        for b in r["budgets"]:
            print(f"| {r['backbone']} | {b['minutes']:g} | {b['steps']} | {b['psnr_face']:.2f} | "
                  f"{b['ssim_face']:.3f} | {b['psnr_full']:.2f} | {b['psnr_head']:.2f} | "
                  f"{b['samples_per_ray']:.1f} | {b['rays_per_s']:.0f} |")
    for r in res["runs"]:
        print(f"{r['backbone']}: rendering {r['render_fps']:.3f} frames/s at the dataset size")
    for r in res["runs"]:
        if "lip" in r:
            print(f"{r['backbone']}: {r['lip']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
