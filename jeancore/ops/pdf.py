"""Hierarchical (fine) sampling: inverse transform sampling of the coarse weights (NeRF Sec. 5.2)."""

from __future__ import annotations

import torch

from ._checks import as_tensor
from ._registry import OPS

__all__ = ["sample_pdf", "merge_samples", "fine_samples", "inverse_transform_uniforms"]


def inverse_transform_uniforms(n_rays: int, n_samples: int, stratified: bool, generator,
                               like: torch.Tensor) -> torch.Tensor:
    """The uniforms u of inverse transform sampling as :func:`sample_pdf` draws them (NeRF's
    u): ``linspace(0, 1, n_samples)`` [n_samples] when not ``stratified``; otherwise
    u_k = (k + U_k) / n_samples [n_rays, n_samples] with U from ``generator``. Same dtype and
    device as ``like``; pass them to :func:`jeancore.ops.reference.sample_pdf_reference` to
    reproduce the kernel's draws."""
    if not stratified:
        return torch.linspace(0.0, 1.0, n_samples, dtype=like.dtype, device=like.device)
    k = torch.arange(n_samples, dtype=like.dtype, device=like.device)
    jitter = torch.rand((n_rays, n_samples), generator=generator, dtype=like.dtype,
                        device=like.device)
    return (k + jitter) / n_samples


def sample_pdf(bins, weights, n_samples: int, *, stratified: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverse transform sampling of a piecewise-constant PDF along each ray.

    Exactly NeRF's ``sample_pdf`` (as used by AD-NeRF / JEAN for the fine pass): weights + 1e-5,
    normalised to a PDF, CDF with a leading 0, ``searchsorted(cdf, u, right=True)``, linear
    interpolation inside the bracketing bin, denominators below 1e-5 replaced by 1. One
    deliberate difference: the CDF is clamped to 1 and its last entry is exactly 1 (NeRF's float
    sum lands an ulp either side of 1, so its CDF can decrease at the end and its sample for
    u = 1 jumps between the last bin edges; ours is always the last edge).
    u is ``linspace(0, 1, n_samples)`` (NeRF's deterministic mode) or, with ``stratified=True``,
    one uniform draw per equal-probability stratum, u_k = (k + U_k) / n_samples. (NeRF's random
    mode draws u unsorted; stratified draws have the same marginal law, lower variance and give
    sorted samples.) No gradient flows to ``bins`` or ``weights`` (they are detached).

    Args:
        bins: bin edges along each ray, float32/float64 [N, S + 1], ascending.
        weights: non-negative bin weights [N, S] (e.g. coarse compositing weights).
        n_samples: number of depths to draw per ray (>= 1).
        stratified: stratified random u instead of the deterministic linspace.
        generator: torch.Generator on the inputs' device, for reproducible draws.

    Returns:
        t [N, n_samples], ascending along each ray, inside [bins[:, 0], bins[:, -1]]. A ray
        with NaN weights or bins gets NaN samples (propagated, not checked).

    Raises:
        TypeError: non-tensor inputs or dtype not float32/float64 (or mixed).
        ValueError: shapes not [N, S + 1] / [N, S], S < 1, n_samples < 1, different devices.
    """
    bins = as_tensor("bins", bins).detach().contiguous()
    weights = as_tensor("weights", weights).detach().contiguous()
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    n_rays = weights.shape[0] if weights.dim() >= 1 else 0
    u = inverse_transform_uniforms(n_rays, n_samples, stratified, generator, weights)
    return OPS.sample_pdf(bins, weights, u)


def merge_samples(t_coarse: torch.Tensor, t_fine: torch.Tensor) -> torch.Tensor:
    """Sorted union of coarse and fine depths, [N, S] + [N, n] -> [N, S + n] (NeRF's fine pass
    evaluates the network at all of them). Gradients are not needed here: depths are samples."""
    t_coarse = as_tensor("t_coarse", t_coarse)
    t_fine = as_tensor("t_fine", t_fine)
    if t_coarse.dim() != 2 or t_fine.dim() != 2 or t_coarse.shape[0] != t_fine.shape[0]:
        raise ValueError(
            f"t_coarse and t_fine must be [N, S] and [N, n]; got {list(t_coarse.shape)} and "
            f"{list(t_fine.shape)}")
    return torch.sort(torch.cat([t_coarse.detach(), t_fine.detach()], dim=-1), dim=-1).values


def fine_samples(t_coarse, weights, n_fine: int, *, stratified: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """NeRF's hierarchical sampling step in one call (as AD-NeRF's ``render_rays``).

    Bins are the midpoints of the coarse depths, the PDF the coarse weights without the first
    and last sample (``weights[:, 1:-1]``); the ``n_fine`` new depths are merged with the coarse
    ones.

    Args:
        t_coarse: coarse depths [N, S], ascending, S >= 3.
        weights: coarse compositing weights [N, S] (from ``composite``).
        n_fine: number of fine depths per ray.

    Returns:
        t [N, S + n_fine], sorted.

    Raises:
        ValueError: S < 3 or mismatched shapes (and the errors of ``sample_pdf``).
    """
    t_coarse = as_tensor("t_coarse", t_coarse)
    weights = as_tensor("weights", weights)
    if t_coarse.dim() != 2 or t_coarse.shape[1] < 3 or weights.shape != t_coarse.shape:
        raise ValueError(
            "fine_samples needs t_coarse and weights of the same shape [N, S] with S >= 3; got "
            f"{list(t_coarse.shape)} and {list(weights.shape)}")
    mids = 0.5 * (t_coarse[:, 1:] + t_coarse[:, :-1])
    t_fine = sample_pdf(mids, weights[:, 1:-1], n_fine, stratified=stratified,
                        generator=generator)
    return merge_samples(t_coarse, t_fine)
