// CPU compositing: one ray per iteration of at::parallel_for; the math is in composite.h.
#include "composite.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace jeancore {

namespace {
constexpr int kCpuChunk = 64;  // samples per exp batch, see composite.h
}  // namespace

CompositeOut composite_forward_cpu(const at::Tensor& sigma, const at::Tensor& rgb,
                                   const at::Tensor& t, const at::Tensor& rays_d,
                                   const at::Tensor& background, bool last_sample_is_background) {
  CompositeOut out = composite_forward_prepare(sigma, rgb, t, rays_d, background);
  const at::Tensor &color = std::get<0>(out), &depth = std::get<1>(out),
                   &opacity = std::get<2>(out), &weights = std::get<3>(out);
  const int64_t N = sigma.size(0), S = sigma.size(1);
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_forward_cpu", [&] {
    const scalar_t* s = sigma.data_ptr<scalar_t>();
    const scalar_t* c = rgb.data_ptr<scalar_t>();
    const scalar_t* tt = t.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* bg = background.data_ptr<scalar_t>();
    scalar_t* oc = color.data_ptr<scalar_t>();
    scalar_t* od = depth.data_ptr<scalar_t>();
    scalar_t* oa = opacity.data_ptr<scalar_t>();
    scalar_t* ow = weights.data_ptr<scalar_t>();
    at::parallel_for(0, N, rays_per_task(S), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        composite_ray_forward<scalar_t, kCpuChunk>(
            S, s + r * S, c + r * S * 3, tt + r * S, d + r * 3, bg + r * 3,
            last_sample_is_background, oc + r * 3, od + r, oa + r, ow + r * S);
      }
    });
  });
  return out;
}

CompositeGrads composite_backward_cpu(
    const at::Tensor& grad_color, const at::Tensor& grad_depth, const at::Tensor& grad_opacity,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma, const at::Tensor& rgb,
    const at::Tensor& t, const at::Tensor& rays_d, const at::Tensor& background,
    const at::Tensor& color, const at::Tensor& depth, const at::Tensor& opacity,
    bool last_sample_is_background) {
  CompositeGrads grads =
      composite_backward_prepare(grad_color, grad_depth, grad_opacity, grad_weights, sigma, rgb,
                                 t, rays_d, background, color, depth, opacity);
  const at::Tensor &g_sigma = std::get<0>(grads), &g_rgb = std::get<1>(grads),
                   &g_bg = std::get<2>(grads);
  const int64_t N = sigma.size(0), S = sigma.size(1);
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_backward_cpu", [&] {
    const scalar_t* s = sigma.data_ptr<scalar_t>();
    const scalar_t* c = rgb.data_ptr<scalar_t>();
    const scalar_t* tt = t.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* bg = background.data_ptr<scalar_t>();
    const scalar_t* oc = color.data_ptr<scalar_t>();
    const scalar_t* od = depth.data_ptr<scalar_t>();
    const scalar_t* oa = opacity.data_ptr<scalar_t>();
    const scalar_t* gc = grad_color.data_ptr<scalar_t>();
    const scalar_t* gd = grad_depth.data_ptr<scalar_t>();
    const scalar_t* ga = grad_opacity.data_ptr<scalar_t>();
    const scalar_t* gw = grad_weights.has_value() ? grad_weights->data_ptr<scalar_t>() : nullptr;
    scalar_t* gs = g_sigma.data_ptr<scalar_t>();
    scalar_t* gr = g_rgb.data_ptr<scalar_t>();
    scalar_t* gb = g_bg.data_ptr<scalar_t>();
    at::parallel_for(0, N, rays_per_task(S), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        composite_ray_backward<scalar_t, kCpuChunk>(
            S, s + r * S, c + r * S * 3, tt + r * S, d + r * 3, bg + r * 3,
            last_sample_is_background, oc + r * 3, od[r], oa[r], gc + r * 3, gd[r], ga[r],
            gw ? gw + r * S : nullptr, gs + r * S, gr + r * S * 3, gb + r * 3);
      }
    });
  });
  return grads;
}

}  // namespace jeancore
