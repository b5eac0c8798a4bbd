"""Loads the compiled extension and attaches what the dispatcher needs in Python.

The C++ side (csrc/bindings.cpp) registers the operators ``torch.ops.jeancore.*`` with their
CPU and CUDA kernels. Here we add fake (meta) implementations so the operators can be traced by
``torch.compile`` and run on the ``meta`` device (shape inference without computing).
"""

from __future__ import annotations

import torch  # noqa: F401  (must be imported before the extension: the .so links libtorch)

try:
    from jeancore import _C  # noqa: F401  (registers torch.ops.jeancore.*)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "jeancore's compiled extension (jeancore._C) could not be loaded: "
        f"{exc}.\nIt must be built against the torch installed in this environment: "
        "`pip install --no-build-isolation .` from the jeancore source tree (see README), "
        "or `make install`. If you upgraded torch, rebuild jeancore."
    ) from exc

OPS = torch.ops.jeancore


def cuda_available() -> bool:
    """True if the CUDA kernels were compiled in and a CUDA device is visible."""
    return bool(_C.with_cuda()) and torch.cuda.is_available()


def built_with_cuda() -> bool:
    """True if this build of the extension contains the CUDA kernels."""
    return bool(_C.with_cuda())


@torch.library.register_fake("jeancore::sample_along_rays")
def _sample_along_rays_fake(rays_o, rays_d, near, far, n_samples, jitter):
    n = rays_o.shape[0]
    return rays_o.new_empty((n, n_samples)), rays_o.new_empty((n, n_samples, 3))


@torch.library.register_fake("jeancore::sample_pdf")
def _sample_pdf_fake(bins, weights, u):
    return weights.new_empty((weights.shape[0], u.shape[-1]))


@torch.library.register_fake("jeancore::composite_forward")
def _composite_forward_fake(sigma, rgb, t, rays_d, background, last_sample_is_background):
    n = sigma.shape[0]
    return (sigma.new_empty((n, 3)), sigma.new_empty((n,)), sigma.new_empty((n,)),
            torch.empty_like(sigma))


@torch.library.register_fake("jeancore::composite_backward")
def _composite_backward_fake(grad_color, grad_depth, grad_opacity, grad_weights, sigma, rgb, t,
                             rays_d, background, color, depth, opacity,
                             last_sample_is_background):
    return torch.empty_like(sigma), torch.empty_like(rgb), torch.empty_like(background)


@torch.library.register_fake("jeancore::dtw_local_cost")
def _dtw_local_cost_fake(x, y, x_lengths, y_lengths, metric):
    b = x.shape[0]
    if x.device.type == "cpu":  # packed blocks: a data-dependent size
        total = torch.library.get_ctx().new_dynamic_size()
    else:
        total = b * x.shape[1] * y.shape[1]
    return (x.new_empty((total,)), x.new_empty((b,), dtype=torch.int64),
            x.new_empty((b,), dtype=torch.int64))


@torch.library.register_fake("jeancore::dtw")
def _dtw_fake(cost, offsets, row_stride, x_lengths, y_lengths, step_pattern, window,
              max_path_length):
    b = offsets.shape[0]
    return (cost.new_empty((b,), dtype=torch.float64),
            cost.new_empty((b, max_path_length, 2), dtype=torch.int64),
            cost.new_empty((b,), dtype=torch.int64))


@torch.library.register_fake("jeancore::composite_packed_forward")
def _composite_packed_forward_fake(sigma, rgb, t_starts, t_ends, ray_indices, n_rays, background,
                                   early_stop):
    return (sigma.new_empty((n_rays, 3)), sigma.new_empty((n_rays,)), sigma.new_empty((n_rays,)),
            torch.empty_like(sigma), sigma.new_empty((n_rays + 1,), dtype=torch.int64))


@torch.library.register_fake("jeancore::composite_packed_backward")
def _composite_packed_backward_fake(grad_color, grad_opacity, grad_depth, grad_weights, sigma,
                                    rgb, t_starts, t_ends, offsets, background, color, opacity,
                                    depth, early_stop):
    return (torch.empty_like(sigma), torch.empty_like(rgb),
            sigma.new_empty((offsets.shape[0] - 1, 3)))


@torch.library.register_fake("jeancore::hash_encode")
def _hash_encode_fake(x, embeddings, offsets, resolutions):
    return x.new_empty((x.shape[0], resolutions.shape[0] * embeddings.shape[1]))


@torch.library.register_fake("jeancore::hash_encode_backward")
def _hash_encode_backward_fake(grad_out, x, embeddings, offsets, resolutions):
    return torch.empty_like(embeddings)


@torch.library.register_fake("jeancore::march_rays")
def _march_rays_fake(rays_o, rays_d, near, far, occupancy, aabb, step_size, jitter):
    m = torch.library.get_ctx().new_dynamic_size()  # data-dependent number of samples
    return (rays_o.new_empty((m,), dtype=torch.int64), rays_o.new_empty((m,)),
            rays_o.new_empty((m,)))
