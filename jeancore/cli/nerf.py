"""``jean train``: the dynamic NeRF of one preprocessed video (JEAN Sec. 3.3;
:func:`jeancore.train.train_nerf`). Every field of :class:`~jeancore.train.NerfTrainConfig`
is an option, the backbones' settings as ``--<backbone>.<field>`` (e.g. ``--adnerf.width``);
``--preset NAME`` picks the defaults of all of them (``jeancore.train.PRESETS``)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import tyro

from ..models.backbone import BACKBONES
from ..nerf.volume_rendering import OPS_BACKENDS
from ..train.nerf_config import PRESETS, NerfTrainConfig, preset_config
from ._options import Refine, peek

__all__ = ["Train"]


@dataclasses.dataclass
class Train:
    """Train JEAN's dynamic NeRF (Sec. 3.3) on a dataset made by `jean preprocess`: rays of one
    frame per step (mostly in the face box) rendered by the backbone (AD-NeRF: coarse + fine
    networks) conditioned on the fine-tuned audio encoder and the frozen expression
    transformer, photometric MSE. Writes checkpoint.pt (every K steps and on Ctrl-C),
    TensorBoard logs (tb/), validation images (val/) and metrics.json to --out. The defaults
    shown are those of the preset (`jean train --preset NAME --help` shows another's).
    Documentation: docs/nerf.md."""

    dataset: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="DATASET")]
    """dataset directory (jean preprocess --out)"""
    out: str
    """run directory"""
    audio_encoder: str | None = None
    """audio-encoder run directory or checkpoint (None: the shipped generic one)"""
    expression_encoder: str | None = None
    """expression-transformer run directory or checkpoint (None: the shipped generic one)"""
    minutes: float | None = None
    """stop after this many minutes of training (alias: sets --time-limit-s to 60 x M)"""
    fixed_background: bool = False
    """train against the dataset's background only, AD-NeRF (alias of
    --no-random-background)"""
    resume: bool = False
    """continue an interrupted run"""
    quiet: bool = False
    """no progress bar"""
    config: Annotated[NerfTrainConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=NerfTrainConfig)

    refine: ClassVar[dict] = {
        (NerfTrainConfig, "preset"): Refine(choices=tuple(PRESETS), help=(
            "the preset whose values are the defaults of the other options (the paper's "
            "'full' with a GPU, 'cpu' without); options given override them")),
        (NerfTrainConfig, "backbone"): Refine(choices=tuple(BACKBONES)),
        (NerfTrainConfig, "ops"): Refine(choices=OPS_BACKENDS),
    }

    @classmethod
    def defaults(cls, args: list[str]) -> Train:
        """The preset's values (``--preset``, else by ``--device``) as the defaults."""
        p = peek(args, preset=str, device=str, backbone=str)
        over = {"backbone": p["backbone"]} if p["backbone"] else {}
        return cls(dataset=tyro.MISSING, out=tyro.MISSING,
                   config=preset_config(p["preset"], p["device"] or "auto", **over))

    def train_config(self) -> NerfTrainConfig:
        """``config`` with the aliases (``--minutes``, ``--fixed-background``) applied."""
        cfg = self.config
        if self.minutes is not None:
            cfg = dataclasses.replace(cfg, time_limit_s=60.0 * self.minutes)
        if self.fixed_background:
            cfg = dataclasses.replace(cfg, random_background=False)
        return cfg

    def execute(self) -> int:
        from ..train import train_nerf

        cfg = self.train_config()
        res = train_nerf(self.dataset, self.out, cfg, audio_encoder=self.audio_encoder,
                         expression_model=self.expression_encoder, resume=self.resume,
                         progress=not self.quiet)
        first, last = res["val"][0], res["val"][-1]
        print(f"NeRF ({cfg.preset}, {res['device']}): {res['step']} steps, "
              f"{res['it_per_s']:.2f} it/s, {res['rays_per_s']:.0f} rays/s")
        print(f"  validation (head region): PSNR {first['psnr']:.2f} -> {last['psnr']:.2f} dB, "
              f"SSIM {first['ssim']:.3f} -> {last['ssim']:.3f} (steps {first['step']} -> "
              f"{last['step']})")
        print(f"  run: {self.out}/checkpoint.pt, images {self.out}/val/, logs {self.out}/tb")
        return 0
