"""Volumetric compositing along rays with a fused forward and backward (JEAN Sec. 3.3)."""

from __future__ import annotations

import torch

from ._checks import as_tensor
from ._registry import OPS

__all__ = ["composite", "composite_packed"]


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigma, rgb, t, rays_d, background, last_sample_is_background):
        color, depth, opacity, weights = OPS.composite_forward(
            sigma, rgb, t, rays_d, background, last_sample_is_background)
        # O(1) state per ray: the inputs and the per-ray outputs, no per-sample T or weights.
        ctx.save_for_backward(sigma, rgb, t, rays_d, background, color, depth, opacity)
        ctx.last_sample_is_background = last_sample_is_background
        ctx.set_materialize_grads(False)  # an unused `weights` output costs nothing in backward
        return color, depth, opacity, weights

    @staticmethod
    def backward(ctx, grad_color, grad_depth, grad_opacity, grad_weights):
        sigma, rgb, t, rays_d, background, color, depth, opacity = ctx.saved_tensors
        grad_color = torch.zeros_like(color) if grad_color is None else grad_color.contiguous()
        grad_depth = torch.zeros_like(depth) if grad_depth is None else grad_depth.contiguous()
        grad_opacity = (torch.zeros_like(opacity) if grad_opacity is None
                        else grad_opacity.contiguous())
        if grad_weights is not None:
            grad_weights = grad_weights.contiguous()
        g_sigma, g_rgb, g_bg = OPS.composite_backward(
            grad_color, grad_depth, grad_opacity, grad_weights, sigma, rgb, t, rays_d,
            background, color, depth, opacity, ctx.last_sample_is_background)
        return g_sigma, g_rgb, None, None, g_bg, None


def composite(sigma, rgb, t, rays_d, background, *, last_sample_is_background: bool = True):
    """Volumetric rendering of samples along rays (NeRF quadrature, AD-NeRF / JEAN semantics).

    Per ray, with intervals delta_i = max(t_{i+1} - t_i, 0) * |d| and delta_{S-1} = 1e10 * |d|:
    alpha_i = 1 - exp(-relu(sigma_i) delta_i), transmittance T_i = prod_{j<i} (1 - alpha_j)
    (exclusive product), weights w_i = T_i alpha_i, depth = sum_i w_i t_i.

    * ``last_sample_is_background=True`` (JEAN suppl. 8.4, AD-NeRF): the last sample is the
      background, a final opaque sample: its colour is replaced by ``background`` and its alpha
      is 1 whatever its density, so w_{S-1} = T_{S-1} and color = sum_i w_i c_i (including
      the background term). ``opacity`` is the foreground's: sum_{i<S-1} w_i = 1 - T_{S-1}.
      (AD-NeRF gets alpha ~ 1 for the last sample through the 1e10 interval whenever its density
      is positive; a zero density there would lose the background, which we avoid.)
    * ``last_sample_is_background=False`` (classic NeRF with a background colour):
      opacity = sum_i w_i and color = sum_i w_i c_i + (1 - opacity) * background.

    AD-NeRF adds 1e-10 inside the transmittance product; we do not (it changes weights by less
    than 1e-9). Negative densities are treated as 0 (ReLU, as AD-NeRF's raw2alpha), and
    decreasing depths give zero-length intervals. NaN in an input propagates to that ray's
    outputs only (other rays are unaffected); it is not checked for, to keep the kernel a single
    pass over memory.

    Forward and backward are fused kernels (one thread or loop iteration per ray); the backward
    saves only the inputs and the per-ray outputs (O(1) per ray) and walks each ray again.
    Gradients flow to ``sigma``, ``rgb``, ``background``; none to ``t`` or ``rays_d`` (sample
    positions are not optimised). All four outputs are differentiable.

    Args:
        sigma: densities [N, S], float32/float64, already activated (>= 0).
        rgb: colours [N, S, 3] (the last sample's colour is ignored when it is the background).
        t: sample depths [N, S], ascending along each ray, in units of |rays_d|.
        rays_d: ray directions [N, 3] (not necessarily unit length).
        background: background colour per ray [N, 3], or one colour [3] for all rays.
        last_sample_is_background: see above.

    Returns:
        (color [N, 3], depth [N], opacity [N], weights [N, S]).

    Raises:
        TypeError: non-tensor inputs, dtype not float32/float64, or mixed dtypes.
        ValueError: shapes that do not match, S < 1, inputs on different devices.
    """
    sigma = as_tensor("sigma", sigma).contiguous()
    rgb = as_tensor("rgb", rgb).contiguous()
    t = as_tensor("t", t).contiguous()
    rays_d = as_tensor("rays_d", rays_d).contiguous()
    background = as_tensor("background", background)
    if background.dim() == 1:
        if background.shape[0] != 3:
            raise ValueError(f"background must be [3] or [N, 3], got {list(background.shape)}")
        n = sigma.shape[0] if sigma.dim() >= 1 else 0
        background = background.expand(n, 3)  # autograd sums the per-ray gradients back to [3]
    background = background.contiguous()
    return _Composite.apply(sigma, rgb, t, rays_d, background, bool(last_sample_is_background))


