"""Camera rays and the coarse pass of ray marching (NeRF Sec. 4; JEAN Sec. 3.3)."""

from __future__ import annotations

import torch

from ._checks import as_tensor, check_floating, per_ray
from ._registry import OPS

__all__ = ["generate_rays", "sample_along_rays"]


def generate_rays(c2w, fx, fy, cx, cy, pixels, *, convention: str = "opengl"):
    """Camera rays through pixels of a pinhole camera.

    Args:
        c2w: camera-to-world (here: camera-to-canonical-head) transform, float tensor [3, 4] or
            [B, 3, 4]: rotation R = c2w[..., :3] and camera centre c2w[..., 3].
        fx, fy, cx, cy: intrinsics in pixels (Python numbers, or tensors [B] for batched c2w).
        pixels: float tensor [N, 2] or [B, N, 2] of pixel coordinates (u = column, v = row) in
            pixels, with (0, 0) the top-left corner of the top-left pixel. Add 0.5 for pixel
            centres; AD-NeRF uses integer coordinates.
        convention: how camera axes map to the image, for the camera-space direction of pixel
            (u, v), with x = (u - cx) / fx and y = (v - cy) / fy:
            ``"opengl"`` (default, as NeRF / AD-NeRF transforms files): camera looks down -z,
            y points up, direction (x, -y, -1);
            ``"opencv"``: camera looks down +z, y points down, direction (x, y, 1).

    Returns:
        (rays_o, rays_d): float tensors [N, 3] (for c2w [3, 4]) or [B, N, 3]. ``rays_d`` is NOT
        normalised: its camera-space depth component is 1, so a depth t along the ray is the
        z-depth in camera space (as NeRF / AD-NeRF; near/far are z-depths).
        ``composite`` multiplies intervals by |rays_d| to get metric distances.

    Raises:
        TypeError: non-tensor or non-floating c2w / pixels.
        ValueError: wrong shapes, or an unknown convention.
    """
    c2w = as_tensor("c2w", c2w)
    pixels = as_tensor("pixels", pixels)
    check_floating("c2w", c2w)
    check_floating("pixels", pixels)
    if convention not in ("opengl", "opencv"):
        raise ValueError(f"convention must be 'opengl' or 'opencv', got {convention!r}")
    if c2w.shape[-2:] != (3, 4) or c2w.dim() not in (2, 3):
        raise ValueError(f"c2w must be [3, 4] or [B, 3, 4], got {list(c2w.shape)}")
    if pixels.shape[-1] != 2 or pixels.dim() not in (2, 3):
        raise ValueError(f"pixels must be [N, 2] or [B, N, 2], got {list(pixels.shape)}")
    batched = c2w.dim() == 3
    if pixels.dim() == 3 and (not batched or pixels.shape[0] != c2w.shape[0]):
        raise ValueError(
            f"pixels [B, N, 2] needs c2w [B, 3, 4] with the same B; got pixels "
            f"{list(pixels.shape)} and c2w {list(c2w.shape)}")

    def intrinsic(v):
        v = torch.as_tensor(v, dtype=c2w.dtype, device=c2w.device)
        return v.reshape(-1, 1) if batched else v  # [B, 1] broadcasts over N

    fx, fy, cx, cy = (intrinsic(v) for v in (fx, fy, cx, cy))
    pixels = pixels.to(c2w.dtype)
    x = (pixels[..., 0] - cx) / fx
    y = (pixels[..., 1] - cy) / fy
    one = torch.ones_like(x)
    if convention == "opengl":
        dirs = torch.stack([x, -y, -one], dim=-1)
    else:
        dirs = torch.stack([x, y, one], dim=-1)
    rot = c2w[..., :3, :3]
    rays_d = torch.matmul(dirs, rot.transpose(-1, -2))  # d_world = R d_cam
    rays_o = c2w[..., None, :3, 3].expand_as(rays_d)
    return rays_o, rays_d


class _SampleAlongRays(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rays_o, rays_d, near, far, n_samples, jitter):
        t, points = OPS.sample_along_rays(rays_o, rays_d, near, far, n_samples, jitter)
        ctx.save_for_backward(t)
        ctx.mark_non_differentiable(t)
        ctx.set_materialize_grads(False)
        return t, points

    @staticmethod
    def backward(ctx, grad_t, grad_points):
        if grad_points is None:
            return None, None, None, None, None, None
        (t,) = ctx.saved_tensors
        grad_o = grad_points.sum(dim=1) if ctx.needs_input_grad[0] else None
        grad_d = (grad_points * t[..., None]).sum(dim=1) if ctx.needs_input_grad[1] else None
        return grad_o, grad_d, None, None, None, None


def sample_along_rays(rays_o, rays_d, near, far, n_samples: int, *, stratified: bool = False,
                      generator: torch.Generator | None = None):
    """Coarse samples along rays: depths between near and far, and the 3-D points there.

    NeRF's coarse sampling as in AD-NeRF / JEAN (Sec. 3.3, suppl. 8.4): with s_i = i / (S - 1),
    z_i = near (1 - s_i) + far s_i (evenly spaced, both ends included; z_0 = near when S = 1).
    With ``stratified=True`` each depth is drawn uniformly within its bin, the bins bounded by
    the midpoints between neighbouring z_i (NeRF's ``perturb``), so depths stay sorted.

    Args:
        rays_o: ray origins, float32/float64 [N, 3].
        rays_d: ray directions, [N, 3] (need not be unit length; t is in units of |rays_d|).
        near, far: per-ray bounds [N] (or [N, 1], a 0-d tensor, or a Python number), same units
            as t. near == far gives S copies of near.
        n_samples: S >= 1.
        stratified: jitter within bins (training) or not (evaluation).
        generator: torch.Generator on the rays' device, for reproducible jitter.

    Returns:
        (t [N, S], points [N, S, 3]) with points = rays_o + t * rays_d. Gradients flow from
        ``points`` to ``rays_o`` and ``rays_d``; none to near / far (t is not differentiable).
        NaN in a ray's inputs propagates to that ray's outputs (not checked).

    Raises:
        TypeError: non-tensor inputs, or dtype not float32/float64 (or mixed dtypes).
        ValueError: shapes that do not match [N, 3] / [N], n_samples < 1, inputs on different
            devices.
    """
    rays_o = as_tensor("rays_o", rays_o).contiguous()
    rays_d = as_tensor("rays_d", rays_d).contiguous()
    n = rays_o.shape[0] if rays_o.dim() >= 1 else 0
    near = per_ray("near", near, rays_o, n)
    far = per_ray("far", far, rays_o, n)
    if not isinstance(n_samples, int) or isinstance(n_samples, bool):
        raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__}")
    jitter = None
    if stratified and n_samples > 0:
        jitter = torch.rand((n, n_samples), generator=generator, dtype=rays_o.dtype,
                            device=rays_o.device)
    return _SampleAlongRays.apply(rays_o, rays_d, near, far, n_samples, jitter)
