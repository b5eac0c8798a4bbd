"""Data: video/audio I/O, preprocessing of a talking-head video into a dataset, and reading it.

* :func:`preprocess` / :class:`PreprocessConfig` -- ``jean preprocess`` from Python
  (:mod:`.pipeline` runs the steps of :mod:`.steps` through the step cache of
  :mod:`.stepcache`; :mod:`.config` holds the settings, :mod:`.meta` the meta.json).
* :class:`DatasetReader` -- the one reader of a dataset folder; :class:`TalkingHeadDataset`
  -- a torch dataset of one split (train / validation).
* Building blocks: :mod:`.video` (PyAV decode/encode), :mod:`.audio` (speech features per
  frame), :mod:`.sync` (audio-video offset), :mod:`.facecrop` (the clip's crop, the emotion
  CNN's face crop), :mod:`.landmarks` (iBUG-68, dlib), :mod:`.tracking` (3DMM fit) with
  :mod:`.morphable_model` and :mod:`.camera` (conventions, poses, ``tracking.npz``),
  :mod:`.parsing` (person / head / torso masks, background), :mod:`.emotion` (emotion CNN),
  :mod:`.contact_sheet`.
"""

from __future__ import annotations

import importlib

__all__ = ["DatasetReader", "PreprocessConfig", "PreprocessResult", "TalkingHeadDataset",
           "preprocess", "read_meta"]

_LAZY = {"PreprocessConfig": "config", "PreprocessResult": "config", "preprocess": "pipeline",
         "DatasetReader": "dataset", "TalkingHeadDataset": "dataset", "read_meta": "meta"}


def __getattr__(name):
    # imported on first use, so that the per-frame worker processes (which import
    # jeancore.data._workers) start without loading torch
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
