"""Volume rendering of JEAN's NeRF: coarse samples -> coarse network -> compositing ->
inverse transform sampling -> fine network -> compositing (NeRF Sec. 4-5; JEAN Sec. 3.3,
suppl. 8.4.2).

The ray operations come in two interchangeable back ends with the same random draws:
``"fused"`` (the C++/CUDA kernels of :mod:`jeancore.ops`) and ``"reference"`` (their
pure-PyTorch references in :mod:`jeancore.ops.reference`), so the end-to-end speed of the
kernels can be measured on the same model (``benchmarks/bench_nerf.py``) and the two paths
compared value for value (``python_tests/test_nerf_model.py``).

The last sample of every ray is the background (JEAN suppl. 8.4.2, AD-NeRF): its colour is
the background pixel behind the ray and it is opaque
(``composite(..., last_sample_is_background=True)``).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .. import ops
from ..errors import ConfigError
from ..ops import reference as ref
from ..ops.pdf import _uniforms
from .model import NerfModel

__all__ = ["OPS_BACKENDS", "RayOps", "render_image", "render_rays"]

OPS_BACKENDS = ("fused", "reference")


class RayOps:
    """Ray sampling, inverse transform sampling and compositing with one back end.

    Both back ends draw their random numbers identically (same shapes, same order, from the
    same ``generator``), so with equal generator states they give the same samples.

    Args:
        backend: ``"fused"`` (jeancore.ops kernels) or ``"reference"`` (pure PyTorch).

    Raises:
        ConfigError: unknown backend.
    """

    def __init__(self, backend: str = "fused"):
        if backend not in OPS_BACKENDS:
            raise ConfigError(f"ops backend must be one of {OPS_BACKENDS}, got {backend!r}")
        self.backend = backend

    def sample_along_rays(self, rays_o, rays_d, near, far, n, stratified, generator):
        """Coarse depths t [N, n] and points [N, n, 3] (see ``jeancore.ops.sample_along_rays``)."""
        if self.backend == "fused":
            return ops.sample_along_rays(rays_o, rays_d, near, far, n, stratified=stratified,
                                         generator=generator)
        n_rays = rays_o.shape[0]
        near = torch.as_tensor(near, dtype=rays_o.dtype, device=rays_o.device).expand(n_rays)
        far = torch.as_tensor(far, dtype=rays_o.dtype, device=rays_o.device).expand(n_rays)
        jitter = None
        if stratified:
            jitter = torch.rand((rays_o.shape[0], n), generator=generator, dtype=rays_o.dtype,
                                device=rays_o.device)
        return ref.sample_along_rays_reference(rays_o, rays_d, near, far, n, jitter)

    def fine_samples(self, t, weights, n_fine, stratified, generator):
        """Sorted union of the coarse depths and ``n_fine`` depths drawn by inverse transform
        sampling of the coarse weights (``jeancore.ops.fine_samples``): [N, S + n_fine]."""
        if self.backend == "fused":
            return ops.fine_samples(t, weights, n_fine, stratified=stratified,
                                    generator=generator)
        t, weights = t.detach(), weights.detach()
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        u = _uniforms(t.shape[0], n_fine, stratified, generator, weights)
        t_fine = ref.sample_pdf_reference(mids, weights[:, 1:-1], u)
        return torch.sort(torch.cat([t, t_fine], -1), -1).values

    def composite(self, sigma, rgb, t, rays_d, background):
        """(color [N, 3], depth [N], opacity [N], weights [N, S]), last sample = background."""
        if self.backend == "fused":
            return ops.composite(sigma, rgb, t, rays_d, background,
                                 last_sample_is_background=True)
        return ref.composite_reference(sigma, rgb, t, rays_d, background,
                                       last_sample_is_background=True)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _evaluate(mlp, model: NerfModel, points, dirs, cond, amp, noise, generator):
    with _autocast(points.device, amp):
        rgb, sigma = mlp(model.normalize(points), dirs, cond)
    rgb, sigma = rgb.to(points.dtype), sigma.to(points.dtype)  # compositing in full precision
    if noise > 0:
        sigma = sigma + noise * torch.randn(sigma.shape, generator=generator,
                                            device=sigma.device, dtype=sigma.dtype)
    return rgb, sigma


def render_rays(model: NerfModel, rays_o: torch.Tensor, rays_d: torch.Tensor, near, far,
                cond: torch.Tensor | None, background: torch.Tensor, *, n_coarse: int = 64,
                n_fine: int = 128, stratified: bool = False,
                generator: torch.Generator | None = None, ray_ops: RayOps | None = None,
                amp: bool = False, density_noise: float = 0.0, fine: bool = True) -> dict:
    """Render rays through the coarse and fine networks (NeRF's hierarchical sampling).

    Args:
        model: the coarse and fine F_theta and the head sphere (:class:`NerfModel`).
        rays_o, rays_d: ray origins and directions in the canonical head space, float32
            [N, 3] (decimetres; ``rays_d`` as ``jeancore.ops.generate_rays`` makes it, with unit
            camera-space depth, so that ``t`` is the z-depth).
        near, far: z-depth bounds (decimetres): numbers, 0-d tensors or [N].
        cond: e_in float [cond_dim] (all rays) or [N, cond_dim].
        background: colour of the background behind each ray, float [N, 3] or [3] in [0, 1]
            (the last sample of each ray).
        n_coarse: coarse samples per ray (>= 3), evenly spaced in depth (stratified in training).
        n_fine: samples drawn by inverse transform sampling of the coarse weights; the fine
            network is evaluated at all n_coarse + n_fine depths.
        stratified: jitter the coarse depths and stratify the fine uniforms (training).
        generator: torch.Generator on the rays' device for those draws (and the density noise).
        ray_ops: :class:`RayOps` (default: fused kernels).
        amp: run the MLPs in bfloat16 autocast on CUDA (ignored on CPU); compositing is float32.
        density_noise: std of Gaussian noise added to the raw densities (NeRF's
            ``raw_noise_std``; 0 = off).
        fine: also run the fine pass.

    Returns:
        dict with ``rgb_coarse`` [N, 3], ``depth_coarse`` [N], ``opacity_coarse`` [N] and,
        with ``fine``, ``rgb_fine``, ``depth_fine``, ``opacity_fine`` (float32; colours in
        [0, 1], depths in decimetres along the camera axis, opacities of the head in [0, 1]).
    """
    ray_ops = ray_ops or RayOps("fused")
    if n_coarse < 3:
        raise ConfigError(f"n_coarse must be >= 3 (hierarchical sampling), got {n_coarse}")
    dirs = F.normalize(rays_d, dim=-1)
    t, pts = ray_ops.sample_along_rays(rays_o, rays_d, near, far, n_coarse, stratified,
                                       generator)
    rgb, sigma = _evaluate(model.coarse, model, pts, dirs, cond, amp, density_noise, generator)
    color, depth, opac, weights = ray_ops.composite(sigma, rgb, t, rays_d, background)
    out = {"rgb_coarse": color, "depth_coarse": depth, "opacity_coarse": opac}
    if fine and n_fine > 0:
        t2 = ray_ops.fine_samples(t, weights, n_fine, stratified, generator)
        pts2 = rays_o[:, None, :] + t2[..., None] * rays_d[:, None, :]
        rgb2, sigma2 = _evaluate(model.fine, model, pts2, dirs, cond, amp, density_noise,
                                 generator)
        color2, depth2, opac2, _ = ray_ops.composite(sigma2, rgb2, t2, rays_d, background)
        out.update(rgb_fine=color2, depth_fine=depth2, opacity_fine=opac2)
    return out


@torch.no_grad()
def render_image(model: NerfModel, camera_to_head: torch.Tensor, intrinsics, size: int,
                 near: float, far: float, cond: torch.Tensor | None, background, *,
                 n_coarse: int = 64, n_fine: int = 128, chunk_rays: int = 8192,
                 ray_ops: RayOps | None = None, amp: bool = False, stop=None) -> torch.Tensor:
    """Render one frame, ``chunk_rays`` rays at a time (memory bounded by the chunk).

    Args:
        model: :class:`NerfModel` (evaluated as it is; call ``eval()`` yourself if needed).
        camera_to_head: float [4, 4] or [3, 4] camera-to-head transform (OpenGL axes, dm).
        intrinsics: (fx, fy, cx, cy) in pixels at ``size``.
        size: image side (pixels).
        near, far: z-depth bounds (decimetres).
        cond: e_in of the frame, float [cond_dim].
        background: float [size, size, 3] or [3] in [0, 1] (the last sample of each ray).
        n_coarse, n_fine: samples per ray (deterministic, no jitter).
        chunk_rays: rays per network pass.
        stop: optional callable; when it returns True rendering stops early (KeyboardInterrupt).

    Returns:
        float32 [size, size, 3] in [0, 1] on the model's device (the fine pass, or the coarse
        one when n_fine is 0).
    """
    from .data import pixel_grid

    dev = model.center.device
    c2w = torch.as_tensor(camera_to_head, dtype=torch.float32, device=dev)[:3, :4]
    pix = pixel_grid(size, size, dev)
    fx, fy, cx, cy = intrinsics
    rays_o, rays_d = ops.generate_rays(c2w, fx, fy, cx, cy, pix)
    bg = torch.as_tensor(background, dtype=torch.float32, device=dev)
    bg = bg.reshape(-1, 3) if bg.dim() == 3 else bg
    out = torch.empty(pix.shape[0], 3, device=dev)
    key = "rgb_fine" if n_fine > 0 else "rgb_coarse"
    for s in range(0, pix.shape[0], chunk_rays):
        if stop is not None and stop():
            raise KeyboardInterrupt
        e = min(pix.shape[0], s + chunk_rays)
        r = render_rays(model, rays_o[s:e].contiguous(), rays_d[s:e].contiguous(), near, far,
                        cond, bg[s:e] if bg.dim() == 2 else bg, n_coarse=n_coarse,
                        n_fine=n_fine, ray_ops=ray_ops, amp=amp, fine=n_fine > 0)
        out[s:e] = r[key]
    return out.reshape(size, size, 3).clamp_(0, 1)
