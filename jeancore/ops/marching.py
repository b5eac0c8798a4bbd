"""Ray marching with empty-space skipping through an occupancy grid (Instant-NGP Sec. 4,
nerfacc's ``OccGridEstimator``, RAD-NeRF's density grid)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import as_tensor, per_ray
from ._registry import OPS

__all__ = ["march_rays", "OccupancyGrid"]


def _aabb_list(aabb) -> list[float]:
    if isinstance(aabb, torch.Tensor):
        aabb = aabb.detach().cpu().reshape(-1).tolist()
    try:
        if isinstance(aabb, (str, bytes)):
            raise TypeError
        values = [float(v) for v in aabb]
    except (TypeError, ValueError):
        raise TypeError(f"aabb must be 6 numbers (a sequence or a tensor), got {type(aabb).__name__}") from None
    if len(values) != 6:
        raise ValueError(f"aabb must have 6 numbers (xmin, ymin, zmin, xmax, ymax, zmax), got {len(values)}")
    return values


def march_rays(rays_o, rays_d, near, far, occupancy, aabb, step_size: float, *, jitter=None):
    """Samples along rays at a fixed step, only where the occupancy grid is occupied.

    Definition (per ray): candidate intervals ``t_start_k = near + (k + jitter) step_size``,
    ``t_end_k = t_start_k + step_size`` for k = 0, 1, ... while ``t_end_k <= far``; an interval
    is kept iff its midpoint ``rays_o + rays_d (t_start + t_end) / 2`` lies in the aabb (borders
    included) and its cell is occupied. Cell (i, j, k) covers the 1/R share (i along x, j along
    y, k along z) of the aabb; a point's cell on axis a is
    ``min(floor((p_a - min_a) * (R / (max_a - min_a))), R - 1)``. The kernel skips empty cells
    (and 8^3 and 32^3 blocks of them) and the space outside the aabb instead of testing every
    candidate, and returns exactly the samples of the definition (same roundings:
    ``reference.march_rays_reference``). The grid state and its update: :class:`OccupancyGrid`.

    t is in units of |rays_d| (normalise directions for a metric step). With one jitter draw
    per ray (``torch.rand(N)``) the samples are stratified, as Instant-NGP's. Rays with NaN
    inputs, or near > far, get no samples.

    Args:
        rays_o, rays_d: [N, 3] float32/float64.
        near, far: per ray [N] (or [N, 1], a 0-d tensor, a Python number).
        occupancy: bool [R, R, R] on the rays' device.
        aabb: (xmin, ymin, zmin, xmax, ymax, zmax) covered by the grid, numbers or a tensor [6].
        step_size: > 0.
        jitter: None (0) or [N] offsets in [0, 1), of the rays' dtype.

    Returns:
        (ray_indices int64 [M], t_starts [M], t_ends [M]), sorted by ray, then by t: the packed
        layout of :func:`composite_packed`.

    Raises:
        TypeError: non-tensor inputs, dtypes (float rays, bool occupancy) or mixed dtypes.
        ValueError: shapes, a non-cubic grid, an aabb that is not finite with min < max,
            step_size <= 0 or not finite, inputs on different devices.
    """
    rays_o = as_tensor("rays_o", rays_o).contiguous()
    rays_d = as_tensor("rays_d", rays_d).contiguous()
    n = rays_o.shape[0] if rays_o.dim() >= 1 else 0
    near = per_ray("near", near, rays_o, n)
    far = per_ray("far", far, rays_o, n)
    occupancy = as_tensor("occupancy", occupancy).contiguous()
    if jitter is not None:
        jitter = as_tensor("jitter", jitter)
        if jitter.dim() == 2 and jitter.shape[1] == 1:
            jitter = jitter[:, 0]
        jitter = jitter.contiguous()
    if isinstance(step_size, torch.Tensor):
        step_size = float(step_size)
    if not isinstance(step_size, (int, float)) or isinstance(step_size, bool):
        raise TypeError(f"step_size must be a number, got {type(step_size).__name__}")
    return OPS.march_rays(rays_o, rays_d, near, far, occupancy, _aabb_list(aabb),
                          float(step_size), jitter)


class OccupancyGrid(nn.Module):
    """A density grid over an aabb that tells :func:`march_rays` where to sample (nerfacc's
    ``OccGridEstimator`` with one level, RAD-NeRF's density grid).

    State (buffers, saved in ``state_dict``): ``ema`` float32 [R, R, R], an exponential moving
    maximum of the density per cell; ``occupied`` bool [R, R, R]; ``visible`` bool [R, R, R]
    (cells some training camera sees, :meth:`mark_invisible`); ``aabb`` float64 [6]. Before the
    first update every visible cell counts as occupied (nothing is skipped).

    Update (:meth:`update`, every ``update_every`` steps): the density is evaluated by the
    caller's ``sigma_fn`` at one jittered point per chosen cell: every cell during warm-up, then
    R^3/4 cells drawn uniformly plus R^3/4 of the occupied ones; per evaluated cell
    ``ema = max(decay * ema, sigma)``; then ``occupied = ema > min(mean(ema), threshold)`` (the
    mean over visible cells) and never outside the visible cells.

    Usage in a training loop::

        grid = OccupancyGrid(aabb, 128)
        grid.mark_invisible(camera_to_world, (fx, fy, cx, cy), (H, W), near, far)
        for step in range(steps):
            grid.update(step, lambda p: field.density(p))     # every update_every steps
            ray_indices, t_starts, t_ends = grid.march(rays_o, rays_d, near, far, step_size,
                                                       jitter=torch.rand(len(rays_o)))
            ...  # field at the midpoints, composite_packed, loss

    ``threshold`` is a density: a cell whose density stays below it is skipped, so a sample
    there would have had alpha < 1 - exp(-threshold step_size) (nerfacc's default opacity
    threshold 0.01 at step s is threshold = 0.01 / s).

    Args:
        aabb: (xmin, ymin, zmin, xmax, ymax, zmax).
        resolution: R, cells per side (1..4096).
        update_every: update period in steps (nerfacc: 16).
        decay: EMA decay (0.95).
        threshold: density threshold (see above).
        device: of the buffers.

    Raises:
        ValueError: arguments out of range.
    """

    def __init__(self, aabb, resolution: int = 128, *, update_every: int = 16,
                 decay: float = 0.95, threshold: float = 0.01, device=None):
        super().__init__()
        box = _aabb_list(aabb)
        if not all(math.isfinite(v) for v in box) or not all(box[a] < box[a + 3] for a in range(3)):
            raise ValueError(f"aabb must be finite with min < max on every axis, got {box}")
        if not isinstance(resolution, int) or not 1 <= resolution <= 4096:
            raise ValueError(f"resolution must be an int in [1, 4096], got {resolution!r}")
        if not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every must be an int >= 1, got {update_every!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay!r}")
        self.resolution, self.update_every = resolution, update_every
        self.decay, self.threshold = float(decay), float(threshold)
        shape = (resolution,) * 3
        self.register_buffer("aabb", torch.tensor(box, dtype=torch.float64, device=device))
        self.register_buffer("ema", torch.zeros(shape, dtype=torch.float32, device=device))
        self.register_buffer("occupied", torch.ones(shape, dtype=torch.bool, device=device))
        self.register_buffer("visible", torch.ones(shape, dtype=torch.bool, device=device))
        self._box = box

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._box = _aabb_list(self.aabb)

    @property
    def fraction_occupied(self) -> float:
        """Share of the R^3 cells that are occupied (a device sync on the GPU)."""
        return float(self.occupied.float().mean())

    def cell_centers(self) -> torch.Tensor:
        """World positions of the cell centres, float32 [R^3, 3], x-major (as ``ema.view(-1)``)."""
        return self._cell_points(torch.arange(self.resolution ** 3, device=self.ema.device), None)

    def _cell_points(self, idx, jitter):
        r = self.resolution
        coords = torch.stack([idx // (r * r), (idx // r) % r, idx % r], dim=-1).to(torch.float32)
        coords = coords + (0.5 if jitter is None else jitter)
        lo = self.aabb[:3].to(torch.float32)
        size = (self.aabb[3:] - self.aabb[:3]).to(torch.float32)
        return lo + coords / r * size

    @torch.no_grad()
    def update(self, step: int, sigma_fn, *, warmup_steps: int = 256,
               generator: torch.Generator | None = None, chunk_size: int = 2 ** 18) -> bool:
        """Updates the grid if ``step`` is a multiple of ``update_every``; returns whether it did.

        Args:
            step: the training step (warm-up: steps < warmup_steps evaluate every cell).
            sigma_fn: points float32 [P, 3] (world coordinates, on the grid's device) ->
                densities [P] or [P, 1]; called without gradients, in chunks of chunk_size.
            generator: for the cell draws and the jitter (on the grid's device).
        """
        if step % self.update_every:
            return False
        dev, r = self.ema.device, self.resolution
        n_cells = r ** 3
        if step < warmup_steps:
            idx = torch.arange(n_cells, device=dev)
        else:
            quarter = max(n_cells // 4, 1)
            uniform = torch.randint(n_cells, (quarter,), generator=generator, device=dev)
            occ = self.occupied.reshape(-1).nonzero()[:, 0]
            if occ.numel() > quarter:
                occ = occ[torch.randint(occ.numel(), (quarter,), generator=generator, device=dev)]
            idx = torch.cat([uniform, occ])
        idx = idx[self.visible.reshape(-1)[idx]]
        jitter = torch.rand((idx.numel(), 3), generator=generator, device=dev)
        points = self._cell_points(idx, jitter)
        sigma = [torch.as_tensor(sigma_fn(chunk)).reshape(-1).to(torch.float32)
                 for chunk in points.split(chunk_size)]
        sigma = torch.cat(sigma) if sigma else points.new_zeros(0)
        if sigma.numel() != idx.numel():
            raise ValueError(f"sigma_fn must return one density per point: got {sigma.numel()} "
                             f"values for {idx.numel()} points")
        ema = self.ema.view(-1)
        new = torch.zeros_like(ema).scatter_reduce(0, idx, sigma, "amax", include_self=False)
        touched = torch.zeros_like(self.occupied.view(-1))
        touched[idx] = True
        ema[touched] = torch.maximum(ema[touched] * self.decay, new[touched])
        visible = self.visible.view(-1)
        mean = ema[visible].mean() if bool(visible.any()) else ema.new_zeros(())
        threshold = torch.clamp(mean, max=self.threshold)
        self.occupied.copy_((self.ema > threshold) & self.visible)
        return True

    @torch.no_grad()
    def mark_invisible(self, camera_to_world, intrinsics, image_size, near, far, *,
                       convention: str = "opengl", cameras_per_batch: int = 32) -> float:
        """Marks the cells that no given camera sees as never occupied (RAD-NeRF's
        ``mark_untrained_grid``); returns the share of cells that stay visible.

        A cell counts as seen by a camera when its bounding sphere intersects the camera's
        frustum: between the depths near and far and inside the four planes through the image
        borders (conservative: a cell near a corner of the frustum may count as seen). The
        result replaces the previous ``visible`` mask (pass all training cameras at once).

        Args:
            camera_to_world: [T, 4, 4] or [T, 3, 4] camera-to-world transforms (rotation and
                camera centre), any float dtype.
            intrinsics: (fx, fy, cx, cy) in pixels, or a tensor [4] or [T, 4].
            image_size: (H, W) in pixels.
            near, far: z-depths of the visible range (numbers, or tensors [T]).
            convention: ``"opengl"`` (camera looks down -z, y up; jeancore's datasets) or
                ``"opencv"`` (looks down +z, y down), as :func:`generate_rays`.
        """
        if convention not in ("opengl", "opencv"):
            raise ValueError(f"convention must be 'opengl' or 'opencv', got {convention!r}")
        c2w = as_tensor("camera_to_world", camera_to_world)
        if c2w.dim() != 3 or c2w.shape[1:] not in ((4, 4), (3, 4)):
            raise ValueError(f"camera_to_world must be [T, 4, 4] or [T, 3, 4], got {list(c2w.shape)}")
        dev = self.ema.device
        c2w = c2w.to(device=dev, dtype=torch.float32)
        t = c2w.shape[0]
        k = torch.as_tensor(intrinsics, dtype=torch.float32, device=dev).reshape(-1, 4)
        if k.shape[0] not in (1, t):
            raise ValueError(f"intrinsics must be (fx, fy, cx, cy), [4] or [T, 4], got {list(k.shape)}")
        k = k.expand(t, 4)
        h, w = (float(v) for v in image_size)
        near_t = torch.as_tensor(near, dtype=torch.float32, device=dev).reshape(-1).expand(t)
        far_t = torch.as_tensor(far, dtype=torch.float32, device=dev).reshape(-1).expand(t)
        rot, centre = c2w[:, :3, :3], c2w[:, :3, 3]
        if convention == "opengl":  # to OpenCV camera axes: x right, y down, z forward
            rot = rot * torch.tensor([1.0, -1.0, -1.0], device=dev)
        # Side planes through the camera centre: x/z >= (0 - cx)/fx etc.; unit normals n with
        # n . p_cam >= -r for a sphere of radius r that reaches into the frustum.
        fx, fy, cx, cy = k.unbind(-1)
        x_lo, x_hi = -cx / fx, (w - cx) / fx
        y_lo, y_hi = -cy / fy, (h - cy) / fy
        zeros, ones = torch.zeros_like(fx), torch.ones_like(fx)
        normals = torch.stack([
            torch.stack([ones, zeros, -x_lo], -1), torch.stack([-ones, zeros, x_hi], -1),
            torch.stack([zeros, ones, -y_lo], -1), torch.stack([zeros, -ones, y_hi], -1)], 1)
        normals = normals / normals.norm(dim=-1, keepdim=True)  # [T, 4, 3]
        size = (self.aabb[3:] - self.aabb[:3]).to(torch.float32)
        radius = 0.5 * float((size / self.resolution).norm())
        centres = self.cell_centers()
        seen = torch.zeros(centres.shape[0], dtype=torch.bool, device=dev)
        for a in range(0, t, cameras_per_batch):
            b = slice(a, a + cameras_per_batch)
            todo = (~seen).nonzero()[:, 0]  # cells no earlier camera saw
            for part in todo.split(2 ** 16):
                p = centres[part]                                           # [P, 3]
                cam = torch.matmul(p[None] - centre[b, None], rot[b])       # R^T (p - c), [T, P, 3]
                z = cam[..., 2]
                ok = (z >= near_t[b, None] - radius) & (z <= far_t[b, None] + radius)
                side = torch.matmul(cam, normals[b].transpose(1, 2))        # [T, P, 4]
                ok &= (side >= -radius).all(-1)
                seen[part] |= ok.any(0)
        self.visible.copy_(seen.view_as(self.visible))
        self.ema[~self.visible] = 0.0
        self.occupied &= self.visible
        return float(seen.float().mean())

    @torch.no_grad()
    def mark_outside_masks(self, masks, camera_to_world, intrinsics, *, min_share: float = 0.9,
                           dilate_px: int = 2, convention: str = "opengl",
                           cameras_per_batch: int = 16) -> float:
        """Visual-hull carving: marks as never occupied the cells that fall outside the object's
        silhouette in the cameras that see them; returns the share of cells left visible.

        A visible cell stays visible when its centre projects inside ``masks`` (dilated by
        the cell's projected radius plus ``dilate_px`` pixels) in at least ``min_share`` of
        the cameras whose image it falls in (a strict visual hull is ``min_share=1``; below 1
        tolerates a few bad masks). Cells no camera's image holds are left as they are.

        Args:
            masks: bool [T, H, W], the object's pixels in each camera.
            camera_to_world: [T, 4, 4] or [T, 3, 4]. intrinsics: (fx, fy, cx, cy) in pixels
                at (H, W), or [T, 4]. convention: as :meth:`mark_invisible`.
            min_share: in (0, 1]. dilate_px: >= 0 pixels.

        Raises:
            ValueError: shapes that do not match, or arguments out of range.
        """
        import torch.nn.functional as F

        if convention not in ("opengl", "opencv"):
            raise ValueError(f"convention must be 'opengl' or 'opencv', got {convention!r}")
        if not 0.0 < float(min_share) <= 1.0:
            raise ValueError(f"min_share must be in (0, 1], got {min_share!r}")
        if int(dilate_px) < 0:
            raise ValueError(f"dilate_px must be >= 0, got {dilate_px!r}")
        m = torch.as_tensor(masks)
        c2w = as_tensor("camera_to_world", camera_to_world)
        if m.dim() != 3 or c2w.dim() != 3 or c2w.shape[0] != m.shape[0] \
                or c2w.shape[1:] not in ((4, 4), (3, 4)):
            raise ValueError(f"masks must be [T, H, W] and camera_to_world [T, 4, 4] with the "
                             f"same T, got {list(m.shape)} and {list(c2w.shape)}")
        dev = self.ema.device
        t, h, w = m.shape
        c2w = c2w.to(device=dev, dtype=torch.float32)
        k = torch.as_tensor(intrinsics, dtype=torch.float32, device=dev).reshape(-1, 4)
        if k.shape[0] not in (1, t):
            raise ValueError(f"intrinsics must be (fx, fy, cx, cy), [4] or [T, 4], got {list(k.shape)}")
        k = k.expand(t, 4)
        rot, centre = c2w[:, :3, :3], c2w[:, :3, 3]
        if convention == "opengl":
            rot = rot * torch.tensor([1.0, -1.0, -1.0], device=dev)
        size = (self.aabb[3:] - self.aabb[:3]).to(torch.float32)
        radius = 0.5 * float((size / self.resolution).norm())
        centres = self.cell_centers()
        todo = self.visible.reshape(-1).nonzero()[:, 0]
        p = centres[todo]
        inside = torch.zeros(todo.numel(), dtype=torch.float32, device=dev)
        seen = torch.zeros_like(inside)
        for a in range(0, t, cameras_per_batch):
            b = slice(a, a + cameras_per_batch)
            mb = m[b].to(device=dev, dtype=torch.float32)[:, None]
            # dilation by the largest projected cell radius of this batch (conservative)
            cam = torch.matmul(p[None] - centre[b, None], rot[b])         # [B, P, 3] (OpenCV)
            z = cam[..., 2].clamp_min(1e-6)
            fx, fy, cx, cy = (v[:, None] for v in k[b].unbind(-1))
            u, v = fx * cam[..., 0] / z + cx, fy * cam[..., 1] / z + cy
            r_px = int(math.ceil(float((fx * radius / z).max()))) + int(dilate_px)
            if r_px > 0:
                mb = F.max_pool2d(mb, 2 * r_px + 1, stride=1, padding=r_px)
            ui, vi = u.floor().long(), v.floor().long()
            ok = (cam[..., 2] > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
            flat = mb.reshape(mb.shape[0], -1)
            lin = (vi.clamp(0, h - 1) * w + ui.clamp(0, w - 1))
            hit = torch.gather(flat, 1, lin) > 0.5
            seen += ok.sum(0)
            inside += (ok & hit).sum(0)
        keep = (seen == 0) | (inside >= float(min_share) * seen)
        vis = self.visible.view(-1)
        vis[todo[~keep]] = False
        self.ema[~self.visible] = 0.0
        self.occupied &= self.visible
        return float(self.visible.float().mean())

    def march(self, rays_o, rays_d, near, far, step_size: float, jitter=None):
        """:func:`march_rays` through this grid: (ray_indices [M], t_starts [M], t_ends [M])."""
        return march_rays(rays_o, rays_d, near, far, self.occupied, self._box, step_size,
                          jitter=jitter)

    def extra_repr(self) -> str:
        return f"aabb={self._box}, resolution={self.resolution}, update_every={self.update_every}"
