"""The backbone seam of JEAN's NeRF: what the trainer, :class:`~jeancore.nerf.NerfRun`,
``jean render`` and ``jean evaluate`` need from the network that turns rays into colours,
so that a second backbone is a new module and a registry entry (docs/nerf.md).

* A *field* maps points, view directions and the condition e_in = concat(e_a, e_e) to colour
  and density: ``field(points, dirs, cond) -> (rgb, sigma)``, the paper's
  F_theta(e_in, d, x) -> (c, sigma) (Eq. 5). AD-NeRF's MLP (:class:`~jeancore.models.NerfMLP`)
  is one.
* A *sampler* places the samples along the rays, evaluates a field there through a
  :data:`~jeancore.nerf.volume_rendering.SampleFn` and composites them
  (:class:`~jeancore.nerf.volume_rendering.HierarchicalSampler`: NeRF's coarse + fine).
* A *backbone* is its fields and its sampler: a :class:`Backbone` module built from its own
  config dataclass (``config_class``) and registered by name (:func:`register_backbone`,
  :data:`BACKBONES`; ``"adnerf"`` is :class:`~jeancore.models.adnerf.AdNerfBackbone`).

The checkpoint of ``jean train`` stores ``backbone`` (the name), ``backbone_config`` (its
config as a dict), ``cond_dim`` and the backbone's ``state_dict`` (buffers included, e.g. an
occupancy grid); :func:`build_backbone` makes it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from ..nerf.volume_rendering import RayOps, RenderedRays, SampleFn

__all__ = ["BACKBONES", "Backbone", "StepContext", "backbone_class", "build_backbone",
           "config_from_dict", "register_backbone"]

BACKBONES: dict[str, type[Backbone]] = {}
"""Registered backbones by name (filled by :func:`register_backbone`)."""


@dataclass
class StepContext:
    """What :meth:`Backbone.before_step` may use.

    Attributes:
        step: the optimisation step about to be taken (0-based: steps done so far).
        generator: the run's torch.Generator on ``device`` (draws from it are part of the
            run's exact resume).
        device: the training device.
        conditions: ``conditions(n)`` -> float [n, cond_dim], the conditions e_in of ``n``
            training frames drawn at random with ``generator`` (no gradient), e.g. to evaluate
            densities for an occupancy-grid update.
        near, far: the dataset's z-depth bounds (decimetres).
    """

    step: int
    generator: torch.Generator
    device: torch.device
    conditions: Callable[[int], torch.Tensor]
    near: float
    far: float


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Backbone(nn.Module):
    """Base class of NeRF backbones: the head-space box and what the seam asks for.

    Subclasses set ``name`` and ``config_class``, build their fields (modules) and sampler in
    ``__init__(config, cond_dim, center, radius)``, and implement :meth:`render_rays` and
    :meth:`losses`; :meth:`param_groups` and :meth:`before_step` have defaults.

    The config class is a plain dataclass with typed, documented fields (the command line is
    generated from it), optionally a ``validate()`` method and a ClassVar
    ``resume_order_keys``: the settings that fix what a training step draws (a resume with
    other values is refused as "other sampling settings"; every other field counts as a
    network width). ``NerfTrainConfig`` holds it in a field named after the backbone.

    Points in the canonical head space (decimetres) are mapped to the unit sphere before a
    field sees them: x_n = (x - center) / radius, with the head sphere of the 3DMM tracking
    (``tracking.npz`` ``head_center`` / ``head_radius``).

    Args:
        config: an instance of ``config_class`` (validated here).
        cond_dim: width of e_in (>= 0).
        center: float [3] head-sphere centre (decimetres). radius: its radius (decimetres).
        audio_dim: how many of e_in's first channels are the audio code e_a (the rest is the
            expression code e_e); a backbone that treats them differently (e.g. the grid's
            region attention) reads it, others ignore it.

    Raises:
        ConfigError: a config of another class, bad settings, cond_dim < 0, radius <= 0,
            audio_dim outside 0 .. cond_dim.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = type(None)

    def __init__(self, config, cond_dim: int, center=(0.0, 0.0, 0.0), radius: float = 1.0,
                 audio_dim: int = 0):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(f"the {self.name} backbone takes a {self.config_class.__name__}, "
                              f"got {type(config).__name__}")
        if hasattr(config, "validate"):
            config.validate()
        if isinstance(cond_dim, bool) or int(cond_dim) != cond_dim or cond_dim < 0:
            raise ConfigError(f"cond_dim must be an integer >= 0, got {cond_dim!r}")
        if not float(radius) > 0:
            raise ConfigError(f"radius must be > 0, got {radius!r}")
        if isinstance(audio_dim, bool) or int(audio_dim) != audio_dim \
                or not 0 <= audio_dim <= cond_dim:
            raise ConfigError(f"audio_dim must be an integer in 0 .. cond_dim={cond_dim}, got "
                              f"{audio_dim!r}")
        self.config = config
        self.cond_dim = int(cond_dim)
        self.audio_dim = int(audio_dim)
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32).reshape(3))
        self.register_buffer("radius", torch.tensor(float(radius), dtype=torch.float32))

    def config_dict(self) -> dict:
        """The config as plain types (tuples as lists), as stored in checkpoints."""
        from ..checkpoints import plain

        return plain(dataclasses.asdict(self.config))

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """Head space (decimetres) -> unit head sphere: (x - center) / radius."""
        return (points - self.center.to(points.dtype)) / self.radius.to(points.dtype)

    def sample_fn(self, field: nn.Module, cond: torch.Tensor | None, *, amp: bool = False,
                  noise: float = 0.0, generator: torch.Generator | None = None) -> SampleFn:
        """A field as a sampler calls it: points in the head space are normalised, the field
        runs under bfloat16 autocast when ``amp`` (on CUDA), its outputs come back in the
        points' dtype (compositing in full precision), and Gaussian noise of std ``noise`` is
        added to the raw density (NeRF's ``raw_noise_std``) with ``generator``."""
        def fn(points: torch.Tensor, dirs: torch.Tensor):
            with _autocast(points.device, amp):
                rgb, sigma = field(self.normalize(points), dirs, cond)
            rgb, sigma = rgb.to(points.dtype), sigma.to(points.dtype)
            if noise > 0:
                sigma = sigma + noise * torch.randn(sigma.shape, generator=generator,
                                                    device=sigma.device, dtype=sigma.dtype)
            return rgb, sigma
        return fn

    def render_rays(self, rays_o: torch.Tensor, rays_d: torch.Tensor, near, far,
                    cond: torch.Tensor | None, background: torch.Tensor, *,
                    training: bool = False, generator: torch.Generator | None = None,
                    ray_ops: RayOps | None = None, amp: bool = False,
                    **sampling) -> RenderedRays:
        """Render rays.

        Args:
            rays_o, rays_d: ray origins and directions in the canonical head space, float32
                [N, 3] (decimetres; ``rays_d`` as ``jeancore.ops.generate_rays`` makes it,
                with unit camera-space depth, so that depths are z-depths).
            near, far: z-depth bounds (decimetres): numbers, 0-d tensors or [N].
            cond: e_in float [cond_dim] (all rays) or [N, cond_dim].
            background: float [N, 3] or [3] in [0, 1], the colour behind each ray.
            training: training mode: random sampling (with ``generator``), training noise.
            generator: torch.Generator on the rays' device for every random draw.
            ray_ops: :class:`~jeancore.nerf.RayOps` back end (default: fused kernels).
            amp: bfloat16 autocast of the fields on CUDA (compositing stays float32).
            **sampling: backbone-specific overrides of its sampling settings.

        Returns:
            :class:`~jeancore.nerf.RenderedRays`.
        """
        raise NotImplementedError

    def losses(self, result: RenderedRays, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of a training step, by name (the trainer sums them and logs each
        as ``train/loss_<name>``).

        Args:
            result: :meth:`render_rays` of the step's rays (``training=True``).
            target: float [N, 3] in [0, 1], the colours the rays should get.
        """
        raise NotImplementedError

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups (``{"params": [...], "lr": base lr}``); the trainer
        scales every group's base lr by the run's decay. Default: all parameters at ``lr``."""
        return [{"params": list(self.parameters()), "lr": lr}]

    def observe_cameras(self, camera_to_head: torch.Tensor, intrinsics, size: int, near: float,
                        far: float, masks: torch.Tensor | None = None) -> None:
        """Called once before training with the training frames' cameras (default: nothing),
        e.g. to mark space that no training camera sees as never occupied.

        Args:
            camera_to_head: float [T, 4, 4] camera-to-head transforms (OpenGL axes, dm).
            intrinsics: (fx, fy, cx, cy) in pixels at ``size``.
            size: image side (pixels). near, far: z-depth bounds (decimetres).
            masks: bool [T, size, size] head pixels of those frames, or None.
        """

    def before_step(self, step: int, ctx: StepContext) -> None:
        """Called by the trainer before every training step (default: nothing), e.g. to
        update an occupancy grid every k steps. Draw random numbers only from
        ``ctx.generator``, so that resumed runs stay exact."""


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Class decorator: registers a :class:`Backbone` subclass under its ``name``.

    Raises:
        ConfigError: no name, a name already taken, or a config class that is not a
            dataclass.
    """
    if not cls.name or not dataclasses.is_dataclass(cls.config_class):
        raise ConfigError(f"{cls.__name__} needs a name and a dataclass config_class")
    if BACKBONES.get(cls.name, cls) is not cls:
        raise ConfigError(f"a backbone named {cls.name!r} is already registered")
    BACKBONES[cls.name] = cls
    return cls


def backbone_class(name: str) -> type[Backbone]:
    """The registered backbone ``name``.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown NeRF backbone {name!r}; choose from {sorted(BACKBONES)}")
    return BACKBONES[name]


def config_from_dict(cls: type, values: dict):
    """A config dataclass from a dict of plain values (as :meth:`Backbone.config_dict` or a
    checkpoint stores it): lists become tuples where the field is a tuple.

    Raises:
        ConfigError: keys that are not fields of ``cls``.
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    extra = set(values) - set(names)
    if extra:
        raise ConfigError(f"unknown {cls.__name__} settings {sorted(extra)}; known: "
                          f"{sorted(names)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: tuple(v) if isinstance(v, list)
                  and typing.get_origin(hints[k]) is tuple else v for k, v in values.items()})


def build_backbone(name: str, config=None, cond_dim: int = 96, center=(0.0, 0.0, 0.0),
                   radius: float = 1.0, audio_dim: int = 0) -> Backbone:
    """A new backbone ``name`` from its config (an instance of its ``config_class``, a dict
    of its fields, or None for the defaults); ``audio_dim``: see :class:`Backbone`.

    Raises:
        ConfigError: unknown backbone or settings (see :class:`Backbone`).
    """
    cls = backbone_class(name)
    if config is None:
        config = cls.config_class()
    elif isinstance(config, dict):
        config = config_from_dict(cls.config_class, config)
    return cls(config, cond_dim, center, radius, audio_dim=audio_dim)


# the built-in backbones register themselves on import (after the names above exist)
from . import adnerf, grid  # noqa: E402,F401
