// CUDA compositing: one thread per ray (as torch-ngp / RAD-NeRF); the per-ray math is the same
// code as the CPU path (composite.h), so the CPU tests check its arithmetic.
#include "composite.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace jeancore {

namespace {
constexpr int kThreads = 128;

template <typename scalar_t>
__global__ void composite_forward_kernel(int64_t N, int64_t S, const scalar_t* __restrict__ s,
                                         const scalar_t* __restrict__ c,
                                         const scalar_t* __restrict__ tt,
                                         const scalar_t* __restrict__ d,
                                         const scalar_t* __restrict__ bg, bool last_bg,
                                         scalar_t* oc, scalar_t* od, scalar_t* oa, scalar_t* ow) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= N) return;
  composite_ray_forward<scalar_t, 1>(S, s + r * S, c + r * S * 3, tt + r * S, d + r * 3, bg + r * 3,
                                  last_bg, oc + r * 3, od + r, oa + r, ow + r * S);
}

template <typename scalar_t>
__global__ void composite_backward_kernel(
    int64_t N, int64_t S, const scalar_t* __restrict__ s, const scalar_t* __restrict__ c,
    const scalar_t* __restrict__ tt, const scalar_t* __restrict__ d,
    const scalar_t* __restrict__ bg, bool last_bg, const scalar_t* __restrict__ oc,
    const scalar_t* __restrict__ od, const scalar_t* __restrict__ oa,
    const scalar_t* __restrict__ gc, const scalar_t* __restrict__ gd,
    const scalar_t* __restrict__ ga, const scalar_t* __restrict__ gw, scalar_t* gs, scalar_t* gr,
    scalar_t* gb) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= N) return;
  composite_ray_backward<scalar_t, 1>(S, s + r * S, c + r * S * 3, tt + r * S, d + r * 3, bg + r * 3,
                                   last_bg, oc + r * 3, od[r], oa[r], gc + r * 3, gd[r], ga[r],
                                   gw ? gw + r * S : nullptr, gs + r * S, gr + r * S * 3,
                                   gb + r * 3);
}

unsigned int blocks_for(int64_t N) { return static_cast<unsigned int>((N + kThreads - 1) / kThreads); }

__global__ void packed_offsets_kernel(int64_t M, int64_t N, const int64_t* __restrict__ idx,
                                      int64_t* off, int* error) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i > M) return;
  const int e = packed_offsets_at(i, M, N, idx, off);
  if (e) atomicOr(error, e);
}

template <typename scalar_t>
__global__ void composite_packed_forward_kernel(
    int64_t N, int64_t M, const scalar_t* __restrict__ s, const scalar_t* __restrict__ c,
    const scalar_t* __restrict__ ts, const scalar_t* __restrict__ te,
    const scalar_t* __restrict__ bg, const int64_t* __restrict__ off, scalar_t stop,
    scalar_t* oc, scalar_t* oa, scalar_t* od, scalar_t* ow) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= N) return;
  int64_t a, b;
  packed_range(off, r, M, &a, &b);
  composite_packed_ray_forward<scalar_t, 1>(b - a, s + a, c + 3 * a, ts + a, te + a,
                                            bg ? bg + 3 * r : nullptr, stop, oc + 3 * r, oa + r,
                                            od + r, ow + a);
}

template <typename scalar_t>
__global__ void composite_packed_backward_kernel(
    int64_t N, int64_t M, const scalar_t* __restrict__ s, const scalar_t* __restrict__ c,
    const scalar_t* __restrict__ ts, const scalar_t* __restrict__ te,
    const scalar_t* __restrict__ bg, const int64_t* __restrict__ off, scalar_t stop,
    const scalar_t* __restrict__ oc, const scalar_t* __restrict__ oa,
    const scalar_t* __restrict__ od, const scalar_t* __restrict__ gc,
    const scalar_t* __restrict__ ga, const scalar_t* __restrict__ gd,
    const scalar_t* __restrict__ gw, scalar_t* gs, scalar_t* gr, scalar_t* gb) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= N) return;
  int64_t a, b;
  packed_range(off, r, M, &a, &b);
  composite_packed_ray_backward<scalar_t, 1>(
      b - a, s + a, c + 3 * a, ts + a, te + a, bg ? bg + 3 * r : nullptr, stop, oc + 3 * r, oa[r],
      od[r], gc + 3 * r, ga[r], gd[r], gw ? gw + a : nullptr, gs + a, gr + 3 * a, gb + 3 * r);
}
}  // namespace

