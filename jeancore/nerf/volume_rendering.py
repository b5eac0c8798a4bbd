"""Volume rendering of JEAN's NeRF, the parts every backbone shares (NeRF Sec. 4-5; JEAN
Sec. 3.3, suppl. 8.4.2).

* :class:`RayOps` -- the ray operations with one of two interchangeable back ends with the
  same random draws: ``"fused"`` (the C++/CUDA kernels of :mod:`jeancore.ops`) and
  ``"reference"`` (their pure-PyTorch references in :mod:`jeancore.ops.reference`), so the
  end-to-end speed of the kernels can be measured on the same model
  (``benchmarks/bench_nerf.py``) and the two paths compared value for value
  (``python_tests/test_nerf_model.py``).
* :class:`RenderedRays` -- what a backbone's ``render_rays`` returns, whatever the backbone.
* :class:`HierarchicalSampler` -- NeRF's coarse + fine sampling: coarse samples -> coarse
  field -> compositing -> inverse transform sampling -> fine field -> compositing (the
  sampler of the AD-NeRF backbone, :mod:`jeancore.models.adnerf`).
* :func:`render_image` -- one frame through any backbone, in bounded ray chunks.

The last sample of every ray is the background (JEAN suppl. 8.4.2, AD-NeRF): its colour is
the background pixel behind the ray and it is opaque
(``composite(..., last_sample_is_background=True)``).

The backbone seam (``docs/nerf.md``): a *field* maps points, view directions and the
condition e_in to colour and density; a *sampler* chooses the samples along the rays,
evaluates the field there through a :data:`SampleFn` the backbone gives it, and composites;
a *backbone* (:class:`jeancore.models.backbone.Backbone`) is its fields + its sampler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .. import ops
from ..errors import ConfigError
from ..ops import reference as ref
from ..ops.pdf import inverse_transform_uniforms

__all__ = ["OPS_BACKENDS", "HierarchicalSampler", "RayOps", "RenderedRays", "SampleFn",
           "render_image"]

OPS_BACKENDS = ("fused", "reference")

SampleFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""What a sampler calls to evaluate a field: ``fn(points, dirs) -> (rgb, sigma)`` with points
float [N, S, 3] in the head space (decimetres; the backbone normalises them, adds the
condition and the training noise) and dirs the rays' unit directions [N, 3]; rgb [N, S, 3]
in (0, 1) and the raw density sigma [N, S] (compositing applies the ReLU), in the points'
dtype."""


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
        u = inverse_transform_uniforms(t.shape[0], n_fine, stratified, generator, weights)
        return ref.fine_samples_reference(t, weights, u)

    def composite(self, sigma, rgb, t, rays_d, background):
        """(color [N, 3], depth [N], opacity [N], weights [N, S]), last sample = background."""
        if self.backend == "fused":
            return ops.composite(sigma, rgb, t, rays_d, background,
                                 last_sample_is_background=True)
        return ref.composite_reference(sigma, rgb, t, rays_d, background,
                                       last_sample_is_background=True)


@dataclass
class RenderedRays:
    """The result of rendering N rays, the same for every backbone.

    Attributes:
        rgb: float32 [N, 3] in [0, 1], the colour of each ray (over its background).
        opacity: float32 [N] in [0, 1], how much of the ray the head covers.
        depth: float32 [N], expected z-depth of the ray's termination (decimetres).
        samples_per_ray: int64 [N], how many samples the field(s) were evaluated at per ray
            (statistics; fixed for hierarchical sampling, varying for packed samples).
        extras: backbone-specific results, e.g. AD-NeRF's ``rgb_coarse``, ``depth_coarse``,
            ``opacity_coarse`` (the coarse pass, for its loss).
    """

    rgb: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    samples_per_ray: torch.Tensor
    extras: dict = field(default_factory=dict)


