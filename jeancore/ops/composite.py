"""Volumetric compositing along rays with a fused forward and backward (JEAN Sec. 3.3)."""

from __future__ import annotations

import torch

from ._checks import as_tensor
from ._registry import OPS

__all__ = ["composite"]


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
