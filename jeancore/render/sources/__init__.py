"""The three driving sources of a rendering, on the output frame grid (JEAN Sec. 3, 4.1;
suppl. 8.5), and the rule that brings them to one length.

* **Speech** (:func:`audio_windows`, :mod:`.speech`): any audio file or video with sound,
  decoded to 16 kHz mono, turned into the *same* per-frame feature windows preprocessing
  computed for the training dataset. The audio's length sets the output length:
  ``T = round(duration * fps)`` frames.
* **Expression** (:func:`expression_source`, :mod:`.expression`): any face video; per frame the
  128-d emotion-CNN feature the expression transformer takes (Sec. 3.2), computed the way
  preprocessing does, plus the colour face crops for the frame grid.
* **Head pose** (:func:`head_poses`, :mod:`.pose`): camera-to-head transforms for the trained
  identity's camera -- from a video (3DMM-tracked, retargeted), from a dataset folder (its
  ``tracking.npz``), or frozen.
* **Length** (:func:`fit_length`, :mod:`.length`): shorter sequences are extended (ping-pong by
  default), longer ones cut.

:mod:`.face_video` decodes a driving video through one face crop with landmarks, for the
expression and head-pose sources. At the top the modules import only numpy and
:mod:`jeancore.data.camera` (numpy and SciPy); torch, dlib and the dataset reader are loaded on
use.
"""

from __future__ import annotations

from .expression import ExpressionSource, expression_source
from .length import FIT_MODES, fit_length
from .pose import frozen_pose, head_poses, retarget_poses
from .speech import audio_feature_config, audio_windows

__all__ = ["ExpressionSource", "FIT_MODES", "audio_windows", "audio_feature_config",
           "expression_source", "head_poses", "fit_length", "retarget_poses", "frozen_pose"]
