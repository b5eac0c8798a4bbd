"""Every network of JEAN (the ``nn.Module`` s of the method).

* :class:`LandmarkAutoencoder` (LE / LD, Sec. 3.1, Eq. 1), :class:`AudioEncoder` (AD-NeRF
  AudioNet, Eq. 2's e_a), :class:`AudioAttention`, :func:`normalize_landmarks`,
  :func:`info_nce` -- :mod:`jeancore.models.audio`; :class:`AudioModel` -- the trained audio
  side for inference (:mod:`jeancore.models.audio_model`).
* :class:`ExpressionTransformer` -- expression encoder EE / decoder ED (Sec. 3.2, suppl. 8.3),
  with :func:`expression_loss` (Eq. 4) and per-frame expression codes for inference.
* The NeRF (Sec. 3.3): :class:`AudioConditioner` (fine-tuned audio encoder + projection +
  attention smoothing, :mod:`jeancore.models.conditioning`); the backbone seam
  (:class:`Backbone`, :func:`build_backbone`, :data:`BACKBONES`,
  :mod:`jeancore.models.backbone`); the AD-NeRF backbone (:class:`AdNerfBackbone`,
  :class:`AdNerfConfig`, :mod:`jeancore.models.adnerf`) and its field F_theta
  (:class:`NerfMLP`, :mod:`jeancore.models.nerf`, with :func:`positional_encoding`).
"""

from __future__ import annotations

from .expression import ExpressionOutput, ExpressionTransformer, expression_loss
from .audio import (AudioAttention, AudioEncoder, LandmarkAutoencoder, MouthSwapStep, info_nce,
                    mouth_swap_loss, normalize_landmarks)
from .audio_model import AudioModel
from .conditioning import AudioConditioner, smoothing_indices
from .encoding import encoded_dim, positional_encoding
from .nerf import NerfMLP
from .backbone import BACKBONES, Backbone, StepContext, build_backbone, register_backbone
from .adnerf import AdNerfBackbone, AdNerfConfig

__all__ = ["ExpressionOutput", "ExpressionTransformer", "expression_loss"]
__all__ += ["AudioAttention", "AudioEncoder", "AudioModel", "LandmarkAutoencoder",
            "MouthSwapStep", "info_nce", "mouth_swap_loss", "normalize_landmarks"]
__all__ += ["AudioConditioner", "smoothing_indices", "encoded_dim", "positional_encoding",
            "NerfMLP", "BACKBONES", "Backbone", "StepContext", "build_backbone",
            "register_backbone", "AdNerfBackbone", "AdNerfConfig"]
