"""The AD-NeRF backbone of JEAN's NeRF (Sec. 3.3; suppl. 8.4.2; Guo et al. 2021): a coarse
and a fine F_theta (:class:`~jeancore.models.NerfMLP`) with NeRF's hierarchical sampling
(:class:`~jeancore.nerf.HierarchicalSampler`), trained with the photometric MSE of both passes
(Eq. 6). Registered as ``"adnerf"`` (:mod:`jeancore.models.backbone`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..nerf.volume_rendering import HierarchicalSampler, RayOps, RenderedRays
from .backbone import Backbone, register_backbone
from .nerf import DENSITY_ACTIVATIONS, NerfMLP

__all__ = ["AdNerfBackbone", "AdNerfConfig"]


@dataclass
class AdNerfConfig:
    """Settings of the AD-NeRF backbone (paper / AD-NeRF values)."""

    n_coarse: int = 64
    """Coarse samples per ray (>= 3), evenly spaced in depth (stratified in training)."""
    n_fine: int = 128
    """Samples per ray drawn by inverse transform sampling of the coarse weights; the fine
    network is evaluated at all n_coarse + n_fine depths (0: coarse pass only)."""
    depth: int = 8
    """Linear layers of each MLP's trunk."""
    width: int = 128
    """Hidden width of the MLPs (JEAN suppl. 8.4.2)."""
    skips: tuple[int, ...] = (4,)
    """Trunk layers after which the input [gamma(x), e_in] is concatenated again."""
    pos_freqs: int = 10
    """Positional-encoding frequencies of the point x."""
    dir_freqs: int = 4
    """Positional-encoding frequencies of the viewing direction d."""
    density_activation: str = "softplus"
    """'softplus' (softplus(raw - 1), never dead) or 'relu' (AD-NeRF: the raw output, ReLU'd
    by compositing)."""
    density_noise: float = 0.0
    """Std of Gaussian noise on the raw density in training (NeRF's raw_noise_std; 0: off)."""

    resume_order_keys: ClassVar[tuple[str, ...]] = ("n_coarse", "n_fine", "density_noise")
    """Settings that fix what a training step draws (the others are network widths)."""

    def validate(self) -> None:
        """Raises ConfigError for out-of-range settings (widths are checked by NerfMLP)."""
        HierarchicalSampler(self.n_coarse, self.n_fine)
        if self.density_activation not in DENSITY_ACTIVATIONS:
            raise ConfigError(f"density_activation must be one of {DENSITY_ACTIVATIONS}, got "
                              f"{self.density_activation!r}")
        if not self.density_noise >= 0:
            raise ConfigError(f"density_noise must be >= 0, got {self.density_noise}")

    def mlp_config(self, cond_dim: int) -> dict:
        """Constructor arguments of each :class:`~jeancore.models.NerfMLP`."""
        return {"cond_dim": cond_dim, "depth": self.depth, "width": self.width,
                "skips": list(self.skips), "pos_freqs": self.pos_freqs,
                "dir_freqs": self.dir_freqs, "density_activation": self.density_activation}


@register_backbone
class AdNerfBackbone(Backbone):
    """Coarse and fine F_theta with hierarchical sampling (AD-NeRF / JEAN).

    Modules: ``coarse`` and ``fine`` (:class:`~jeancore.models.NerfMLP`, same widths), and
    the head-space buffers of :class:`~jeancore.models.backbone.Backbone`; ``sampler`` is the
    :class:`~jeancore.nerf.HierarchicalSampler` of ``n_coarse`` + ``n_fine``.

    Args:
        config: :class:`AdNerfConfig` (default: the paper's).
        cond_dim: width of e_in (96 = 32 audio + 64 expression).
        center, radius: the head sphere (decimetres).
    """

    name = "adnerf"
    config_class = AdNerfConfig

    def __init__(self, config: AdNerfConfig | None = None, cond_dim: int = 96,
                 center=(0.0, 0.0, 0.0), radius: float = 1.0, audio_dim: int = 0):
        super().__init__(AdNerfConfig() if config is None else config, cond_dim, center,
                         radius, audio_dim)
        mlp = self.config.mlp_config(self.cond_dim)
        self.coarse = NerfMLP(**mlp)
        self.fine = NerfMLP(**mlp)
        self.sampler = HierarchicalSampler(self.config.n_coarse, self.config.n_fine)

    def render_rays(self, rays_o, rays_d, near, far, cond, background, *, training=False,
                    generator=None, ray_ops: RayOps | None = None, amp=False,
                    n_coarse: int | None = None, n_fine: int | None = None) -> RenderedRays:
        """:meth:`Backbone.render_rays`; ``training`` jitters the coarse depths, stratifies
        the fine uniforms and adds ``density_noise``. ``n_coarse`` / ``n_fine`` override the
        config's sample counts (e.g. for rendering).

        Returns:
            the fine pass (the coarse one with ``n_fine`` 0), the coarse pass in ``extras``
            (``rgb_coarse``, ``depth_coarse``, ``opacity_coarse``).
        """
        sampler = self.sampler
        if n_coarse is not None or n_fine is not None:
            sampler = HierarchicalSampler(
                sampler.n_coarse if n_coarse is None else int(n_coarse),
                sampler.n_fine if n_fine is None else int(n_fine))
        noise = self.config.density_noise if training else 0.0
        kw = dict(amp=amp, noise=noise, generator=generator)
        return sampler(self.sample_fn(self.coarse, cond, **kw),
                       self.sample_fn(self.fine, cond, **kw), rays_o, rays_d, near, far,
                       background, stratified=training, generator=generator,
                       ray_ops=ray_ops or RayOps("fused"))

    def losses(self, result: RenderedRays, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Photometric MSE (Eq. 6) of the coarse and of the fine colours (``fine`` is 0 when
        only the coarse pass ran)."""
        coarse = F.mse_loss(result.extras["rgb_coarse"], target)
        fine_ran = result.rgb is not result.extras["rgb_coarse"]
        return {"coarse": coarse, "fine": F.mse_loss(result.rgb, target) if fine_ran
                else coarse * 0}
