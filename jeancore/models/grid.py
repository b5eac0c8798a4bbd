"""The grid backbone of JEAN's NeRF (``backbone="grid"``): a multiresolution hash encoding of
the canonical head space (Instant-NGP, Müller et al. 2022; a 3-D grid as RAD-NeRF or ER-NeRF's
tri-plane of three 2-D grids), two small MLPs conditioned on JEAN's e_in = concat(e_a, e_e)
(Sec. 3.3), and occupancy-grid ray marching with packed samples instead of hierarchical
sampling.

The field (:class:`GridField`) keeps F_theta(e_in, d, x) -> (c, sigma) of the paper (Eq. 5),
only its parameterisation changes:

* x (in the head sphere's bounding box, mapped to [0, 1]^3) -> hash encoding ``h(x)``:
  ``"triplane"`` (ER-NeRF: three 2-D :class:`~jeancore.ops.HashGrid` on the xy, yz and xz
  planes, features concatenated) or ``"hash3d"`` (RAD-NeRF: one 3-D grid);
* density MLP: [h(x), a(x) * e_a, e_e] -> ``density_layers`` hidden layers of ``hidden`` ->
  raw density and ``geo_features`` geometry features; ``a(x)`` is ER-NeRF's region attention
  (a per-channel weight in (0, 1) for the audio code predicted from h(x); 1 when off);
* colour MLP: [geometry features, SH_4(d)] (real spherical harmonics of degree < 4 of the
  view direction, 16 values; or the positional encoding of AD-NeRF) -> ``color_hidden`` -> RGB
  (sigmoid).

The terms of the first density layer that only depend on the ray (W_e e_e + b, and W_a e_a
without region attention) are computed once per ray and gathered per sample.

Sampling: :func:`jeancore.ops.march_rays` through an :class:`jeancore.ops.OccupancyGrid`
over the head sphere's bounding box (fixed step of ``2 radius / n_steps``, one jitter per ray
in training), then :func:`jeancore.ops.composite_packed` over the background. Before training
the grid is carved to the visual hull of the training frames' head masks (``hull_carving``:
a cell outside the head's silhouette in the frames that see it is never occupied), so marching
skips the empty box from the first step; cells no training camera sees are never occupied
either. The grid is then updated every ``occupancy_every`` steps with the densities under the
condition of a random training frame (RAD-NeRF). In training, samples whose compositing weight
would be below ``min_weight`` are found with a density-only pass without gradients and dropped
before the full pass (nerfacc's ``alpha_thre`` / ``early_stop_eps`` estimator). At inference
each ray's samples are evaluated front to back in windows of 4, 8, 16, ... samples and a ray
leaves once its transmittance is below ``early_stop`` (Instant-NGP's 1e-4 and its compaction
of live rays), so the space behind the face is never evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..errors import BadInputError, ConfigError
from ..nerf.volume_rendering import RenderedRays
from .backbone import Backbone, StepContext, register_backbone
from .encoding import encoded_dim, positional_encoding

__all__ = ["ENCODINGS", "GridBackbone", "GridConfig", "GridField", "spherical_harmonics"]

ENCODINGS = ("triplane", "hash3d")
DIR_ENCODINGS = ("sh", "pe")
_PLANES = ((0, 1), (1, 2), (0, 2))


def spherical_harmonics(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics of degree < 4 (16 values) of unit directions.

    Args:
        d: float [..., 3], unit vectors.

    Returns:
        float [..., 16] (l = 0..3, m = -l..l; the basis of Instant-NGP / torch-ngp's "SH"
        encoding of degree 4).
    """
    x, y, z = d.unbind(-1)
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    return torch.stack([
        torch.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x,
        1.0925484305920792 * xy, -1.0925484305920792 * yz,
        0.31539156525252005 * (2 * zz - xx - yy), -1.0925484305920792 * xz,
        0.5462742152960396 * (xx - yy),
        0.5900435899266435 * y * (-3 * xx + yy), 2.890611442640554 * xy * z,
        0.4570457994644658 * y * (1 - 5 * zz), 0.3731763325901154 * z * (5 * zz - 3),
        0.4570457994644658 * x * (1 - 5 * zz), 1.445305721320277 * z * (xx - yy),
        0.5900435899266435 * x * (-xx + 3 * yy)], -1)


