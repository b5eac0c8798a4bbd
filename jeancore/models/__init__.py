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
* :class:`MiniXception` -- the pretrained emotion CNN whose pooled features are the expression
  transformer's input (:mod:`jeancore.models.emotion_cnn`; loaded and run by
  :mod:`jeancore.data.emotion`).
"""

from __future__ import annotations

from .._lazy import lazy_names

_LAZY = {
    "ExpressionOutput": ".expression", "ExpressionTransformer": ".expression",
    "expression_loss": ".expression",
    "AudioAttention": ".audio", "AudioEncoder": ".audio", "LandmarkAutoencoder": ".audio",
    "MouthSwapStep": ".audio", "info_nce": ".audio", "mouth_swap_loss": ".audio",
    "normalize_landmarks": ".audio",
    "AudioModel": ".audio_model",
    "AudioConditioner": ".conditioning", "smoothing_indices": ".conditioning",
    "encoded_dim": ".encoding", "positional_encoding": ".encoding",
    "NerfMLP": ".nerf",
    "BACKBONES": ".backbone", "Backbone": ".backbone", "StepContext": ".backbone",
    "build_backbone": ".backbone", "register_backbone": ".backbone",
    "AdNerfBackbone": ".adnerf", "AdNerfConfig": ".adnerf",
    "MiniXception": ".emotion_cnn",
}

__all__ = sorted(_LAZY)

# imported on first use: the audio and expression networks load without the NeRF's (which
# need the compiled kernels of jeancore.ops)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