class _CompositePacked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigma, rgb, t_starts, t_ends, ray_indices, n_rays, background, early_stop):
        color, opacity, depth, weights, offsets = OPS.composite_packed_forward(
            sigma, rgb, t_starts, t_ends, ray_indices, n_rays, background, early_stop)
        # O(1) state per ray: the inputs, the per-ray outputs and the rays' sample offsets.
        ctx.save_for_backward(sigma, rgb, t_starts, t_ends, offsets, background, color, opacity,
                              depth)
        ctx.early_stop = early_stop
        ctx.mark_non_differentiable(offsets)
        ctx.set_materialize_grads(False)
        return color, opacity, depth, weights, offsets

    @staticmethod
    def backward(ctx, grad_color, grad_opacity, grad_depth, grad_weights, _grad_offsets):
        sigma, rgb, t_starts, t_ends, offsets, background, color, opacity, depth = ctx.saved_tensors

        def dense(g, like):
            return torch.zeros_like(like) if g is None else g.contiguous()

        g_sigma, g_rgb, g_bg = OPS.composite_packed_backward(
            dense(grad_color, color), dense(grad_opacity, opacity), dense(grad_depth, depth),
            None if grad_weights is None else grad_weights.contiguous(), sigma, rgb, t_starts,
            t_ends, offsets, background, color, opacity, depth, ctx.early_stop)
        return (g_sigma, g_rgb, None, None, None, None,
                g_bg if background is not None and ctx.needs_input_grad[6] else None, None)


def composite_packed(sigma, rgb, t_starts, t_ends, ray_indices, n_rays: int, *, background=None,
                     early_stop: float = 0.0):
    """Volumetric rendering of packed samples (the output of :func:`march_rays`), with a fused
    forward and backward (NeRF quadrature; nerfacc's ``rendering`` layout).

    Per ray, over its samples i in order: ``alpha_i = 1 - exp(-relu(sigma_i) (t_end_i -
    t_start_i))`` (an interval that ends before it starts counts as empty),
    ``T_i = prod_{j<i} (1 - alpha_j)``, ``w_i = T_i alpha_i``;
    ``color = sum_i w_i rgb_i + (1 - opacity) background``, ``opacity = sum_i w_i``,
    ``depth = sum_i w_i (t_start_i + t_end_i) / 2``. Intervals are used as given: with
    :func:`march_rays`, t is in units of |rays_d| (normalise the directions for metric
    densities). A ray without samples gets the background and zero opacity and depth.
    ``early_stop > 0`` (inference) drops every sample whose T_i < early_stop (their weights are
    0): with Instant-NGP's 1e-4 this changes colours by at most 1e-4 and skips the work
    behind opaque surfaces; the gradient is that of the truncated sum.

    The backward saves only the inputs and the per-ray outputs (O(1) per ray) and walks each
    ray again, as :func:`composite`. Gradients flow to ``sigma``, ``rgb`` and ``background``.
    With every ray holding the same intervals [t_i, t_{i+1}] (and [t_{S-1}, t_{S-1} + 1e10])
    and unit directions, color, opacity and weights equal those of the dense
    ``composite(..., last_sample_is_background=False)``.

    Usage in a training step::

        ray_indices, t_starts, t_ends = grid.march(rays_o, rays_d, near, far, step, jitter)
        t_mid = (t_starts + t_ends)[:, None] / 2
        sigma, rgb = field(rays_o[ray_indices] + t_mid * rays_d[ray_indices])
        color, opacity, depth, _ = composite_packed(sigma, rgb, t_starts, t_ends, ray_indices,
                                                    len(rays_o), background=bg)

    Args:
        sigma: densities [M], float32/float64 (negative values count as 0).
        rgb: colours [M, 3].
        t_starts, t_ends: [M], the samples' intervals along their rays.
        ray_indices: int64 [M], sorted (each ray's samples together, rays in ascending order).
        n_rays: N (rays without samples included).
        background: None (black, no gradient), one colour [3], or per ray [N, 3].
        early_stop: transmittance threshold in [0, 1); 0 keeps every sample.

    Returns:
        (color [N, 3], opacity [N], depth [N], weights [M]).

    Raises:
        TypeError: non-tensor inputs, dtypes (float / int64 ray_indices) or mixed dtypes.
        ValueError: shapes, unsorted or out-of-range ray_indices, n_rays < 0, early_stop outside
            [0, 1), inputs on different devices.
    """
    sigma = as_tensor("sigma", sigma).contiguous()
    rgb = as_tensor("rgb", rgb).contiguous()
    t_starts = as_tensor("t_starts", t_starts).contiguous()
    t_ends = as_tensor("t_ends", t_ends).contiguous()
    ray_indices = as_tensor("ray_indices", ray_indices).contiguous()
    if not isinstance(n_rays, int) or isinstance(n_rays, bool):
        raise TypeError(f"n_rays must be an int, got {type(n_rays).__name__}")
    if n_rays < 0:
        raise ValueError(f"n_rays must be >= 0, got {n_rays}")
    if background is not None:
        background = as_tensor("background", background)
        if background.dim() == 1:
            if background.shape[0] != 3:
                raise ValueError(f"background must be [3] or [n_rays, 3], got {list(background.shape)}")
            background = background.expand(n_rays, 3)
        background = background.contiguous()
    color, opacity, depth, weights, _ = _CompositePacked.apply(
        sigma, rgb, t_starts, t_ends, ray_indices, n_rays, background, float(early_stop))
    return color, opacity, depth, weights
