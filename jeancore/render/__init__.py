"""Rendering a trained JEAN model from three driving sources, and evaluating the result.

* :mod:`.sources` -- the driving sources (JEAN Sec. 3, 4.1; suppl. 8.5): speech windows
  (:func:`audio_windows`), expression features (:func:`expression_source`), head poses
  (:func:`head_poses`) and the length rule (:func:`fit_length`).
* :mod:`.evaluate` -- self-driven and cross-driven metrics (:func:`evaluate_self`,
  :func:`evaluate_cross`, :func:`format_table`), see ``docs/evaluation.md``.

Names are imported on first use, so ``import jeancore.render`` loads neither torch nor dlib.
"""

from __future__ import annotations

from .._lazy import lazy_names

__all__ = ["ExpressionSource", "audio_windows", "expression_source", "head_poses", "fit_length",
           "evaluate_self", "evaluate_cross", "format_table"]

_LAZY = {"ExpressionSource": ".sources", "audio_windows": ".sources",
         "expression_source": ".sources", "head_poses": ".sources", "fit_length": ".sources",
         "evaluate_self": ".evaluate", "evaluate_cross": ".evaluate", "format_table": ".evaluate"}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)
