"""Fused kernels of jeancore, each with a pure-PyTorch / NumPy reference in
:mod:`jeancore.ops.reference`.

* :func:`generate_rays`, :func:`sample_along_rays` -- camera rays and coarse ray samples.
* :func:`sample_pdf`, :func:`merge_samples`, :func:`fine_samples` -- hierarchical sampling.
* :func:`composite` -- volumetric compositing with fused forward/backward.
* :func:`hash_encode`, :class:`HashGrid` -- multiresolution hash encoding (Instant-NGP).
* :func:`march_rays`, :class:`OccupancyGrid` -- ray marching with empty-space skipping.
* :func:`composite_packed` -- compositing of packed samples (the output of ``march_rays``).
* :func:`dtw`, :func:`align` -- batched dynamic time warping with paths.

The operators are also registered with the PyTorch dispatcher as ``torch.ops.jeancore.*``.
"""

from ._registry import built_with_cuda, cuda_available
from .composite import composite, composite_packed
from .dtw import DTWResult, align, dtw, pairwise_cost
from .encoding import HashGrid, hash_encode, hash_grid_levels
from .marching import OccupancyGrid, march_rays
from .pdf import fine_samples, merge_samples, sample_pdf
from .rays import generate_rays, sample_along_rays

__all__ = [
    "DTWResult",
    "HashGrid",
    "OccupancyGrid",
    "align",
    "built_with_cuda",
    "composite",
    "composite_packed",
    "cuda_available",
    "dtw",
    "fine_samples",
    "generate_rays",
    "hash_encode",
    "hash_grid_levels",
    "march_rays",
    "merge_samples",
    "pairwise_cost",
    "sample_along_rays",
    "sample_pdf",
]
