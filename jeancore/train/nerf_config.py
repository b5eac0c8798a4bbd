"""Settings of the NeRF training (``jean train``): :class:`NerfTrainConfig` (the run) with the
backbone's own settings nested in the field named after it (``adnerf``:
:class:`~jeancore.models.AdNerfConfig`), and the presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..models.adnerf import AdNerfConfig
from ..models.grid import GridConfig
from ..models.backbone import BACKBONES, backbone_class, config_from_dict
from ..nerf.volume_rendering import OPS_BACKENDS
from ._run import check_ints, resolve_device

__all__ = ["PRESETS", "NerfTrainConfig", "preset_config"]


@dataclass
class NerfTrainConfig:
    """Settings of :func:`~jeancore.train.train_nerf`. Defaults: the paper (the ``full``
    preset, JEAN suppl. 8.4.3).

    One step draws ``n_rays`` rays of one frame, ``face_fraction`` of them in its face box;
    the backbone (``backbone``, with its settings in the field of that name) renders them;
    Adam minimises the photometric loss, the learning rate decaying exponentially from ``lr``
    to ``lr_final`` at ``iters`` (the audio encoder from ``lr_audio``, same decay).
    """

    preset: str = "full"
    """Name of the preset the other values came from (recorded in the run)."""
    backbone: str = "adnerf"
    """The NeRF backbone (jeancore.models.BACKBONES); its settings are the field of that
    name."""
    adnerf: AdNerfConfig = field(default_factory=AdNerfConfig)
    """Settings of the AD-NeRF backbone (coarse + fine MLPs, hierarchical sampling)."""
    grid: GridConfig = field(default_factory=GridConfig)
    """Settings of the grid backbone (hash encoding, small MLPs, occupancy-grid marching)."""
    iters: int = 400_000
    """Training iterations (400k in the paper); the learning rate reaches lr_final here."""
    n_rays: int = 2048
    """Rays per step, all from one training frame."""
    face_fraction: float = 0.95
    """Fraction of the rays drawn inside the frame's face box (the rest outside it, but for
    the mouth and head fractions)."""
    mouth_fraction: float = 0.0
    """Fraction of the rays drawn inside the frame's mouth box (iBUG 48-67 widened by a
    quarter of the inter-ocular distance), on top of those of the face box that fall there
    (RAD-NeRF / ER-NeRF train the lips with extra rays)."""
    head_fraction: float = 0.0
    """Fraction of the rays drawn uniformly over the frame's head mask (hair included)."""
    frames_per_step: int = 1
    """Training frames the rays of a step come from (n_rays split between them)."""
    mouth_expression_swap: float = 0.0
    """Probability that a ray inside the mouth box gets the expression code of another random
    training frame: the expression code of a frame also carries its mouth shape, so without
    this the NeRF learns the mouth from the expression code instead of the speech."""
    resolution: int | None = None
    """Image side to train and validate at, in pixels (None: the dataset's)."""
    audio_code_dim: int = 32
    """Width of the audio code e_a given to the NeRF (projection of the audio encoder)."""
    audio_smoothing: int = 8
    """Frames of the audio attention smoothing (1: off)."""
    random_background: bool = True
    """Give the space around the head random colours (so that it renders transparent);
    False: the dataset's background (AD-NeRF)."""
    lr: float = 5e-4
    """Adam learning rate at step 0 (backbone, projection, attention)."""
    lr_final: float = 5e-5
    """Learning rate at step iters (exponential decay)."""
    lr_audio: float = 5e-6
    """Learning rate of the fine-tuned audio encoder at step 0 (same decay)."""
    amp: bool = True
    """bfloat16 autocast of the networks on CUDA (compositing stays float32)."""
    time_limit_s: float | None = None
    """Stop after this many seconds of training (validation excluded), even before iters."""
    seed: int = 0
    """Seed of every random draw (initialisation, frames, pixels, samples)."""
    device: str = "auto"
    """Torch device ('auto': CUDA when available)."""
    ops: str = "fused"
    """Ray operations: 'fused' (jeancore.ops kernels) or 'reference' (pure PyTorch)."""
    log_every: int = 50
    """Steps between TensorBoard training scalars."""
    checkpoint_every: int = 2000
    """Steps between checkpoints (also at the end and on Ctrl-C)."""
    val_every: int = 5000
    """Steps between validations (0: only at the start and the end)."""
    val_frames: int | None = 8
    """Validation frames rendered, evenly spaced over the last 10% (None: all)."""
    val_at_start: bool = True
    """Validate the untrained model at step 0."""
    chunk_rays: int = 16384
    """Rays per rendering pass in validation (bounds memory)."""

    def backbone_config(self):
        """The settings of the chosen backbone (the field named ``backbone``)."""
        return getattr(self, self.backbone, None)

    def validate(self) -> None:
        """Raises ConfigError for out-of-range settings (the backbone's included)."""
        check_ints(self, ("n_rays", "audio_code_dim", "audio_smoothing", "log_every",
                          "checkpoint_every", "chunk_rays"))
        check_ints(self, ("iters", "val_every", "seed"), 0)
        if self.resolution is not None and int(self.resolution) < 8:
            raise ConfigError(f"resolution must be None or >= 8 pixels, got {self.resolution}")
        if self.val_frames is not None and int(self.val_frames) < 1:
            raise ConfigError(f"val_frames must be None or >= 1, got {self.val_frames}")
        for name in ("face_fraction", "mouth_fraction", "head_fraction",
                     "mouth_expression_swap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.face_fraction + self.mouth_fraction + self.head_fraction > 1.0 + 1e-9:
            raise ConfigError(f"face_fraction + mouth_fraction + head_fraction must be <= 1, "
                              f"got {self.face_fraction} + {self.mouth_fraction} + "
                              f"{self.head_fraction}")
        check_ints(self, ("frames_per_step",))
        if self.frames_per_step > self.n_rays:
            raise ConfigError(f"frames_per_step ({self.frames_per_step}) must be <= n_rays "
                              f"({self.n_rays})")
        if not (self.lr > 0 and self.lr_final > 0 and self.lr_audio >= 0):
            raise ConfigError("lr and lr_final must be > 0, lr_audio >= 0")
        if self.ops not in OPS_BACKENDS:
            raise ConfigError(f"ops must be one of {OPS_BACKENDS}, got {self.ops!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ConfigError(f"time_limit_s must be None or > 0, got {self.time_limit_s}")
        cls = backbone_class(self.backbone).config_class
        if not isinstance(self.backbone_config(), cls):
            raise ConfigError(f"NerfTrainConfig has no {cls.__name__} field "
                              f"{self.backbone!r} for the {self.backbone} backbone")
        self.backbone_config().validate()


_GRID_CPU = dict(
    backbone="grid", n_rays=2048, resolution=None, lr=1e-3, lr_final=2e-4,
    face_fraction=0.6, mouth_fraction=0.2, head_fraction=0.15, mouth_expression_swap=0.5,
    log_every=10, checkpoint_every=200, val_every=1000, val_frames=3,
    grid=dict(encoding="triplane", n_levels=4, features_per_level=8, log2_table_size=18,
              base_resolution=64, max_resolution=512, n_steps=48, density_offset=0.0))

PRESETS = {
    # the paper (suppl. 8.4.3) with AD-NeRF's sample counts; for a GPU
    "full": {},
    # learns a recognisable blurry face in a few minutes on 2 CPU cores: 256 rays of 24 + 24
    # samples at 96 px, a half-width network, 500 iterations with a 2x higher learning rate
    # (1e-3 -> 1e-4, so that it decays within the run), small validation renders
    "cpu-smoke": dict(iters=500, n_rays=256, resolution=96, lr=1e-3, lr_final=1e-4,
                      log_every=10, checkpoint_every=100, val_every=100, val_frames=3,
                      chunk_rays=4096, adnerf=dict(n_coarse=24, n_fine=24, width=64)),
    # the grid backbone at the dataset's resolution, for 2 CPU cores: at most 8 minutes of
    # training in `make demo` (1,600 steps of 2,048 rays; 2,200 steps took 10.7 min there;
    # docs/nerf.md has the measurements behind it)
    "cpu": dict(_GRID_CPU, iters=1600, val_every=800),
    # the same for about an hour, for a user who can wait
    "cpu-long": dict(_GRID_CPU, iters=10000, n_rays=4096, lr_final=1e-4, val_every=1000,
                     checkpoint_every=500),
    # the grid backbone on a GPU: more rays per step, AMP, more steps
    "fast": dict(_GRID_CPU, iters=30000, n_rays=8192, lr_final=1e-4, val_every=2000,
                 checkpoint_every=2000, val_frames=8, chunk_rays=65536),
}
"""Presets by name: overrides of the defaults; a backbone's settings are a dict under its
name."""


def preset_config(name: str | None = None, device: str = "auto", **overrides) -> NerfTrainConfig:
    """A :class:`NerfTrainConfig` from a preset: ``"full"`` (the paper: AD-NeRF MLP, 400k
    iterations), ``"cpu"`` (the grid backbone in about 8 minutes on 2 CPU cores),
    ``"cpu-long"`` (about an hour), ``"fast"`` (the grid backbone on a GPU) or
    ``"cpu-smoke"`` (the AD-NeRF MLP, small, for tests); None picks by device (``full`` with
    CUDA, ``cpu`` otherwise).

    ``overrides`` set any field of the config, or of the chosen backbone's config by its own
    name (e.g. ``width=64`` for AD-NeRF), or the backbone's settings as a whole
    (``adnerf=AdNerfConfig(...)`` or a dict of some of them).

    Raises:
        ConfigError: unknown preset, backbone or field.
    """
    dev = resolve_device(device)
    if name is None:
        name = "full" if dev.type == "cuda" else "cpu"
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    preset = PRESETS[name]
    backbone = overrides.get("backbone", preset.get("backbone", "adnerf"))
    bcls = backbone_class(backbone).config_class
    run_fields = {f.name for f in dataclasses.fields(NerfTrainConfig)}
    b_fields = {f.name for f in dataclasses.fields(bcls)}
    bad = set(overrides) - run_fields - b_fields
    if bad:
        raise ConfigError(f"unknown NeRF training settings {sorted(bad)}")
    given = overrides.get(backbone, {})
    if dataclasses.is_dataclass(given):
        given = dataclasses.asdict(given)
    b_values = {**preset.get(backbone, {}), **given,
                **{k: v for k, v in overrides.items() if k in b_fields - run_fields}}
    values = {**{k: v for k, v in preset.items() if k not in BACKBONES}, "preset": name,
              "device": device, **{k: v for k, v in overrides.items() if k in run_fields}}
    values[backbone] = config_from_dict(bcls, b_values)
    return NerfTrainConfig(**values)
