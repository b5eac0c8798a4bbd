"""jeancore: JEAN (BMVC 2024) expressive talking-face NeRF with fused C++/CUDA kernels.

Sub-packages:
    jeancore.ops  -- fused kernels (ray sampling, inverse transform sampling, volumetric
                     compositing, dynamic time warping) and their pure-PyTorch references.
"""

__version__ = "0.1.0"
