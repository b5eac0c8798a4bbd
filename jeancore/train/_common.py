"""Pieces every training loop shares: the device a setting names, and the random-number state
a checkpoint stores so that a resumed run continues exactly."""

from __future__ import annotations

import random

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["check_ints", "resolve_device", "rng_state", "set_rng_state"]


def check_ints(config, names, lo: int = 1, *, optional: bool = False) -> None:
    """Checks that each named field of ``config`` is an integer >= ``lo`` (not a bool; None
    allowed with ``optional``).

    Raises:
        ConfigError: naming the field, the bound and the value.
    """
    for name in names:
        v = getattr(config, name)
        if optional and v is None:
            continue
        if isinstance(v, bool) or int(v) != v or v < lo:
            raise ConfigError(f"{name} must be {'None or ' if optional else ''}an integer "
                              f">= {lo}, got {v!r}")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; otherwise the torch device named.

    Raises:
        ConfigError: not a device name, or CUDA asked for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"bad device {name!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return dev


def rng_state(device: torch.device) -> dict:
    """torch (CPU and, on CUDA, the device's), NumPy's global and Python's random states, as
    tensors and plain types (loadable with ``torch.load(weights_only=True)``)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                       "cached_gaussian": float(np_state[4])},
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restores what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
