"""Argument checks shared by the networks of :mod:`jeancore.models`."""

from __future__ import annotations

import torch

from ..errors import BadInputError, ConfigError

__all__ = ["check_int", "known_settings", "swap_flags"]


def check_int(name: str, v, lo: int = 1) -> int:
    """``int(v)`` for a constructor width; ConfigError naming it when it is not an integer
    >= ``lo`` (bools are refused)."""
    if isinstance(v, bool) or int(v) != v or v < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def known_settings(config: dict, keys, what: str) -> dict:
    """``config`` when every key is one of ``keys`` (a model's constructor arguments, as its
    ``config()`` returns them); ConfigError naming the unknown ones otherwise."""
    extra = set(config) - set(keys)
    if extra:
        raise ConfigError(f"unknown {what} settings: {sorted(extra)}")
    return config


def swap_flags(swap, b: int, device) -> torch.Tensor:
    """The per-pair swap decisions of a batch of B pairs as a bool tensor [B] on ``device``:
    None / a bool (the same for all) or a bool tensor [B].

    Raises:
        BadInputError: anything else.
    """
    if swap is None or isinstance(swap, bool):
        return torch.full((b,), bool(swap), dtype=torch.bool, device=device)
    if not isinstance(swap, torch.Tensor) or swap.dtype != torch.bool \
            or tuple(swap.shape) != (b,):
        raise BadInputError(f"swap must be a bool tensor [B={b}], a bool or None")
    return swap.to(device)
