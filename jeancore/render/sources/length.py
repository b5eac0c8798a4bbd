"""The length rule of a rendering: every driving sequence is brought to the output length
(the speech's frame count) by :func:`fit_length`."""

from __future__ import annotations

import numpy as np

__all__ = ["FIT_MODES", "fit_length"]

FIT_MODES = ("pingpong", "loop", "hold")


def fit_length(x, n: int, mode: str = "pingpong"):
    """Bring a per-frame sequence to exactly ``n`` frames along axis 0.

    A longer sequence is cut to its first ``n`` frames. A shorter one (length L) is extended:

    * ``"pingpong"`` (default): forward then backward without repeating the end frames,
      ``0, 1, ..., L-1, L-2, ..., 1, 0, 1, ...`` (period 2L - 2): no jump in expression or
      head pose where the sequence turns.
    * ``"loop"``: ``0, ..., L-1, 0, 1, ...`` (a jump from the last frame to the first).
    * ``"hold"``: the last frame is repeated.

    A one-frame sequence is repeated in every mode.

    Args:
        x: numpy array or torch tensor [L, ...] with L >= 1.
        n: number of output frames (>= 1).
        mode: ``"pingpong"``, ``"loop"`` or ``"hold"``.

    Returns:
        The same type as ``x``, [n, ...]: ``x[index]`` for the index sequence above (a new
        array; ``x`` is not modified).

    Raises:
        ValueError: unknown mode, ``n < 1``, or an empty / 0-d ``x``.
    """
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {FIT_MODES}, got {mode!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    length = len(x) if getattr(x, "ndim", 1) > 0 else 0
    if length < 1:
        raise ValueError("fit_length needs a sequence with at least one frame")
    k = np.arange(n)
    if n <= length:
        idx = k
    elif length == 1 or mode == "hold":
        idx = np.minimum(k, length - 1)
    elif mode == "loop":
        idx = k % length
    else:
        period = 2 * length - 2
        r = k % period
        idx = np.where(r < length, r, period - r)
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x[torch.as_tensor(idx, device=x.device)]
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)[idx]
