"""Data: video/audio I/O, preprocessing of a talking-head video into a dataset, and loading it.

* :func:`preprocess` / :class:`PreprocessConfig` -- ``jean preprocess`` from Python.
* :class:`TalkingHeadDataset` -- load a preprocessed dataset (train / validation split).
* Building blocks: :mod:`.video` (PyAV decode/encode), :mod:`.audio` (speech features per
  frame), :mod:`.landmarks` (iBUG-68, dlib), :mod:`.tracking` (3DMM fit, cameras),
  :mod:`.parsing` (person / head / torso masks, background), :mod:`.emotion` (emotion CNN),
  :mod:`.contact_sheet`; :mod:`.pipeline` runs them in order.
"""

from .dataset import TalkingHeadDataset, read_meta
from .pipeline import PreprocessConfig, PreprocessResult, preprocess

__all__ = ["PreprocessConfig", "PreprocessResult", "TalkingHeadDataset", "preprocess",
           "read_meta"]
