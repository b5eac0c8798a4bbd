"""jeancore: JEAN (BMVC 2024) expressive talking-face NeRF with fused C++/CUDA kernels.

Sub-packages (docs/architecture.md): ``data`` (preprocessing, datasets), ``models`` (every
network of the method, the NeRF backbone seam), ``train`` (every training loop),
``checkpoints`` (checkpoint files, loaders of trained and shipped models), ``nerf`` (volume
rendering, trained runs), ``render`` (driving sources, ``jean render`` / ``jean evaluate``),
``metrics``, ``ops`` (fused kernels: ray sampling, inverse transform sampling, volumetric
compositing, dynamic time warping, and their pure-PyTorch references).
"""

__version__ = "0.1.0"
