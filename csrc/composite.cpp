// CPU compositing: rays in parallel (parallel_chunks, common.h); the math is in composite.h.
#include "composite.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <atomic>

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
    parallel_chunks(N, chunk_for(N, S), [&](int64_t begin, int64_t end) {
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
    parallel_chunks(N, chunk_for(N, S), [&](int64_t begin, int64_t end) {
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

namespace {
// offsets [N + 1] from sorted ray_indices [M], checked (raises ValueError).
void packed_offsets_cpu(const at::Tensor& ray_indices, int64_t N, const at::Tensor& offsets) {
  const int64_t M = ray_indices.size(0);
  const int64_t* idx = ray_indices.data_ptr<int64_t>();
  int64_t* off = offsets.data_ptr<int64_t>();
  std::atomic<int> error{0};
  parallel_chunks(M + 1, chunk_for(M + 1, 1), [&](int64_t begin, int64_t end) {
    int e = 0;
    for (int64_t i = begin; i < end; ++i) e |= packed_offsets_at(i, M, N, idx, off);
    if (e) error.fetch_or(e);
  });
  const int e = error.load();
  raise_packed_index_error(e & 1);
  raise_packed_index_error(e & 2);
}

int64_t mean_samples(int64_t M, int64_t N) { return N > 0 ? M / N + 1 : 1; }
}  // namespace

PackedOut composite_packed_forward_cpu(const at::Tensor& sigma, const at::Tensor& rgb,
                                       const at::Tensor& t_starts, const at::Tensor& t_ends,
                                       const at::Tensor& ray_indices, int64_t n_rays,
                                       const std::optional<at::Tensor>& background,
                                       double early_stop) {
  check_packed_samples(sigma, rgb, t_starts, t_ends, n_rays, background, early_stop);
  const int64_t M = sigma.size(0), N = n_rays;
  check_index(ray_indices, "ray_indices", M, sigma);
  PackedOut out = composite_packed_outputs(sigma, M, N);
  const at::Tensor &color = std::get<0>(out), &opacity = std::get<1>(out),
                   &depth = std::get<2>(out), &weights = std::get<3>(out),
                   &offsets = std::get<4>(out);
  packed_offsets_cpu(ray_indices, N, offsets);
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_packed_forward_cpu", [&] {
    const scalar_t* s = sigma.data_ptr<scalar_t>();
    const scalar_t* c = rgb.data_ptr<scalar_t>();
    const scalar_t* ts = t_starts.data_ptr<scalar_t>();
    const scalar_t* te = t_ends.data_ptr<scalar_t>();
    const scalar_t* bg = background.has_value() ? background->data_ptr<scalar_t>() : nullptr;
    const int64_t* off = offsets.data_ptr<int64_t>();
    scalar_t* oc = color.data_ptr<scalar_t>();
    scalar_t* oa = opacity.data_ptr<scalar_t>();
    scalar_t* od = depth.data_ptr<scalar_t>();
    scalar_t* ow = weights.data_ptr<scalar_t>();
    const scalar_t stop = static_cast<scalar_t>(early_stop);
    parallel_chunks(N, chunk_for(N, mean_samples(M, N)), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t a = off[r], n = off[r + 1] - a;
        composite_packed_ray_forward<scalar_t, kCpuChunk>(
            n, s + a, c + 3 * a, ts + a, te + a, bg ? bg + 3 * r : nullptr, stop, oc + 3 * r,
            oa + r, od + r, ow + a);
      }
    });
  });
  return out;
}

CompositeGrads composite_packed_backward_cpu(
    const at::Tensor& grad_color, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma,
    const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& offsets, const std::optional<at::Tensor>& background,
    const at::Tensor& color, const at::Tensor& opacity, const at::Tensor& depth,
    double early_stop) {
  CompositeGrads grads = composite_packed_backward_prepare(
      grad_color, grad_opacity, grad_depth, grad_weights, sigma, rgb, t_starts, t_ends, offsets,
      background, color, opacity, depth, early_stop);
  const at::Tensor &g_sigma = std::get<0>(grads), &g_rgb = std::get<1>(grads),
                   &g_bg = std::get<2>(grads);
  const int64_t M = sigma.size(0), N = offsets.size(0) - 1;
  const int64_t* off = offsets.data_ptr<int64_t>();
  TORCH_CHECK_VALUE(off[0] == 0 && off[N] == M, "offsets must start at 0 and end at M = ", M,
                    " (composite_packed_forward's offsets output)");
  for (int64_t r = 0; r < N; ++r) {
    TORCH_CHECK_VALUE(off[r] <= off[r + 1], "offsets must be non-decreasing");
  }
  AT_DISPATCH_FLOATING_TYPES(sigma.scalar_type(), "composite_packed_backward_cpu", [&] {
    const scalar_t* s = sigma.data_ptr<scalar_t>();
    const scalar_t* c = rgb.data_ptr<scalar_t>();
    const scalar_t* ts = t_starts.data_ptr<scalar_t>();
    const scalar_t* te = t_ends.data_ptr<scalar_t>();
    const scalar_t* bg = background.has_value() ? background->data_ptr<scalar_t>() : nullptr;
    const scalar_t* oc = color.data_ptr<scalar_t>();
    const scalar_t* oa = opacity.data_ptr<scalar_t>();
    const scalar_t* od = depth.data_ptr<scalar_t>();
    const scalar_t* gc = grad_color.data_ptr<scalar_t>();
    const scalar_t* ga = grad_opacity.data_ptr<scalar_t>();
    const scalar_t* gd = grad_depth.data_ptr<scalar_t>();
    const scalar_t* gw = grad_weights.has_value() ? grad_weights->data_ptr<scalar_t>() : nullptr;
    scalar_t* gs = g_sigma.data_ptr<scalar_t>();
    scalar_t* gr = g_rgb.data_ptr<scalar_t>();
    scalar_t* gb = g_bg.data_ptr<scalar_t>();
    const scalar_t stop = static_cast<scalar_t>(early_stop);
    parallel_chunks(N, chunk_for(N, 2 * mean_samples(M, N)), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t a = off[r], n = off[r + 1] - a;
        composite_packed_ray_backward<scalar_t, kCpuChunk>(
            n, s + a, c + 3 * a, ts + a, te + a, bg ? bg + 3 * r : nullptr, stop, oc + 3 * r,
            oa[r], od[r], gc + 3 * r, ga[r], gd[r], gw ? gw + a : nullptr, gs + a, gr + 3 * a,
            gb + 3 * r);
      }
    });
  });
  return grads;
}

}  // namespace jeancore
