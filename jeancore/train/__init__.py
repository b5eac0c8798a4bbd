"""Training loops of JEAN's networks.

* :func:`train_expression` / :class:`ExpressionTrainConfig` -- the expression transformer
  (Sec. 3.2, Eq. 4) on DTW-aligned emotion-feature pairs; :func:`load_expression_model`
  reads its checkpoint, :func:`evaluate_expression` measures Eq. 4's L1.
"""

from __future__ import annotations

from .expression import (ExpressionTrainConfig, evaluate_expression, load_expression_model,
                         train_expression)

__all__ = ["ExpressionTrainConfig", "evaluate_expression", "load_expression_model",
           "train_expression"]
