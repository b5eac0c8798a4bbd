"""Training loops of JEAN's networks, all on one run skeleton (:mod:`jeancore.train._run`:
checkpoints, resume checks, RNG state, TensorBoard, progress bar, Ctrl-C).

* :func:`train_audio` / :class:`AudioTrainConfig` -- landmark autoencoder (Eq. 1) and
  contrastive audio encoder (InfoNCE, Eq. 2), :mod:`jeancore.train.audio` (``jean
  train-audio``).
* :func:`train_expression` / :class:`ExpressionTrainConfig` -- the expression transformer
  (Sec. 3.2, Eq. 4) on DTW-aligned emotion-feature pairs; :func:`evaluate_expression`
  measures Eq. 4's L1 (``jean train-expression``: :mod:`jeancore.train.run_expression`).
* :func:`train_nerf` / :class:`NerfTrainConfig` / :func:`preset_config` /
  :class:`NerfTrainer` -- the dynamic NeRF (Sec. 3.3, Eq. 6), :mod:`jeancore.train.nerf`
  (``jean train``).

Loading trained models is inference and lives outside training (:mod:`jeancore.checkpoints`:
:func:`load_audio_model`, :func:`load_expression_model`; :func:`jeancore.nerf.load_nerf_run`);
the two loaders are re-exported here.
"""

from __future__ import annotations

from ..checkpoints import load_audio_model, load_expression_model
from ..metrics.audio import evaluate_audio
from ..models.audio_model import AudioModel
from .audio import AudioTrainConfig, train_audio
from .expression import ExpressionTrainConfig, evaluate_expression, train_expression
from .nerf import NerfTrainConfig, NerfTrainer, preset_config, train_nerf

__all__ = ["AudioModel", "AudioTrainConfig", "evaluate_audio", "load_audio_model",
           "train_audio", "ExpressionTrainConfig", "evaluate_expression",
           "load_expression_model", "train_expression", "NerfTrainConfig", "NerfTrainer",
           "preset_config", "train_nerf"]
