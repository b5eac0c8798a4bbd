"""Seam and gap at the neck of the full-frame composite (jeancore.render.fullframe).

A rendered head whose jaw differs from the recorded frame's is stood in for by the recorded
head of another frame of the same clip (what the NeRF is trained to reproduce: the head over
black, premultiplied, with the head mask as opacity softened by a 1-px Gaussian as the NeRF's
opacity edge). Pairs (torso frame A, head frame B):

* ``closing``: A among the most open mouths, B a closed mouth (inner-lip gap below 0.05 of
  the inter-ocular distance) nearest A in head pose: the new chin is higher than the recorded
  one, the case that leaves a hole under the chin;
* ``opening``: the reverse (the new chin lower: the head covers the recorded neck);
* ``same``: A = B (the composite should give the recorded frame back).

Per pair and neck-fill mode:

* **gap**: of the pixels under the new chin that the new head leaves uncovered (head in A,
  below B's jaw line between B's jaw points 3 and 13, and the person in the real frame B),
  those where the composite shows the
  background (background weight ``(1 - O)(1 - a) > 0.5``): count and percentage;
* **seam step**: across B's jaw line (neck columns), the mean RGB distance (0-255) between
  the 4 rows above and the 4 rows below, in the composite and in the real frame B;
* **halo**: fill pixels visible (``(1 - O) a > 0.5``) where the real frame B shows the
  background (a skin-coloured fringe beside a narrower new head);
* **neck error**: mean absolute difference (0-255) between the composite and the real frame B
  on the pixels between the two chins (head in A, below the head in B).

Usage:  python benchmarks/neck_seam.py DATASET [--pairs 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def _soft(mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    import cv2

    return np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma), 0, 1)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    iod = np.linalg.norm(points[:, 36:42].mean(1) - points[:, 42:48].mean(1), axis=1)
    return np.linalg.norm(points[:, 62] - points[:, 66], axis=1) / iod


def pairs(ds, n: int) -> dict[str, list[tuple[int, int]]]:
    op = mouth_opening(ds.landmarks)
    closed = np.flatnonzero(op < 0.05)
    open_ = np.argsort(op)[::-1][:n]
    closing = [(int(a), int(ds.nearest_frame(ds.camera_to_head[a], candidates=closed)))
               for a in open_]
    return {"closing": closing, "opening": [(b, a) for a, b in closing],
            "same": [(a, a) for a, _ in closing]}


def measure(ds, a: int, b: int, mode: str) -> dict:
    from jeancore.data.parsing import LABEL_HEAD, LABEL_TORSO, jaw_boundary
    from jeancore.render.fullframe import chin_gap, compose_full, seam_step, torso_layer

    fa, fb = ds.frame(a), ds.frame(b)
    la, lb = ds.labels(a), ds.labels(b)
    layer = torso_layer(fa, la, ds.landmarks[a], neck_fill=mode)
    op = _soft(lb == LABEL_HEAD)
    head = fb.astype(np.float32) / 255 * op[..., None]
    comp = compose_full(head, op, layer.rgb, layer.alpha, ds.background) * 255.0
    gap, region = chin_gap(op, layer.alpha, la, lb, ds.landmarks[b])
    # between the chins: head in A, torso (neck) in B
    h, w = lb.shape
    below = np.arange(h)[:, None] + 0.5 > jaw_boundary(ds.landmarks[b], w)[None, :]
    between = (la == LABEL_HEAD) & (lb == LABEL_TORSO) & below
    real = fb.astype(np.float32)
    # fill seen where the real frame B shows the background: a skin-coloured halo
    halo = int((layer.fill & ((1 - op) * layer.alpha > 0.5) & (lb == 0)).sum())
    return {"gap_px": gap, "region_px": region, "gap_pct": 100.0 * gap / max(1, region),
            "halo_px": halo,
            "seam_step": seam_step(comp, lb, ds.landmarks[b]),
            "seam_step_real": seam_step(real, lb, ds.landmarks[b]),
            "neck_err": float(np.abs(comp - real)[between].mean()) if between.any()
            else float("nan"), "between_px": int(between.sum())}


def main(argv=None):
    from jeancore.render.fullframe import NECK_FILLS, DatasetTorso

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--json")
    args = p.parse_args(argv)
    ds = DatasetTorso(args.dataset)
    table = {}
    print(f"{'case':8s} {'fill':8s} {'gap %':>7s} {'gap px':>7s} {'halo px':>7s} "
          f"{'seam':>6s} {'real':>6s} {'neck err':>8s}")
    for case, ps in pairs(ds, args.pairs).items():
        for mode in NECK_FILLS:
            rows = [measure(ds, a, b, mode) for a, b in ps]
            mean = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
            table[f"{case}/{mode}"] = {"pairs": ps, **mean}
            print(f"{case:8s} {mode:8s} {mean['gap_pct']:7.1f} {mean['gap_px']:7.0f} "
                  f"{mean['halo_px']:7.1f} "
                  f"{mean['seam_step']:6.1f} {mean['seam_step_real']:6.1f} "
                  f"{mean['neck_err']:8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=2)


if __name__ == "__main__":
    main()
