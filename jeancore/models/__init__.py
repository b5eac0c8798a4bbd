"""Networks of JEAN.

* :class:`ExpressionTransformer` -- expression encoder EE / decoder ED (Sec. 3.2, suppl. 8.3),
  with :func:`expression_loss` (Eq. 4) and per-frame expression codes for inference.
* :class:`LandmarkAutoencoder` (LE / LD, Sec. 3.1, Eq. 1), :class:`AudioEncoder` (AD-NeRF
  AudioNet, Eq. 2's e_a), :func:`normalize_landmarks`, :func:`info_nce` -- see
  :mod:`jeancore.models.audio`.
"""

from __future__ import annotations

from .expression import ExpressionOutput, ExpressionTransformer, expression_loss
from .audio import (AudioAttention, AudioEncoder, LandmarkAutoencoder, info_nce,
                    mouth_swap_loss, normalize_landmarks)

__all__ = ["ExpressionOutput", "ExpressionTransformer", "expression_loss"]
__all__ += ["AudioAttention", "AudioEncoder", "LandmarkAutoencoder", "info_nce",
            "mouth_swap_loss", "normalize_landmarks"]
