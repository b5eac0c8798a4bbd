#!/usr/bin/env python
"""Occupancy-grid ray marching + packed compositing vs dense sampling + compositing, on a
real preprocessed head.

The occupancy grid (``OccupancyGrid``, 128^3 over the tracked head sphere's bounding cube) is
fitted to the clip's head masks: a cell is occupied iff its centre lies in the tracked head
sphere and projects onto the head (parsing label 2, dilated by --mask-dilate pixels) in every
sampled frame whose image it falls in (a visual hull; a near-frontal clip leaves it deep along
the viewing direction, where a trained density grid would be thinner); cells no camera of the
clip sees are marked with ``mark_invisible``. A synthetic radiance field stands in for the
network: density 40 / dm inside the hull (trilinear in a 3x3x3-smoothed copy), a smooth colour
pattern. The grid is the hull dilated by two cells, which covers the field's whole support, so
skipping must not change the colours. Rays: --rays random pixels of one frame (timing) and every pixel at
--image-stride (colour difference).

Compared at equal step size (the dense spacing (far - near) / (S - 1) along unit rays):
  dense:  ``sample_along_rays`` (S samples between near and far) + field + ``composite``
          (last_sample_is_background=False);
  packed: ``march_rays`` through the grid + field at the interval midpoints +
          ``composite_packed``; also with every cell occupied (no skipping), which separates
          the quadrature difference (sample points vs interval midpoints) from the skipping.
Reported: samples per ray, time per ray of the sampling, the compositing (forward + backward of
an MSE on colour) and the whole step with the field, and the colour differences (mean / max
abs, PSNR of one render against the other). Results: markdown on stdout, JSON in --out.

Usage: python benchmarks/bench_marching.py DATA [--device cpu|cuda] [--samples 128]
                                                [--rays 8192] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as nnf

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import machine_info, median_time  # noqa: E402

import jeancore.ops as ops  # noqa: E402


def load_head(data: pathlib.Path, frames: int, dilate: int):
    """Cameras, intrinsics and head masks of a preprocessed clip (tracking.npz, parsing/)."""
    from PIL import Image
    from scipy.ndimage import binary_dilation

    z = np.load(data / "tracking.npz")
    c2w = torch.from_numpy(np.ascontiguousarray(z["camera_to_head"], np.float32))
    h, w = (int(v) for v in z["image_size"])
    parsing = sorted((data / "parsing").glob("*.png"))
    if len(parsing) != c2w.shape[0]:
        raise SystemExit(f"{data}: {len(parsing)} parsing maps for {c2w.shape[0]} cameras")
    pick = np.linspace(0, len(parsing) - 1, min(frames, len(parsing))).round().astype(int)
    masks = []
    for i in pick:
        m = np.array(Image.open(parsing[i])) == 2
        if dilate > 0:
            m = binary_dilation(m, iterations=dilate)
        masks.append(torch.from_numpy(m))
    return dict(c2w=c2w, pick=torch.from_numpy(pick), masks=torch.stack(masks),
                focal=float(z["focal"]), cx=float(z["cx"]), cy=float(z["cy"]), h=h, w=w,
                near=float(z["near"]), far=float(z["far"]),
                center=torch.from_numpy(np.asarray(z["head_center"], np.float32)),
                radius=float(z["head_radius"]))


def visual_hull(grid: ops.OccupancyGrid, head) -> torch.Tensor:
    """Cells whose centre falls on the head mask in every sampled frame that sees it."""
    centres = grid.cell_centers()
    hull = torch.ones(centres.shape[0], dtype=torch.bool)
    for cam, mask in zip(head["c2w"][head["pick"]], head["masks"]):
        p = (centres - cam[:3, 3]) @ cam[:3, :3]  # OpenGL camera axes
        z = -p[:, 2]
        u = head["focal"] * p[:, 0] / z + head["cx"]
        v = -head["focal"] * p[:, 1] / z + head["cy"]
        inside = (z > 0) & (u >= 0) & (u < head["w"]) & (v >= 0) & (v < head["h"])
        on_head = torch.zeros_like(hull)
        ui, vi = u[inside].long(), v[inside].long()
        on_head[inside] = mask[vi, ui]
        hull &= on_head | ~inside
    return hull.view_as(grid.occupied)


class SyntheticHead:
    """Density 40 / dm in the smoothed hull (trilinear), a smooth colour pattern."""

    def __init__(self, hull: torch.Tensor, aabb: torch.Tensor, device):
        vol = nnf.avg_pool3d(hull.float()[None, None], 3, stride=1, padding=1)
        # grid_sample's volume axes are (D, H, W) = (z, y, x); ours is [x, y, z]
        self.vol = vol.permute(0, 1, 4, 3, 2).contiguous().to(device)
        self.lo, self.size = aabb[:3].float().to(device), (aabb[3:] - aabb[:3]).float().to(device)

    def __call__(self, points: torch.Tensor):
        u = (points.float() - self.lo) / self.size * 2 - 1  # grid_sample's [-1, 1], x first
        dens = nnf.grid_sample(self.vol, u.view(1, -1, 1, 1, 3), align_corners=False,
                               padding_mode="zeros").view(-1)
        sigma = 40.0 * dens
        rgb = 0.5 + 0.5 * torch.sin(points.float() * torch.tensor([3.0, 5.0, 7.0], device=points.device)
                                    + torch.tensor([0.0, 1.0, 2.0], device=points.device))
        return sigma.to(points.dtype), rgb.to(points.dtype)


def camera_rays(head, frame: int, pixels: torch.Tensor):
    """Unit rays of one frame's camera through pixel centres, with per-ray near / far scaled so
    that t is a metric distance (the datasets' near / far are z-depths)."""
    c2w = head["c2w"][frame, :3, :4]
    f, cx, cy = head["focal"], head["cx"], head["cy"]
    o, d = ops.generate_rays(c2w, f, f, cx, cy, pixels + 0.5)
    norm = d.norm(dim=-1)
    return o.contiguous(), (d / norm[:, None]).contiguous(), head["near"] * norm, head["far"] * norm


def render_dense(field, o, d, near, far, n_samples, bg):
    t, pts = ops.sample_along_rays(o, d, near, far, n_samples)
    sigma, rgb = field(pts.reshape(-1, 3))
    return ops.composite(sigma.view(t.shape), rgb.view(*t.shape, 3), t, d, bg,
                         last_sample_is_background=False)[0]


def render_packed(field, o, d, near, far, occupancy, aabb, step, bg):
    ri, ts, te = ops.march_rays(o, d, near, far, occupancy, aabb, step)
    pts = o[ri] + d[ri] * ((ts + te) * 0.5)[:, None]
    sigma, rgb = field(pts)
    return ops.composite_packed(sigma, rgb, ts, te, ri, o.shape[0], background=bg)[0], ri.numel()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=pathlib.Path, help="a folder written by `jean preprocess`")
    ap.add_argument("--device", default="cuda" if ops.cuda_available() else "cpu")
    ap.add_argument("--samples", type=int, default=128, help="dense samples per ray (S)")
    ap.add_argument("--rays", type=int, default=8192, help="rays per timed step")
    ap.add_argument("--resolution", type=int, default=128, help="occupancy grid R")
    ap.add_argument("--hull-frames", type=int, default=50)
    ap.add_argument("--mask-dilate", type=int, default=3, help="pixels")
    ap.add_argument("--frame", type=int, default=0, help="the camera the rays come from")
    ap.add_argument("--image-stride", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None
    out_path = pathlib.Path(args.out or REPO / "benchmarks" / "results" / f"marching_{device.type}.json")

    head = load_head(args.data, args.hull_frames, args.mask_dilate)
    r = head["radius"]
    aabb = torch.cat([head["center"] - r, head["center"] + r]).double()
    grid = ops.OccupancyGrid(aabb, args.resolution)
    visible = grid.mark_invisible(head["c2w"], (head["focal"], head["focal"], head["cx"], head["cy"]),
                                  (head["h"], head["w"]), head["near"], head["far"])
    in_sphere = (grid.cell_centers() - head["center"]).norm(dim=-1) <= r
    hull = visual_hull(grid, head) & in_sphere.view_as(grid.occupied)
    # the field's density reaches two cells beyond the hull (smoothing + trilinear lookup)
    occupied = nnf.max_pool3d(hull.float()[None, None], 5, stride=1, padding=2)[0, 0] > 0
    occupied &= grid.visible
    grid.occupied.copy_(occupied)
    grid = grid.to(device)
    field = SyntheticHead(hull, aabb, device)
    box = aabb.tolist()
    bg = torch.ones(3, device=device)
    full = torch.ones_like(grid.occupied)

    # rays: random pixels (timing) and the whole image at a stride (colour difference)
    g = torch.Generator().manual_seed(0)
    h, w = head["h"], head["w"]
    pix = torch.stack([torch.randint(0, w, (args.rays,), generator=g),
                       torch.randint(0, h, (args.rays,), generator=g)], -1).float()
    o, d, near, far = (x.to(device) for x in camera_rays(head, args.frame, pix))
    step = float((far - near).mean()) / (args.samples - 1)
    s = args.samples

    ri, ts, te = ops.march_rays(o, d, near, far, grid.occupied, box, step)
    n_packed = ri.numel()
    target = torch.rand(args.rays, 3, generator=g).to(device)

    def dense_sampling():
        return ops.sample_along_rays(o, d, near, far, s)

    def packed_sampling():
        return ops.march_rays(o, d, near, far, grid.occupied, box, step)

    t_dense, pts_dense = dense_sampling()
    sig_d, rgb_d = field(pts_dense.reshape(-1, 3))
    sig_d, rgb_d = sig_d.view(args.rays, s), rgb_d.view(args.rays, s, 3)
    pts_p = o[ri] + d[ri] * ((ts + te) * 0.5)[:, None]
    sig_p, rgb_p = field(pts_p)

    def dense_composite():
        a, b = sig_d.detach().requires_grad_(), rgb_d.detach().requires_grad_()
        color = ops.composite(a, b, t_dense, d, bg.expand(args.rays, 3), last_sample_is_background=False)[0]
        return torch.autograd.grad(((color - target) ** 2).mean(), [a, b])

    def packed_composite():
        a, b = sig_p.detach().requires_grad_(), rgb_p.detach().requires_grad_()
        color = ops.composite_packed(a, b, ts, te, ri, args.rays, background=bg)[0]
        return torch.autograd.grad(((color - target) ** 2).mean(), [a, b])

    def dense_step():
        return render_dense(field, o, d, near, far, s, bg.expand(args.rays, 3))

    def packed_step():
        return render_packed(field, o, d, near, far, grid.occupied, box, step, bg)[0]

    timings = {}
    for name, fn in (("dense sampling (sample_along_rays)", dense_sampling),
                     ("packed sampling (march_rays)", packed_sampling),
                     ("dense compositing fwd+bwd (composite)", dense_composite),
                     ("packed compositing fwd+bwd (composite_packed)", packed_composite),
                     ("dense render (sampling + field + composite fwd)", dense_step),
                     ("packed render (march + field + composite_packed fwd)", packed_step)):
        t, _, _ = median_time(fn, args.repeats, sync=sync)
        timings[name] = t
        print(f"{name:55s} {t * 1e3:9.2f} ms  {t / args.rays * 1e6:8.3f} us/ray", file=sys.stderr)

    # colour difference over the whole image (chunks of rays)
    yy, xx = torch.meshgrid(torch.arange(0, h, args.image_stride), torch.arange(0, w, args.image_stride),
                            indexing="ij")
    pix_all = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1).float()
    colours = {"dense": [], "packed": [], "packed, no skipping": []}
    counts = {"packed": 0, "packed, no skipping": 0}
    with torch.no_grad():
        for chunk in pix_all.split(16384):
            oc, dc, nc, fc = (x.to(device) for x in camera_rays(head, args.frame, chunk))
            colours["dense"].append(render_dense(field, oc, dc, nc, fc, s, bg.expand(len(chunk), 3)))
            for key, occ in (("packed", grid.occupied), ("packed, no skipping", full)):
                col, m = render_packed(field, oc, dc, nc, fc, occ, box, step, bg)
                colours[key].append(col)
                counts[key] += m
    colours = {k: torch.cat(v).float().cpu() for k, v in colours.items()}

    def diff(a, b):
        e = (colours[a] - colours[b]).abs()
        mse = float((e ** 2).mean())
        return dict(mean_abs=float(e.mean()), max_abs=float(e.max()),
                    psnr_db=float("inf") if mse == 0 else -10 * math.log10(mse))

    n_img = pix_all.shape[0]
    diffs = {"packed vs dense": diff("packed", "dense"),
             "packed, no skipping vs dense (quadrature only)": diff("packed, no skipping", "dense"),
             "packed vs packed, no skipping (skipping only)": diff("packed", "packed, no skipping")}
    head_rays = float((colours["dense"] - 1).abs().sum(-1).gt(1e-3).float().mean())

    info = machine_info()
    info.update(device=str(device), repeats=args.repeats,
                command="python benchmarks/bench_marching.py " + " ".join(argv or sys.argv[1:]))
    result = dict(
        machine=info,
        grid=dict(resolution=args.resolution, aabb=box, fraction_occupied=grid.fraction_occupied,
                  fraction_visible=visible, hull_frames=args.hull_frames),
        step=step, dense_samples_per_ray=s, rays=args.rays,
        packed_samples_per_ray=n_packed / args.rays,
        image=dict(rays=n_img, packed_samples_per_ray=counts["packed"] / n_img,
                   no_skip_samples_per_ray=counts["packed, no skipping"] / n_img,
                   share_of_rays_on_the_head=head_rays),
        time_s=timings, colour_difference=diffs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2))

    print(f"\n{info['date']} · {info.get('gpu') if cuda else info['cpu']} · torch {info['torch']}"
          f" · {info['torch_threads']} threads · device {device} · median of {args.repeats}\n")
    print(f"Grid {args.resolution}^3 over the head cube (side {2 * r:.2f} dm): "
          f"{100 * grid.fraction_occupied:.1f} % of cells occupied, {100 * visible:.1f} % visible. "
          f"Step {step:.4f} dm (dense S = {s}).\n")
    print(f"Samples per ray: dense {s}, packed {n_packed / args.rays:.1f} ({args.rays} random "
          f"pixels); whole image: packed {counts['packed'] / n_img:.1f}, without skipping "
          f"{counts['packed, no skipping'] / n_img:.1f} ({100 * head_rays:.0f} % of the rays "
          "see the head).\n")
    print("| step | ms | us / ray | dense / packed |")
    print("|---|---:|---:|---:|")
    names = list(timings)
    for i in range(0, len(names), 2):
        for k in (names[i], names[i + 1]):
            ratio = timings[names[i]] / timings[names[i + 1]]
            print(f"| {k} | {timings[k] * 1e3:.2f} | {timings[k] / args.rays * 1e6:.3f} | "
                  f"{f'{ratio:.1f}x' if k == names[i + 1] else ''} |")
    print("\n| colours (whole image, in [0, 1]) | mean abs | max abs | PSNR dB |")
    print("|---|---:|---:|---:|")
    for k, v in diffs.items():
        print(f"| {k} | {v['mean_abs']:.2e} | {v['max_abs']:.2e} | {v['psnr_db']:.1f} |")
    print(f"\nJSON: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
