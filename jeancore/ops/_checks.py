"""Input normalisation shared by the public wrappers.

The C++ operators validate dtype, device, shape and contiguity themselves (TypeError /
ValueError with the argument's name). The wrappers only do what a user expects a Python API
to do for them: accept non-contiguous tensors and Python numbers, and broadcast the documented
shorthand forms, with a clear error when an argument is not a tensor at all.
"""

from __future__ import annotations

import torch


def as_tensor(name: str, value) -> torch.Tensor:
    """Returns ``value`` if it is a tensor; raises TypeError naming the argument otherwise."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def per_ray(name: str, value, like: torch.Tensor, n: int) -> torch.Tensor:
    """A per-ray quantity [N] from a tensor [N] / [N, 1] / [] or a Python number."""
    if isinstance(value, (int, float)):
        return torch.full((n,), float(value), dtype=like.dtype, device=like.device)
    value = as_tensor(name, value)
    if value.dim() == 0:
        return value.expand(n).contiguous()
    if value.dim() == 2 and value.shape[1] == 1:
        value = value[:, 0]
    return value.contiguous()


def check_floating(name: str, t: torch.Tensor) -> None:
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
