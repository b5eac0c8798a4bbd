"""``jean render`` (a trained model driven by speech, an expression video and a head-pose
source -> mp4: :func:`jeancore.render.pipeline.render`, settings
:class:`~jeancore.render.pipeline.RenderConfig`) and ``jean evaluate`` (self- and
cross-driven metrics: :func:`jeancore.render.run_eval.evaluate_run`, settings
:class:`~jeancore.render.run_eval.EvaluateConfig`)."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, ClassVar

import tyro

from ..render.pipeline import COMPOSITES, RenderConfig, render
from ..render.run_eval import EvaluateConfig
from ..render.sources.length import FIT_MODES
from ._options import Refine

__all__ = ["Evaluate", "Render"]


@dataclasses.dataclass
class Render:
    """Drive a trained JEAN NeRF with speech (lip sync), an expression video (facial
    expression) and a head-pose source. The audio's length sets the video's; writes OUT.mp4
    (with the audio) and OUT_grid.png (expression source | output)."""

    run: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN")]
    """run directory of `jean train`"""
    audio: str
    """speech: an audio file or a video with sound"""
    expression: str
    """a face video giving the expression"""
    out: str
    """output .mp4"""
    pose: str = inspect.signature(render).parameters["pose"].default
    """'dataset' (the training poses), 'frozen', a dataset folder, or a video whose head
    motion is retargeted"""
    dataset: str | None = None
    """the training dataset folder (None: the run's)"""
    quiet: bool = False
    """no progress bars"""
    config: Annotated[RenderConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=RenderConfig)

    refine: ClassVar[dict] = {(RenderConfig, "composite"): Refine(choices=COMPOSITES),
                              (RenderConfig, "fit"): Refine(choices=FIT_MODES)}

    def execute(self) -> int:
        res = render(self.run, self.audio, self.expression, self.pose, self.out, self.config,
                     dataset=self.dataset, progress=not self.quiet)
        print(f"video: {res.video} ({res.n_frames} frames, {res.n_frames / res.fps:.2f} s, "
              f"{res.size}x{res.size}, with audio)")
        if res.pasted is not None:
            print(f"pasted back into the source video: {res.pasted}")
        if res.grid is not None:
            print(f"grid:  {res.grid}")
        print(f"rendering {res.render_fps:.2f} frames/s; total {res.seconds:.1f} s")
        return 0


@dataclasses.dataclass
class Evaluate:
    """Self-driven: render the validation frames with their own audio, expression and pose;
    PSNR/SSIM on the face crop and on the full frame, LMD, M-LMD, F-LMD, LMDV, and
    compare.mp4 (ground truth | render). Cross-driven (--audio and --expression from other
    clips): identity distance, Exp-Diff. Both: audio-lip agreement from jeancore's own audio
    and landmark encoders, and the lip-speech sync z-score (lip opening vs speech envelope;
    neither is SyncNet: LSE-C / LSE-D with --syncnet-weights). Writes JSON and prints a
    table."""

    run: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN")]
    """run directory of `jean train`"""
    dataset: str | None = None
    """the training dataset folder (None: the run's)"""
    audio: str | None = None
    """speech of the cross-driven test"""
    expression: str | None = None
    """face video of the cross-driven test"""
    out: str | None = None
    """JSON file (None: RUN/evaluation.json); compare.mp4 (ground truth | render) beside it"""
    audio_model: str | None = None
    """encoders of the audio-lip score (None: the shipped generic ones)"""
    lpips_weights: str | None = None
    """LPIPS weights (see docs/evaluation.md)"""
    syncnet_weights: str | None = None
    """SyncNet weights (syncnet_v2.model) for LSE-C / LSE-D"""
    rendered: str | None = None
    """the cross-driven output already rendered by `jean render` with --audio/--expression
    (its frames are evaluated instead of rendering them again)"""
    quiet: bool = False
    """no progress bars"""
    config: Annotated[EvaluateConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=EvaluateConfig)

    def execute(self) -> int:
        from pathlib import Path

        from ..render.evaluate import format_audio_lip, format_table
        from ..render.run_eval import evaluate_run

        out = Path(self.out) if self.out else Path(self.run) / "evaluation.json"
        res = evaluate_run(self.run, self.config, dataset=self.dataset, audio=self.audio,
                           expression=self.expression, out=out, audio_model=self.audio_model,
                           lpips_weights=self.lpips_weights,
                           syncnet_weights=self.syncnet_weights, progress=not self.quiet,
                           compare=out.with_name("compare.mp4"), rendered=self.rendered)
        print(format_table({k: v for k, v in res.items() if k in ("self", "cross")}))
        lip = format_audio_lip(res)
        if lip:
            print(lip)
        if res.get("compare"):
            print(f"ground truth | render: {res['compare']}")
        print(f"metrics: {out}")
        return 0

