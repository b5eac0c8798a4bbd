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

from .._lazy import lazy_names

_LAZY = {"load_audio_model": "..checkpoints", "load_expression_model": "..checkpoints",
         "evaluate_audio": "..metrics.audio", "AudioModel": "..models.audio_model",
         "AudioTrainConfig": ".audio", "train_audio": ".audio",
         "ExpressionTrainConfig": ".expression", "evaluate_expression": ".expression",
         "train_expression": ".expression",
         "NerfTrainConfig": ".nerf", "NerfTrainer": ".nerf", "preset_config": ".nerf",
         "train_nerf": ".nerf"}

__all__ = sorted(_LAZY)

# imported on first use: `jean train-audio` loads neither the NeRF nor its kernels
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
