"""Data: video/audio I/O, preprocessing of a talking-head video into a dataset, and loading it.

* :func:`preprocess` / :class:`PreprocessConfig` -- ``jean preprocess`` from Python.
* :class:`TalkingHeadDataset` -- load a preprocessed dataset (train / validation split).
* Building blocks: :mod:`.video` (PyAV decode/encode), :mod:`.audio` (speech features per
  frame), :mod:`.landmarks` (iBUG-68, dlib), :mod:`.tracking` (3DMM fit, cameras),
  :mod:`.parsing` (person / head / torso masks, background), :mod:`.emotion` (emotion CNN),
  :mod:`.contact_sheet`; :mod:`.pipeline` runs them in order.
"""

from __future__ import annotations

import importlib

__all__ = ["PreprocessConfig", "PreprocessResult", "TalkingHeadDataset", "preprocess",
           "read_meta"]

_LAZY = {"PreprocessConfig": "pipeline", "PreprocessResult": "pipeline", "preprocess": "pipeline",
         "TalkingHeadDataset": "dataset", "read_meta": "dataset"}


def __getattr__(name):
    # imported on first use, so that the per-frame worker processes (which import
    # jeancore.data._workers) start without loading torch
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
