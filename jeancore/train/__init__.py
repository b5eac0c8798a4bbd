"""Training loops of JEAN's networks.

* :func:`train_expression` / :class:`ExpressionTrainConfig` -- the expression transformer
  (Sec. 3.2, Eq. 4) on DTW-aligned emotion-feature pairs; :func:`load_expression_model`
  reads its checkpoint, :func:`evaluate_expression` measures Eq. 4's L1.
* :func:`train_audio` / :class:`AudioTrainConfig` -- landmark autoencoder (Eq. 1) and
  contrastive audio encoder (InfoNCE, Eq. 2); :func:`load_audio_model` (a run or the shipped
  generic model) gives an :class:`AudioModel`; :func:`evaluate_audio` measures retrieval and
  the swap test.
"""

from __future__ import annotations

from .expression import (ExpressionTrainConfig, evaluate_expression, load_expression_model,
                         train_expression)

from .audio import (AudioModel, AudioTrainConfig, evaluate_audio, load_audio_model,
                    train_audio)

__all__ = ["ExpressionTrainConfig", "evaluate_expression", "load_expression_model",
           "train_expression"]
__all__ += ["AudioModel", "AudioTrainConfig", "evaluate_audio", "load_audio_model",
            "train_audio"]