@dataclass
class HierarchicalSampler:
    """NeRF's hierarchical sampling (NeRF Sec. 5.2; AD-NeRF's ``render_rays``): ``n_coarse``
    evenly spaced depths (stratified jitter in training) for the coarse field, compositing,
    ``n_fine`` depths drawn by inverse transform sampling of the coarse weights, and the fine
    field at all ``n_coarse + n_fine`` sorted depths.

    Args:
        n_coarse: coarse samples per ray (>= 3).
        n_fine: fine samples per ray (0: the coarse pass only).

    Raises:
        ConfigError: n_coarse < 3 or n_fine < 0.
    """

    n_coarse: int = 64
    n_fine: int = 128

    def __post_init__(self):
        if isinstance(self.n_coarse, bool) or int(self.n_coarse) != self.n_coarse \
                or self.n_coarse < 3:
            raise ConfigError(f"n_coarse must be >= 3 (hierarchical sampling), got "
                              f"{self.n_coarse}")
        if isinstance(self.n_fine, bool) or int(self.n_fine) != self.n_fine or self.n_fine < 0:
            raise ConfigError(f"n_fine must be an integer >= 0, got {self.n_fine}")

    def __call__(self, coarse: SampleFn, fine: SampleFn, rays_o: torch.Tensor,
                 rays_d: torch.Tensor, near, far, background: torch.Tensor, *,
                 stratified: bool, generator: torch.Generator | None,
                 ray_ops: RayOps) -> RenderedRays:
        """Render rays through the coarse field and, when ``n_fine > 0``, the fine field.

        Args:
            coarse, fine: the fields as :data:`SampleFn`.
            rays_o, rays_d: float [N, 3] in the canonical head space (``rays_d`` with unit
                camera-space depth, so that ``t`` is the z-depth).
            near, far: z-depth bounds (decimetres): numbers, 0-d tensors or [N].
            background: float [N, 3] or [3] in [0, 1], the colour of each ray's last sample.
            stratified: jitter the coarse depths and stratify the fine uniforms (training).
            generator: torch.Generator on the rays' device for those draws.
            ray_ops: the back end.

        Returns:
            :class:`RenderedRays`: the fine pass in ``rgb`` / ``depth`` / ``opacity`` (the
            coarse pass itself, the very same tensors, when ``n_fine`` is 0) and the coarse
            pass in ``extras`` (``rgb_coarse``, ``depth_coarse``, ``opacity_coarse``).
        """
        dirs = F.normalize(rays_d, dim=-1)
        t, pts = ray_ops.sample_along_rays(rays_o, rays_d, near, far, self.n_coarse,
                                           stratified, generator)
        rgb, sigma = coarse(pts, dirs)
        color, depth, opac, weights = ray_ops.composite(sigma, rgb, t, rays_d, background)
        extras = {"rgb_coarse": color, "depth_coarse": depth, "opacity_coarse": opac}
        n = rays_o.shape[0]
        if self.n_fine == 0:
            return RenderedRays(color, opac, depth, _counts(n, self.n_coarse, rays_o), extras)
        t2 = ray_ops.fine_samples(t, weights, self.n_fine, stratified, generator)
        pts2 = rays_o[:, None, :] + t2[..., None] * rays_d[:, None, :]
        rgb2, sigma2 = fine(pts2, dirs)
        color2, depth2, opac2, _ = ray_ops.composite(sigma2, rgb2, t2, rays_d, background)
        return RenderedRays(color2, opac2, depth2,
                            _counts(n, 2 * self.n_coarse + self.n_fine, rays_o), extras)


def _counts(n: int, k: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), k, dtype=torch.int64, device=like.device)


@torch.no_grad()
def render_image(backbone, camera_to_head: torch.Tensor, intrinsics, size: int, near: float,
                 far: float, cond: torch.Tensor | None, background, *, chunk_rays: int = 8192,
                 ray_ops: RayOps | None = None, amp: bool = False, stop=None,
                 return_opacity: bool = False, **sampling):
    """Render one frame, ``chunk_rays`` rays at a time (memory bounded by the chunk).

    Args:
        backbone: a :class:`~jeancore.models.backbone.Backbone` (evaluated as it is; call
            ``eval()`` yourself if needed).
        camera_to_head: float [4, 4] or [3, 4] camera-to-head transform (OpenGL axes, dm).
        intrinsics: (fx, fy, cx, cy) in pixels at ``size``.
        size: image side (pixels).
        near, far: z-depth bounds (decimetres).
        cond: e_in of the frame, float [cond_dim].
        background: float [size, size, 3] or [3] in [0, 1] (the last sample of each ray).
        chunk_rays: rays per backbone pass.
        ray_ops: the back end (default: fused kernels).
        amp: bfloat16 autocast of the fields on CUDA.
        stop: optional callable; when it returns True rendering stops early (KeyboardInterrupt).
        return_opacity: also return the opacity (how much of each pixel the head covers).
        **sampling: the backbone's sampling settings for this frame (e.g. AD-NeRF's
            ``n_coarse``, ``n_fine``; default: the backbone's own, deterministic).

    Returns:
        float32 [size, size, 3] in [0, 1] on the backbone's device; with ``return_opacity``
        the pair (that image, float32 [size, size] opacity in [0, 1]).
    """
    from .data import pixel_grid

    dev = backbone.center.device
    c2w = torch.as_tensor(camera_to_head, dtype=torch.float32, device=dev)[:3, :4]
    pix = pixel_grid(size, size, dev)
    fx, fy, cx, cy = intrinsics
    rays_o, rays_d = ops.generate_rays(c2w, fx, fy, cx, cy, pix)
    bg = torch.as_tensor(background, dtype=torch.float32, device=dev)
    bg = bg.reshape(-1, 3) if bg.dim() == 3 else bg
    out = torch.empty(pix.shape[0], 3, device=dev)
    opacity = torch.empty(pix.shape[0], device=dev) if return_opacity else None
    for s in range(0, pix.shape[0], chunk_rays):
        if stop is not None and stop():
            raise KeyboardInterrupt
        e = min(pix.shape[0], s + chunk_rays)
        r = backbone.render_rays(rays_o[s:e].contiguous(), rays_d[s:e].contiguous(), near, far,
                                 cond, bg[s:e] if bg.dim() == 2 else bg, training=False,
                                 ray_ops=ray_ops, amp=amp, **sampling)
        out[s:e] = r.rgb
        if opacity is not None:
            opacity[s:e] = r.opacity
    img = out.reshape(size, size, 3).clamp_(0, 1)
    if opacity is None:
        return img
    return img, opacity.reshape(size, size).clamp_(0, 1)