CompositeOut composite_forward_cuda(const at::Tensor& sigma, const at::Tensor& rgb,
                                    const at::Tensor& t, const at::Tensor& rays_d,
                                    const at::Tensor& background, bool last_sample_is_background) {
  const c10::cuda::CUDAGuard guard(sigma.device());
  CompositeOut out = composite_forward_prepare(sigma, rgb, t, rays_d, background);
  const at::Tensor &color = std::get<0>(out), &depth = std::get<1>(out),
                   &opacity = std::get<2>(out), &weights = std::get<3>(out);
  const int64_t N = sigma.size(0), S = sigma.size(1);
  if (N == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_forward_cuda", [&] {
    composite_forward_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        N, S, sigma.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
        rays_d.data_ptr<scalar_t>(), background.data_ptr<scalar_t>(), last_sample_is_background,
        color.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), opacity.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

CompositeGrads composite_backward_cuda(
    const at::Tensor& grad_color, const at::Tensor& grad_depth, const at::Tensor& grad_opacity,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma, const at::Tensor& rgb,
    const at::Tensor& t, const at::Tensor& rays_d, const at::Tensor& background,
    const at::Tensor& color, const at::Tensor& depth, const at::Tensor& opacity,
    bool last_sample_is_background) {
  const c10::cuda::CUDAGuard guard(sigma.device());
  CompositeGrads grads =
      composite_backward_prepare(grad_color, grad_depth, grad_opacity, grad_weights, sigma, rgb,
                                 t, rays_d, background, color, depth, opacity);
  const at::Tensor &g_sigma = std::get<0>(grads), &g_rgb = std::get<1>(grads),
                   &g_bg = std::get<2>(grads);
  const int64_t N = sigma.size(0), S = sigma.size(1);
  if (N == 0) return grads;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_backward_cuda", [&] {
    composite_backward_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        N, S, sigma.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
        rays_d.data_ptr<scalar_t>(), background.data_ptr<scalar_t>(), last_sample_is_background,
        color.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), opacity.data_ptr<scalar_t>(),
        grad_color.data_ptr<scalar_t>(), grad_depth.data_ptr<scalar_t>(),
        grad_opacity.data_ptr<scalar_t>(),
        grad_weights.has_value() ? grad_weights->data_ptr<scalar_t>() : nullptr,
        g_sigma.data_ptr<scalar_t>(), g_rgb.data_ptr<scalar_t>(), g_bg.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grads;
}

PackedOut composite_packed_forward_cuda(const at::Tensor& sigma, const at::Tensor& rgb,
                                        const at::Tensor& t_starts, const at::Tensor& t_ends,
                                        const at::Tensor& ray_indices, int64_t n_rays,
                                        const std::optional<at::Tensor>& background,
                                        double early_stop) {
  const c10::cuda::CUDAGuard guard(sigma.device());
  check_packed_samples(sigma, rgb, t_starts, t_ends, n_rays, background, early_stop);
  const int64_t M = sigma.size(0), N = n_rays;
  check_index(ray_indices, "ray_indices", M, sigma);
  PackedOut out = composite_packed_outputs(sigma, M, N);
  const at::Tensor &color = std::get<0>(out), &opacity = std::get<1>(out),
                   &depth = std::get<2>(out), &weights = std::get<3>(out),
                   &offsets = std::get<4>(out);
  auto stream = c10::cuda::getCurrentCUDAStream();
  // Offsets and the index check: one thread per sample; the error flag is read back (a sync).
  auto error = at::zeros({1}, sigma.options().dtype(at::kInt));
  packed_offsets_kernel<<<blocks_for(M + 1), kThreads, 0, stream>>>(
      M, N, ray_indices.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), error.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int e = error.item<int>();
  raise_packed_index_error(e & 1);
  raise_packed_index_error(e & 2);
  if (N == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_packed_forward_cuda", [&] {
    composite_packed_forward_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        N, M, sigma.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(), t_starts.data_ptr<scalar_t>(),
        t_ends.data_ptr<scalar_t>(),
        background.has_value() ? background->data_ptr<scalar_t>() : nullptr,
        offsets.data_ptr<int64_t>(), static_cast<scalar_t>(early_stop),
        color.data_ptr<scalar_t>(), opacity.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

CompositeGrads composite_packed_backward_cuda(
    const at::Tensor& grad_color, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma,
    const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& offsets, const std::optional<at::Tensor>& background,
    const at::Tensor& color, const at::Tensor& opacity, const at::Tensor& depth,
    double early_stop) {
  const c10::cuda::CUDAGuard guard(sigma.device());
  CompositeGrads grads = composite_packed_backward_prepare(
      grad_color, grad_opacity, grad_depth, grad_weights, sigma, rgb, t_starts, t_ends, offsets,
      background, color, opacity, depth, early_stop);
  const at::Tensor &g_sigma = std::get<0>(grads), &g_rgb = std::get<1>(grads),
                   &g_bg = std::get<2>(grads);
  const int64_t M = sigma.size(0), N = offsets.size(0) - 1;
  if (N == 0) {
    g_sigma.zero_();
    g_rgb.zero_();
    return grads;
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_packed_backward_cuda", [&] {
    composite_packed_backward_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        N, M, sigma.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(), t_starts.data_ptr<scalar_t>(),
        t_ends.data_ptr<scalar_t>(),
        background.has_value() ? background->data_ptr<scalar_t>() : nullptr,
        offsets.data_ptr<int64_t>(), static_cast<scalar_t>(early_stop),
        color.data_ptr<scalar_t>(), opacity.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(),
        grad_color.data_ptr<scalar_t>(), grad_opacity.data_ptr<scalar_t>(),
        grad_depth.data_ptr<scalar_t>(),
        grad_weights.has_value() ? grad_weights->data_ptr<scalar_t>() : nullptr,
        g_sigma.data_ptr<scalar_t>(), g_rgb.data_ptr<scalar_t>(), g_bg.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grads;
}

}  // namespace jeancore