@dataclass
class GridConfig:
    """Settings of the grid backbone (defaults: the ``cpu`` preset's, chosen by measurement;
    docs/nerf.md)."""

    encoding: str = "triplane"
    """'triplane' (ER-NeRF: three 2-D hash grids on the xy, yz, xz planes) or 'hash3d'
    (RAD-NeRF / Instant-NGP: one 3-D hash grid)."""
    n_levels: int = 12
    """Levels of each hash grid."""
    features_per_level: int = 2
    """Features per level (1, 2, 4 or 8)."""
    log2_table_size: int = 14
    """At most 2^T table entries per level (coarse levels are dense)."""
    base_resolution: int = 32
    """Cells per side of the coarsest level (over the head sphere's bounding box)."""
    max_resolution: int = 512
    """Cells per side of the finest level."""
    hidden: int = 64
    """Width of the density MLP's hidden layers."""
    density_layers: int = 1
    """Hidden layers of the density MLP (1 or 2 in the peers)."""
    geo_features: int = 15
    """Geometry features passed from the density MLP to the colour MLP."""
    color_hidden: int = 64
    """Width of the colour MLP's hidden layer."""
    dir_encoding: str = "sh"
    """View-direction encoding: 'sh' (spherical harmonics of degree 4, 16 values) or 'pe'
    (AD-NeRF's positional encoding with dir_freqs frequencies)."""
    dir_freqs: int = 4
    """Frequencies of the 'pe' view-direction encoding."""
    region_attention: bool = True
    """ER-NeRF's region attention: a per-channel weight in (0, 1) for the audio code,
    predicted from the position's encoding (False: the audio code enters as it is)."""
    lr_encoding: float = 1e-2
    """Adam learning rate of the hash tables at step 0 (torch-ngp; the MLPs use the run's
    lr); same decay as the run's."""
    occupancy_resolution: int = 64
    """Cells per side of the occupancy grid over the head sphere's bounding box."""
    occupancy_every: int = 16
    """Steps between occupancy-grid updates (RAD-NeRF / nerfacc: 16)."""
    occupancy_start: int = 64
    """Steps before the first occupancy-grid update (every cell is sampled until then, so
    that empty space has become transparent when the grid starts skipping it)."""
    occupancy_warmup: int = 256
    """Steps during which an update evaluates every cell (after it: a quarter uniform and a
    quarter of the occupied cells)."""
    occupancy_alpha: float = 0.01
    """A cell is empty when one marching step through it would be less opaque than this
    (nerfacc's alpha threshold: density threshold -ln(1 - alpha) / step; capped by the grid's
    mean density)."""
    hull_carving: bool = True
    """Before training, cells outside the head masks' visual hull are never occupied
    (:meth:`jeancore.ops.OccupancyGrid.mark_outside_masks`): the head's silhouette in every
    training frame bounds it, so marching skips the empty box from the first step."""
    hull_min_share: float = 0.9
    """A cell stays in the hull when it projects into the (dilated) head mask in at least
    this share of the training frames that see it (below 1: a few bad masks are tolerated)."""
    n_steps: int = 128
    """Marching steps across the head sphere's diameter: the step is 2 radius / n_steps."""
    density_offset: float = 3.0
    """sigma = softplus(raw - density_offset): the untrained field starts nearly transparent
    (softplus(-3) = 0.05 per decimetre), so the occupancy grid learns where the head is."""
    min_weight: float = 1e-4
    """Samples whose compositing weight is below this are not evaluated with gradients (a
    density pass without gradients finds them first; 0: keep every marched sample)."""
    early_stop: float = 1e-4
    """Inference: a ray stops once its transmittance falls below this (Instant-NGP)."""
    resume_order_keys: ClassVar[tuple[str, ...]] = (
        "occupancy_every", "occupancy_start", "occupancy_warmup", "n_steps", "min_weight",
        "early_stop")
    """Settings that fix what a training step draws (the others are widths and rates)."""

    def validate(self) -> None:
        """Raises ConfigError for out-of-range settings."""
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"grid encoding must be one of {ENCODINGS}, got "
                              f"{self.encoding!r}")
        if self.dir_encoding not in DIR_ENCODINGS:
            raise ConfigError(f"dir_encoding must be one of {DIR_ENCODINGS}, got "
                              f"{self.dir_encoding!r}")
        for name, lo in (("n_levels", 1), ("log2_table_size", 1), ("base_resolution", 1),
                         ("hidden", 1), ("density_layers", 1), ("geo_features", 1),
                         ("color_hidden", 1), ("dir_freqs", 0),
                         ("occupancy_resolution", 1), ("occupancy_every", 1),
                         ("occupancy_start", 0), ("occupancy_warmup", 0), ("n_steps", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"grid {name} must be an integer >= {lo}, got {v!r}")
        if self.features_per_level not in (1, 2, 4, 8):
            raise ConfigError(f"features_per_level must be 1, 2, 4 or 8, got "
                              f"{self.features_per_level!r}")
        if self.max_resolution < self.base_resolution:
            raise ConfigError(f"max_resolution ({self.max_resolution}) must be >= "
                              f"base_resolution ({self.base_resolution})")
        if not self.lr_encoding > 0:
            raise ConfigError(f"lr_encoding must be > 0, got {self.lr_encoding}")
        if not 0.0 <= self.occupancy_alpha < 1.0:
            raise ConfigError(f"occupancy_alpha must be in [0, 1), got {self.occupancy_alpha}")
        if not 0.0 < self.hull_min_share <= 1.0:
            raise ConfigError(f"hull_min_share must be in (0, 1], got {self.hull_min_share}")
        for name in ("min_weight", "early_stop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")


class _Encoding(nn.Module):
    """Hash encoding of points in [0, 1]^3: a tri-plane of three 2-D grids or one 3-D grid."""

    def __init__(self, c: GridConfig):
        super().__init__()
        args = (c.n_levels, c.features_per_level, c.log2_table_size, c.base_resolution,
                c.max_resolution)
        self.kind = c.encoding
        if c.encoding == "triplane":
            self.grids = nn.ModuleList([ops.HashGrid(2, *args) for _ in _PLANES])
        else:
            self.grids = nn.ModuleList([ops.HashGrid(3, *args)])
        self.output_dim = sum(g.output_dim for g in self.grids)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.kind == "hash3d":
            return self.grids[0](u)
        return torch.cat([g(u[:, list(ax)].contiguous()) for g, ax in zip(self.grids, _PLANES)],
                         -1)


class GridField(nn.Module):
    """F_theta(e_in, d, x) -> (c, sigma) on a hash encoding (see the module docstring).

    Args:
        config: :class:`GridConfig`.
        cond_dim: width of e_in.
        audio_dim: how many of e_in's first channels are the audio code (region attention
            weighs those); 0: none.

    Raises:
        ConfigError: audio_dim outside 0 .. cond_dim.
    """

    def __init__(self, config: GridConfig, cond_dim: int, audio_dim: int):
        super().__init__()
        if not 0 <= audio_dim <= cond_dim:
            raise ConfigError(f"audio_dim must be in 0..cond_dim={cond_dim}, got {audio_dim}")
        c = config
        self.cond_dim, self.audio_dim = int(cond_dim), int(audio_dim)
        self.encoding = _Encoding(c)
        e = self.encoding.output_dim
        self.enc_dim = e
        self.attention = nn.Linear(e, audio_dim) if c.region_attention and audio_dim else None
        self.density_in = nn.Linear(e + cond_dim, c.hidden)
        self.density_hidden = nn.ModuleList([nn.Linear(c.hidden, c.hidden)
                                             for _ in range(c.density_layers - 1)])
        self.density_out = nn.Linear(c.hidden, 1 + c.geo_features)
        self.dir_encoding, self.dir_freqs = c.dir_encoding, c.dir_freqs
        self.density_offset = float(c.density_offset)
        d = 16 if c.dir_encoding == "sh" else encoded_dim(3, c.dir_freqs)
        self.color_hidden = nn.Linear(c.geo_features + d, c.color_hidden)
        self.color_out = nn.Linear(c.color_hidden, 3)

    def _ray_term(self, cond, ray_indices):
        """The per-ray part of the first density layer: W_e e_e (+ W_a e_a without region
        attention) + b, gathered per sample ([M, H] or [H])."""
        w = self.density_in.weight
        e, a = self.enc_dim, self.audio_dim
        lo = e + (a if self.attention is not None else 0)
        term = F.linear(cond[..., lo - e:], w[:, lo:], self.density_in.bias)
        if term.dim() == 2 and ray_indices is not None:
            term = term[ray_indices]
        return term

    def geometry(self, u: torch.Tensor, cond: torch.Tensor, ray_indices=None):
        """Density and geometry features at points.

        Args:
            u: float [M, 3], points in [0, 1]^3 (the head sphere's bounding box).
            cond: e_in, float [cond_dim] (all samples), [M, cond_dim] (per sample) or
                [N, cond_dim] per ray with ``ray_indices`` int64 [M].

        Returns:
            (sigma float [M] >= 0, per decimetre: softplus(raw - density_offset); geometry features
            float [M, geo_features]).
        """
        h_x = self.encoding(u)
        e = self.enc_dim
        w = self.density_in.weight
        h = torch.addmm(self._ray_term(cond, ray_indices), h_x, w[:, :e].t())
        if self.attention is not None:
            a = cond[..., :self.audio_dim]
            if a.dim() == 2 and ray_indices is not None:
                a = a[ray_indices]
            a = a * torch.sigmoid(self.attention(h_x))
            h = h.addmm(a, w[:, e:e + self.audio_dim].t())
        h = F.relu_(h)
        for layer in self.density_hidden:
            h = F.relu_(layer(h))
        out = self.density_out(h)
        return F.softplus(out[:, 0] - self.density_offset), out[:, 1:]

    def color(self, geo: torch.Tensor, dirs: torch.Tensor, ray_indices=None) -> torch.Tensor:
        """RGB in (0, 1) [M, 3] from geometry features [M, G] and unit view directions
        [M, 3], or [N, 3] per ray with ``ray_indices`` int64 [M] (the direction's part of the
        first colour layer is then computed once per ray)."""
        de = spherical_harmonics(dirs) if self.dir_encoding == "sh" else \
            positional_encoding(dirs, self.dir_freqs)
        g = geo.shape[1]
        w = self.color_hidden.weight
        term = F.linear(de, w[:, g:], self.color_hidden.bias)
        if ray_indices is not None and dirs.shape[0] != geo.shape[0]:
            term = term[ray_indices]
        h = F.relu_(torch.addmm(term, geo, w[:, :g].t()))
        return torch.sigmoid(self.color_out(h))

    def forward(self, u: torch.Tensor, dirs: torch.Tensor, cond: torch.Tensor, ray_indices=None):
        """The seam's field call: ``(rgb [M, 3], sigma [M])`` at points ``u`` [M, 3] in
        [0, 1]^3 with view directions ``dirs`` [M, 3] (or [N, 3] per ray with
        ``ray_indices``) and e_in ``cond`` (see :meth:`geometry`)."""
        sigma, geo = self.geometry(u, cond, ray_indices)
        return self.color(geo, dirs, ray_indices), sigma


@register_backbone
class GridBackbone(Backbone):
    """A :class:`GridField` with occupancy-grid ray marching (see the module docstring).

    Modules: ``field`` (:class:`GridField`), ``occupancy`` (:class:`jeancore.ops.OccupancyGrid`
    over the head sphere's bounding box, saved in the state dict).

    Args:
        config: :class:`GridConfig`.
        cond_dim: width of e_in (96 = 32 audio + 64 expression).
        center, radius: the head sphere (decimetres).
        audio_dim: how many first channels of e_in are the audio code (region attention).
    """

    name = "grid"
    config_class = GridConfig

    def __init__(self, config: GridConfig | None = None, cond_dim: int = 96,
                 center=(0.0, 0.0, 0.0), radius: float = 1.0, audio_dim: int = 0):
        super().__init__(GridConfig() if config is None else config, cond_dim, center, radius,
                         audio_dim)
        c = self.config
        self.field = GridField(c, self.cond_dim, self.audio_dim)
        lo = [float(v) - float(radius) for v in self.center]
        hi = [float(v) + float(radius) for v in self.center]
        self.step_size = 2.0 * float(radius) / c.n_steps
        self.occupancy = ops.OccupancyGrid(
            lo + hi, c.occupancy_resolution, update_every=c.occupancy_every,
            threshold=-math.log1p(-c.occupancy_alpha) / self.step_size)

    # ------------------------------------------------------------------ points and directions

    def unit_box(self, points: torch.Tensor) -> torch.Tensor:
        """Head space (decimetres) -> [0, 1]^3 over the head sphere's bounding box."""
        return (self.normalize(points) * 0.5 + 0.5).clamp_(0.0, 1.0)

    def density_fn(self, cond: torch.Tensor):
        """sigma_fn(points [P, 3] in the head space) -> density [P] under one condition
        e_in [cond_dim] (for the occupancy grid)."""
        def fn(points):
            return self.field.geometry(self.unit_box(points), cond)[0]
        return fn

    # ------------------------------------------------------------------------------ rendering

    def render_rays(self, rays_o, rays_d, near, far, cond, background, *, training=False,
                    generator=None, ray_ops=None, amp=False, min_weight: float | None = None,
                    early_stop: float | None = None) -> RenderedRays:
        """:meth:`Backbone.render_rays` with packed samples.

        Rays are marched with unit directions (so densities are per decimetre and the step
        is metric); ``near`` / ``far`` (z-depths) are converted to distances along each ray.
        ``training`` draws one jitter per ray from ``generator``; ``min_weight`` and
        ``early_stop`` override the config's (0 keeps every sample: an exact render).

        Returns:
            :class:`~jeancore.nerf.RenderedRays`; ``extras``: ``n_samples`` (marched samples
            before dropping low weights) as an int.
        """
        c = self.config
        n = rays_o.shape[0]
        dev, dt = rays_o.device, rays_o.dtype
        scale = rays_d.norm(dim=-1)
        dirs = rays_d / scale[:, None]
        near_t = torch.as_tensor(near, dtype=dt, device=dev).expand(n) * scale
        far_t = torch.as_tensor(far, dtype=dt, device=dev).expand(n) * scale
        if cond is not None and cond.dim() == 2 and cond.shape[0] != n:
            raise BadInputError(f"cond must be [{self.cond_dim}] or [N={n}, {self.cond_dim}], "
                                f"got {list(cond.shape)}")
        jitter = torch.rand(n, generator=generator, device=dev, dtype=dt) if training else None
        ray_idx, t0, t1 = self.occupancy.march(rays_o, dirs, near_t, far_t, self.step_size,
                                               jitter=jitter)
        n_marched = int(ray_idx.shape[0])
        min_w = c.min_weight if min_weight is None else float(min_weight)
        stop = c.early_stop if early_stop is None else float(early_stop)
        per_ray = cond is not None and cond.dim() == 2
        if not training and stop > 0 and not torch.is_grad_enabled():
            color, opacity, depth, counts = self._render_windows(
                rays_o, dirs, cond, ray_idx, t0, t1, n, stop, min_w)
            bg = background.to(dt)
            color = color + (1.0 - opacity)[:, None] * (bg if bg.dim() == 2 else bg[None])
            return RenderedRays(rgb=color, opacity=opacity, depth=depth / scale,
                                samples_per_ray=counts, extras={"n_marched": n_marched})
        ri_cond = ray_idx if per_ray else None
        if n_marched and (min_w > 0 or stop > 0):
            # density-only pass without gradients: which samples matter
            with torch.no_grad():
                u = self.unit_box(rays_o[ray_idx] + dirs[ray_idx] * ((t0 + t1) * 0.5)[:, None])
                sigma, _ = self.field.geometry(u, cond, ri_cond)
                w = ops.composite_packed(sigma, sigma.new_zeros(n_marched, 3), t0, t1, ray_idx,
                                         n, early_stop=stop)[3]
                keep = (w > min_w).nonzero()[:, 0] if min_w > 0 else (w > 0).nonzero()[:, 0]
            ray_idx, t0, t1 = ray_idx[keep], t0[keep], t1[keep]
            ri_cond = ray_idx if per_ray else None
        u = self.unit_box(rays_o[ray_idx] + dirs[ray_idx] * ((t0 + t1) * 0.5)[:, None])
        rgb, sigma = self.field(u, dirs, cond, ray_idx)
        bg = background.to(dt)
        color, opacity, depth, _ = ops.composite_packed(sigma, rgb, t0, t1, ray_idx, n,
                                                        background=bg, early_stop=stop)
        counts = torch.bincount(ray_idx, minlength=n)
        return RenderedRays(rgb=color, opacity=opacity, depth=depth / scale,
                            samples_per_ray=counts, extras={"n_marched": n_marched})

    def _render_windows(self, rays_o, dirs, cond, ray_idx, t0, t1, n: int, stop: float,
                        min_weight: float):
        """Inference: the marched samples of each ray in windows of growing length (4, 8,
        16, ...), front to back; a ray leaves once its transmittance is below ``stop``
        (Instant-NGP's compaction of live rays), so samples behind an opaque surface are
        never evaluated. Segments compose exactly: C = C_a + T_a C_b, T = T_a T_b. The
        colour MLP runs only for samples whose weight in the ray exceeds ``min_weight``.

        Returns:
            (premultiplied colour [N, 3], opacity [N], depth [N], evaluated samples [N]).
        """
        dev, dt = rays_o.device, rays_o.dtype
        color = torch.zeros(n, 3, device=dev, dtype=dt)
        trans = torch.ones(n, device=dev, dtype=dt)
        depth = torch.zeros(n, device=dev, dtype=dt)
        counts = torch.zeros(n, dtype=torch.long, device=dev)
        m = int(ray_idx.shape[0])
        if m == 0:
            return color, 1.0 - trans, depth, counts
        per = torch.bincount(ray_idx, minlength=n)
        first = torch.cumsum(per, 0) - per
        rank = torch.arange(m, device=dev) - first[ray_idx]
        lo, width = 0, 4
        max_rank = int(per.max())
        while lo < max_rank:
            sel = ((rank >= lo) & (rank < lo + width)).nonzero()[:, 0]
            if sel.numel():
                alive = trans[ray_idx[sel]] >= stop
                sel = sel[alive]
            if sel.numel() == 0:
                if not bool((trans >= stop).any()):
                    break
                lo += width
                width *= 2
                continue
            ri, a, b = ray_idx[sel], t0[sel], t1[sel]
            u = self.unit_box(rays_o[ri] + dirs[ri] * ((a + b) * 0.5)[:, None])
            sigma, geo = self.field.geometry(u, cond, ri)
            _, o_w, d_w, w = ops.composite_packed(sigma, sigma.new_zeros(len(sel), 3), a, b, ri,
                                                  n, early_stop=stop)
            # the colour MLP only where the sample's weight in the whole ray counts
            keep = ((trans[ri] * w) > min_weight).nonzero()[:, 0]
            c_w = torch.zeros(n, 3, device=dev, dtype=dt)
            if keep.numel():
                rk = ri[keep]
                rgb = self.field.color(geo[keep], dirs, rk)
                c_w.index_add_(0, rk, w[keep, None] * rgb)
            color += trans[:, None] * c_w
            depth += trans * d_w
            trans = trans * (1.0 - o_w)
            counts += torch.bincount(ri, minlength=n)
            lo += width
            width *= 2
        return color, 1.0 - trans, depth, counts

    def losses(self, result: RenderedRays, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Photometric MSE (Eq. 6) of the rendered colours."""
        return {"rgb": F.mse_loss(result.rgb, target)}

    def param_groups(self, lr: float) -> list[dict]:
        """The hash tables at ``lr_encoding`` and Adam eps 1e-15 (Instant-NGP), the MLPs at
        ``lr``."""
        enc = list(self.field.encoding.parameters())
        ids = {id(p) for p in enc}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": enc, "lr": self.config.lr_encoding, "eps": 1e-15},
                {"params": rest, "lr": lr, "eps": 1e-15}]

    @torch.no_grad()
    def before_step(self, step: int, ctx: StepContext) -> None:
        """Every ``occupancy_every`` steps: the occupancy grid's update with the densities
        under the condition of a random training frame (RAD-NeRF)."""
        if step < self.config.occupancy_start or step % self.config.occupancy_every:
            return
        cond = ctx.conditions(1)[0]
        self.occupancy.update(step, self.density_fn(cond),
                              warmup_steps=self.config.occupancy_warmup,
                              generator=ctx.generator)

    def observe_cameras(self, camera_to_head, intrinsics, size: int, near, far,
                        masks=None) -> None:
        """Cells that no training camera sees are never occupied
        (``OccupancyGrid.mark_invisible``, RAD-NeRF's ``mark_untrained_grid``); with
        ``masks`` (bool [T, size, size], the head pixels) and ``hull_carving``, neither are the
        cells outside the masks' visual hull (``OccupancyGrid.mark_outside_masks``)."""
        self.occupancy.mark_invisible(camera_to_head, intrinsics, (size, size), near, far)
        if masks is not None and self.config.hull_carving:
            self.occupancy.mark_outside_masks(masks, camera_to_head, intrinsics,
                                              min_share=self.config.hull_min_share)
