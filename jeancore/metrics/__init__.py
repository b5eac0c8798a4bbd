"""Every metric of jeancore.

* :mod:`.expression` -- the expression transformer: linear separability of its codes,
  reconstruction baselines.
* :mod:`.audio` -- the audio side: audio-to-mouth retrieval, the mouth-swap test,
  :func:`~.audio.evaluate_audio`, :func:`~.audio.audio_lip_agreement`.
* :mod:`.face` -- rendered faces: PSNR (the one PSNR of jeancore), SSIM, LMD, identity
  distance, Exp-Diff, LPIPS / LSE-C with user weights.
"""

from .expression import (clip_codes, copy_previous_l1, linear_separability, mean_feature_l1,
                         separability)
from . import face  # rendered faces: PSNR, SSIM, LMD, identity distance, Exp-Diff, ...

__all__ = ["clip_codes", "copy_previous_l1", "linear_separability", "mean_feature_l1",
           "separability", "face"]
