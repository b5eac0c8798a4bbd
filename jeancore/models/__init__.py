"""Networks of JEAN.

* :class:`ExpressionTransformer` -- expression encoder EE / decoder ED (Sec. 3.2, suppl. 8.3),
  with :func:`expression_loss` (Eq. 4) and per-frame expression codes for inference.
"""

from __future__ import annotations

from .expression import ExpressionOutput, ExpressionTransformer, expression_loss

__all__ = ["ExpressionOutput", "ExpressionTransformer", "expression_loss"]
