"""``jean train-audio`` (the landmark autoencoder, Eq. 1, then the contrastive audio encoder,
Eq. 2: :func:`jeancore.train.train_audio`, settings :class:`~jeancore.train.AudioTrainConfig`;
also under ``torchrun --nproc_per_node=K -m jeancore.cli train-audio ...``, DDP) and
``jean evaluate-audio`` (:func:`jeancore.metrics.audio.evaluate_audio`, settings
:class:`~jeancore.metrics.audio.AudioEvalConfig`)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import tyro

from ..data.dataset import SPLITS
from ..metrics.audio import AudioEvalConfig
from ..train.audio.config import AudioTrainConfig
from ._options import Refine

__all__ = ["EvaluateAudio", "TrainAudio"]


@dataclasses.dataclass
class TrainAudio:
    """Stage 1: landmark autoencoder with mouth swapping (JEAN Eq. 1). Stage 2: audio encoder
    trained with InfoNCE against the frozen mouth codes (Eq. 2). Trains on the training splits
    of the datasets, evaluates on their validation splits; writes model.pt, checkpoints,
    TensorBoard logs (tb/) and metrics.json to --out. Runs under torchrun (DDP) too."""

    datasets: Annotated[tyro.conf.Positional[tuple[str, ...]],
                        tyro.conf.arg(metavar="DATASET_DIR...")]
    """preprocessed datasets with audio; IDENTITY=DIR names the speaker (default: the folder
    name; datasets of one identity are its videos); a `jean preprocess-mead` output folder
    stands for all its takes"""
    out: str
    """run directory"""
    resume: bool = False
    """continue an interrupted run"""
    quiet: bool = False
    """no progress bars"""
    config: Annotated[AudioTrainConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=AudioTrainConfig)

    refine: ClassVar[dict] = {
        (AudioTrainConfig, "min_negative_gap_s"): Refine(aliases=("--min-negative-gap",))}

    def execute(self) -> int:
        import json
        import os

        from ..train.audio import train_audio

        res = train_audio(self.datasets, self.out, self.config, resume=self.resume,
                          progress=not self.quiet)
        if int(os.environ.get("RANK", "0")) == 0:
            m = res.get("metrics", {})
            print(json.dumps({"overall": m.get("overall"), "swap": m.get("swap"),
                              "negatives": res["audio"].get("negative_kinds"),
                              "seconds": {s: round(res[s]["seconds"], 1)
                                          for s in ("landmark", "audio")}}, indent=1))
            print(f"model: {res['model']}; metrics: {self.out}/metrics.json")
        return 0


@dataclasses.dataclass
class EvaluateAudio:
    """Audio-to-mouth retrieval (top-1 / top-5 among --n-candidates frames of the same clip,
    validation split) against chance, and the landmark autoencoder's mouth-swap test. Prints
    JSON."""

    model: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN")]
    """run directory of `jean train-audio`, a model file, or `generic` (the shipped model)"""
    datasets: Annotated[tyro.conf.Positional[tuple[str, ...]],
                        tyro.conf.arg(metavar="DATASET_DIR...")]
    """preprocessed datasets with audio (IDENTITY=DIR as for train-audio)"""
    device: str = "cpu"
    """torch device to run the model on"""
    config: Annotated[AudioEvalConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=AudioEvalConfig)

    refine: ClassVar[dict] = {
        (AudioEvalConfig, "split"): Refine(choices=SPLITS),
        (AudioEvalConfig, "n_candidates"): Refine(aliases=("--candidates",))}

    def execute(self) -> int:
        import json

        from ..train.audio import evaluate_audio, load_audio_datasets, load_audio_model

        model = load_audio_model(self.model, device=self.device)
        res = evaluate_audio(model, load_audio_datasets(self.datasets), self.config)
        print(json.dumps(res, indent=1))
        return 0
