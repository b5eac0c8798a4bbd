"""``jean train-expression`` (emotion pairs -> features -> DTW alignment -> the expression
transformer, JEAN Sec. 3.2: :func:`jeancore.train.run_expression.run_train_expression`,
settings :class:`~jeancore.train.ExpressionTrainConfig`) and ``jean plot-expression``
(:func:`jeancore.metrics.expression_plots.plot_expression_run`)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import tyro

from ..metrics.expression_plots import EMBEDDINGS, ExpressionPlotConfig
from ..train.expression import ExpressionTrainConfig
from ._options import Refine, peek

__all__ = ["PlotExpression", "TrainExpression"]


@dataclasses.dataclass
class TrainExpression:
    """Emotion pairs (one person, one sentence, two emotions) from MEAD folders or pair lists
    -> per-frame emotion features -> DTW alignment -> the expression transformer (JEAN Sec.
    3.2). Writes checkpoint.pt, TensorBoard logs and metrics.json to --out."""

    pairs: Annotated[tyro.conf.Positional[tuple[str, ...]], tyro.conf.arg(metavar="PAIRS...")]
    """MEAD root / folder of MEAD-named clips, or a pair list (.csv/.json)"""
    out: str
    """run directory"""
    identity: str | None = None
    """train on this identity's pairs (None: all: a generic model)"""
    reference: str | None = None
    """pair every emotion only with this one (paper: neutral)"""
    emotions: str | None = None
    """comma-separated emotions to use (None: all)"""
    val_emotion: str | None = None
    """leave this emotion out of training; validate on it"""
    no_baselines: bool = False
    """skip training the no-swap baseline"""
    resume: bool = False
    """continue an interrupted run"""
    quiet: bool = False
    """no progress bars"""
    config: Annotated[ExpressionTrainConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=ExpressionTrainConfig)

    refine: ClassVar[dict] = {(ExpressionTrainConfig, "init"): Refine(help=(
        "weights to start from: 'generic' (the shipped model), a run directory or checkpoint, "
        "or 'none' (default: generic with --identity, none without); the width options are "
        "then ignored"))}

    @classmethod
    def defaults(cls, args: list[str]) -> TrainExpression:
        """With --identity, fine-tune the shipped generic model unless --init says otherwise."""
        identity = peek(args, identity=str)["identity"]
        return cls(pairs=tyro.MISSING, out=tyro.MISSING,
                   config=ExpressionTrainConfig(init="generic" if identity else None))

    def train_config(self) -> ExpressionTrainConfig:
        """``config`` with ``--init none`` as None (random initialisation)."""
        return dataclasses.replace(self.config, init=None) if self.config.init == "none" \
            else self.config

    def execute(self) -> int:
        import json

        from ..train.run_expression import run_train_expression

        cfg = self.train_config()
        emotions = (tuple(e.strip() for e in self.emotions.split(","))
                    if self.emotions else None)
        metrics = run_train_expression(
            self.pairs, self.out, identity=self.identity, reference=self.reference,
            emotions=emotions, val_emotion=self.val_emotion, config=cfg, resume=self.resume,
            baselines=not self.no_baselines, progress=not self.quiet)
        print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=1))
        print(f"model: {self.out}/checkpoint.pt; metrics: {self.out}/metrics.json")
        return 0


@dataclasses.dataclass
class PlotExpression:
    """A 2-D embedding (PCA or t-SNE) of the per-frame expression codes e_e (and lip codes
    e_l) of MEAD clips coloured by emotion, and the emotion CNN's reading of a linear
    interpolation between two emotions' mean e_e (paper Figs. 5, 7, 8)."""

    run: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN")]
    """run directory of `jean train-expression` (checkpoint.pt)"""
    clips: Annotated[tyro.conf.Positional[tuple[str, ...]], tyro.conf.arg(metavar="CLIPS...")]
    """MEAD root / folder of MEAD-named clips"""
    out: str
    """folder for the PNGs"""
    identity: str | None = None
    """only this identity's clips (None: all)"""
    config: Annotated[ExpressionPlotConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=ExpressionPlotConfig)

    refine: ClassVar[dict] = {(ExpressionPlotConfig, "method"): Refine(choices=EMBEDDINGS)}

    def execute(self) -> int:
        from ..metrics.expression_plots import plot_expression_run

        for path in plot_expression_run(self.run, self.clips, self.out, self.config,
                                        identity=self.identity):
            print(path)
        return 0
