#!/usr/bin/env python
"""Render a synthetic scene with jeancore's fused ray-marching kernels and save a PNG.

The scene: two soft, coloured spheres ("head" and "nose") in front of a background image.
Rays come from a pinhole camera (OpenGL convention, as AD-NeRF's transforms files); each
pixel is rendered NeRF-style: coarse samples, compositing with the background as the last
opaque sample (JEAN suppl. 8.4), hierarchical fine samples from the coarse weights,
compositing again. The densities are analytic here; in JEAN they come from the conditioned
NeRF MLP.

    python examples/volume_render.py --size 128 --out render.png
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import jeancore.ops as ops


def scene(points: torch.Tensor):
    """Density [..] and colour [.., 3] of two soft spheres at `points` [.., 3]."""
    centres = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.1, 0.55]])
    radii = torch.tensor([0.5, 0.12])
    colours = torch.tensor([[0.85, 0.62, 0.48], [0.75, 0.45, 0.40]])
    dist = torch.linalg.vector_norm(points[..., None, :] - centres, dim=-1)  # [.., 2]
    density = 40.0 * torch.sigmoid((radii - dist) * 60.0)  # soft surfaces
    weights = density / density.sum(-1, keepdim=True).clamp_min(1e-6)
    return density.sum(-1), (weights[..., None] * colours).sum(-2)


def render(size: int, n_coarse: int, n_fine: int, device: str = "cpu"):
    fov = math.radians(30.0)
    focal = 0.5 * size / math.tan(0.5 * fov)
    c2w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 3.0]])
    v, u = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pixels = torch.stack([u, v], -1).reshape(-1, 2).float() + 0.5  # pixel centres
    rays_o, rays_d = ops.generate_rays(c2w, focal, focal, size / 2, size / 2, pixels)
    rays_o, rays_d = rays_o.to(device), rays_d.to(device)
    n = rays_o.shape[0]
    background = torch.linspace(0.2, 0.9, size).repeat_interleave(size)[:, None].expand(n, 3)
    background = (background * torch.tensor([0.6, 0.7, 1.0])).contiguous().to(device)

    t, points = ops.sample_along_rays(rays_o, rays_d, 2.0, 4.0, n_coarse)
    sigma, rgb = scene(points)
    _, _, _, weights = ops.composite(sigma, rgb, t, rays_d, background)
    t_all = ops.fine_samples(t, weights, n_fine)
    points = rays_o[:, None] + t_all[..., None] * rays_d[:, None]
    sigma, rgb = scene(points)
    color, depth, opacity, _ = ops.composite(sigma, rgb, t_all, rays_d, background)
    return color.reshape(size, size, 3), opacity.reshape(size, size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--coarse", type=int, default=64)
    ap.add_argument("--fine", type=int, default=128)
    ap.add_argument("--out", default="render.png")
    args = ap.parse_args()
    try:
        from PIL import Image
    except ImportError as exc:
        raise SystemExit("this example saves a PNG with Pillow: pip install pillow") from exc
    t0 = time.perf_counter()
    color, opacity = render(args.size, args.coarse, args.fine)
    dt = time.perf_counter() - t0
    image = (color.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    Image.fromarray(image).save(args.out)
    print(f"rendered {args.size}x{args.size} ({args.coarse}+{args.fine} samples per ray) in "
          f"{dt:.2f} s; foreground covers {float((opacity > 0.5).float().mean()):.1%} of the "
          f"image; wrote {args.out}")


if __name__ == "__main__":
    main()
