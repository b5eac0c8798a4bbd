"""Rendering JEAN's dynamic NeRF conditioned on audio and expression (Sec. 3.3, suppl. 8.4).

* :class:`RayOps`, :class:`HierarchicalSampler`, :class:`RenderedRays`, :func:`render_image`
  -- volume rendering with the fused kernels of :mod:`jeancore.ops` or their pure-torch
  references (:mod:`jeancore.nerf.volume_rendering`), the parts every backbone shares.
* :func:`load_nerf_run` / :class:`NerfRun` -- a trained run, for rendering
  (:mod:`jeancore.nerf.run`).
* :func:`load_nerf_data` / :class:`NerfData` -- a dataset at the training resolution
  (:mod:`jeancore.nerf.data`).

The networks (the AD-NeRF backbone, its field F_theta, the audio conditioner, the backbone
seam) are in :mod:`jeancore.models`; training (``jean train``) is
:func:`jeancore.train.train_nerf`. Documentation: docs/nerf.md.
"""

from __future__ import annotations

from .._lazy import lazy_names

_LAZY = {"HierarchicalSampler": ".volume_rendering", "RayOps": ".volume_rendering",
         "RenderedRays": ".volume_rendering", "render_image": ".volume_rendering",
         "NerfRun": ".run", "load_nerf_run": ".run",
         "NerfData": ".data", "load_nerf_data": ".data", "face_rects": ".data",
         "pixel_grid": ".data"}

__all__ = sorted(_LAZY)

# imported on first use: importing jeancore.nerf loads no torch
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
