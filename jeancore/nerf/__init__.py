"""JEAN's dynamic NeRF conditioned on audio and expression (Sec. 3.3, suppl. 8.4).

* :class:`NerfMLP` / :class:`NerfModel` -- F_theta(e_in, d, x) -> (c, sigma), coarse + fine.
* :class:`AudioConditioner` -- audio encoder (fine-tuned) + projection + attention smoothing.
* :func:`render_rays`, :func:`render_image`, :class:`RayOps` -- hierarchical volume rendering
  with the fused kernels of :mod:`jeancore.ops` or their pure-torch references.
* :func:`train_nerf`, :class:`NerfTrainConfig`, :func:`preset_config` -- training
  (``jean train``).
* :func:`load_nerf_run` / :class:`NerfRun` -- a trained run, for rendering.

Documentation: docs/nerf.md.
"""

from __future__ import annotations

import importlib

_LAZY = {"AudioConditioner": "conditioning", "smoothing_indices": "conditioning",
         "encoded_dim": "encoding", "positional_encoding": "encoding",
         "NerfMLP": "model", "NerfModel": "model",
         "RayOps": "renderer", "render_image": "renderer", "render_rays": "renderer",
         "NerfRun": "run", "load_nerf_run": "run",
         "NerfTrainConfig": "train", "preset_config": "train", "read_nerf_checkpoint": "train",
         "train_nerf": "train"}

__all__ = sorted(_LAZY)


def __getattr__(name):
    # imported on first use, so that `jean --help` (which imports jeancore.nerf.cli) does not
    # load torch
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
