"""Positional encoding of NeRF (Mildenhall et al. 2020, Sec. 5.1), as used by AD-NeRF and JEAN
(suppl. 8.4.2: 10 frequencies for the 3-D point x, 4 for the viewing direction d)."""

from __future__ import annotations

import torch

__all__ = ["encoded_dim", "positional_encoding"]


def encoded_dim(in_dim: int, n_freqs: int, include_input: bool = True) -> int:
    """Width of :func:`positional_encoding`'s output: ``in_dim * (include_input + 2 n_freqs)``
    (63 for a point with 10 frequencies, 27 for a direction with 4)."""
    return in_dim * (int(include_input) + 2 * n_freqs)


def positional_encoding(x: torch.Tensor, n_freqs: int, include_input: bool = True
                        ) -> torch.Tensor:
    """gamma(x) = (x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)).

    NeRF's ``Embedder`` with ``log_sampling=True`` (frequency bands 2^0 .. 2^(L-1), no factor
    pi), the layout AD-NeRF uses: the input first, then for each frequency the sines of all
    coordinates followed by their cosines.

    Args:
        x: float tensor [..., D] (points in the normalised head space, or unit directions).
        n_freqs: L >= 0.
        include_input: prepend x itself (NeRF and AD-NeRF do).

    Returns:
        float tensor [..., D * (include_input + 2 L)], same dtype and device as x.

    Raises:
        ValueError: n_freqs < 0, or nothing to output (L = 0 without the input).
    """
    if n_freqs < 0 or (n_freqs == 0 and not include_input):
        raise ValueError(f"n_freqs must be >= 0 (and > 0 without the input), got {n_freqs}")
    parts = [x] if include_input else []
    if n_freqs:
        freqs = 2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)   # [L]
        xf = x[..., None, :] * freqs[:, None]                                 # [..., L, D]
        parts.append(torch.cat([torch.sin(xf), torch.cos(xf)], dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1)
