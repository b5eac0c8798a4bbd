// Volumetric compositing along rays (NeRF quadrature with AD-NeRF / JEAN background semantics).
//
// Per ray with S samples (sigma_i >= 0 after ReLU, colour c_i, depth t_i, direction d):
//   delta_i = max(t_{i+1} - t_i, 0) * |d|   (i < S-1),   delta_{S-1} = 1e10 * |d|
//   x_i     = relu(sigma_i) * delta_i        (optical depth of the interval)
//   alpha_i = 1 - exp(-x_i),  T_i = prod_{j<i} exp(-x_j)  (exclusive transmittance)
//   w_i     = T_i * alpha_i
// last_sample_is_background = true: the last sample is the background, an opaque final sample:
//   alpha_{S-1} = 1, c_{S-1} = background, so w_{S-1} = T_{S-1};
//   opacity = sum_{i<S-1} w_i = 1 - T_{S-1} (the foreground's opacity).
// last_sample_is_background = false:
//   opacity = sum_i w_i, color = sum_i w_i c_i + (1 - opacity) * background.
// depth = sum_i w_i t_i in both modes.
//
// Backward (O(1) saved state per ray: the inputs and the per-ray outputs; no per-sample T or
// weights are saved). With G_i = dL/dw_i (all terms that multiply w_i), w_i = T_i - T_{i+1}:
//   dL/dx_k = G_k T_{k+1} - sum_{i>k} G_i w_i,   dL/dsigma_k = [sigma_k > 0] delta_k dL/dx_k
// The suffix sum is total - prefix, with total from the saved outputs (one walk along the ray),
// or from an extra walk when the weights output itself receives a gradient.
#pragma once

#include "common.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <tuple>

namespace jeancore {

// exp(x) for float32 on the CPU, for x <= 0 (the only use here: transmittance factors), written
// without calls or branches so that loops over it auto-vectorise. Cody-Waite range reduction
// x = k ln2 + r with |r| <= ln2 / 2, degree-7 Taylor polynomial (truncation < 1e-8 relative,
// about 1 ulp overall); exactly 0 below -87.3 (where expf underflows); NaN propagates.
inline float cpu_expf(float x) {
  float v = x * 1.44269504088896341f;
  v = v < -126.0f ? -126.0f : v;           // results below 2^-126 are set to 0 at the end
  const float shifted = v + 12582912.0f;   // 1.5 * 2^23: round(v) lands in the low mantissa bits
  uint32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(float));
  const float k = shifted - 12582912.0f;
  const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t scale_bits = (shifted_bits - 0x4B400000u + 127u) << 23;  // 2^k
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof(float));
  const float y = p * scale;
  return x < -87.33654f ? 0.0f : y;
}

JC_HD float jc_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return cpu_expf(x);
#endif
}
JC_HD double jc_exp(double x) { return exp(x); }
JC_HD float jc_sqrt(float x) { return sqrtf(x); }
JC_HD double jc_sqrt(double x) { return sqrt(x); }

template <typename scalar_t>
JC_HD scalar_t ray_norm(const scalar_t* d) {
  return jc_sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
}

// For samples base .. base + len - 1 of a ray (never its background sample): the interval
// delta_i and the transmittance factor e_i = exp(-relu(sigma_i) delta_i). The loop over samples
// that have a successor has no branches or calls (it vectorises on the CPU); the ray's last
// sample, with NeRF's 1e10 interval, is done after it. ReLU is written so that NaN propagates.
template <typename scalar_t>
JC_HD void transmittance_factors(int64_t base, int64_t len, int64_t S, const scalar_t* sigma,
                                 const scalar_t* t, scalar_t dnorm, scalar_t* e,
                                 scalar_t* delta) {
  const int64_t inner = base + len < S ? len : len - 1;
  for (int64_t k = 0; k < inner; ++k) {
    const int64_t i = base + k;
    const scalar_t dt = t[i + 1] - t[i];
    const scalar_t dl = (dt > scalar_t(0) ? dt : scalar_t(0)) * dnorm;
    const scalar_t s = sigma[i] < scalar_t(0) ? scalar_t(0) : sigma[i];
    delta[k] = dl;
    e[k] = jc_exp(-(s * dl));
  }
  if (inner < len) {
    const int64_t i = base + inner;
    const scalar_t dl = scalar_t(kLastDelta) * dnorm;
    const scalar_t s = sigma[i] < scalar_t(0) ? scalar_t(0) : sigma[i];
    delta[inner] = dl;
    e[inner] = jc_exp(-(s * dl));
  }
}

// Walks the foreground samples 0 .. S_fg - 1 of a ray in order, calling f(i, e_i, delta_i, T_i)
// with T_i the transmittance before sample i; returns the transmittance after the last one.
// Samples go in chunks of kChunk: first the chunk's transmittance factors (a loop without
// loop-carried state, which vectorises on the CPU; float64 still calls libm's exp there), then
// the accumulation. With exp calls inside the accumulating loop, every running sum was spilled
// around each call, since all vector registers are caller-saved (measured ~3x slower). CPU code
// uses kChunk = 64; on the GPU exp is inline and kChunk = 1 (no local array).
template <typename scalar_t, int kChunk, typename F>
JC_HD scalar_t walk_ray(int64_t S_fg, int64_t S, const scalar_t* sigma, const scalar_t* t,
                        scalar_t dnorm, F&& f) {
  scalar_t e[kChunk], delta[kChunk];
  scalar_t T = 1;
  for (int64_t base = 0; base < S_fg; base += kChunk) {
    const int64_t len = S_fg - base < kChunk ? S_fg - base : kChunk;
    transmittance_factors(base, len, S, sigma, t, dnorm, e, delta);
    for (int64_t k = 0; k < len; ++k) {
      f(base + k, e[k], delta[k], T);
      T *= e[k];
    }
  }
  return T;
}

template <typename scalar_t, int kChunk>
JC_HD void composite_ray_forward(int64_t S, const scalar_t* sigma, const scalar_t* rgb,
                                 const scalar_t* t, const scalar_t* d, const scalar_t* bg,
                                 bool last_bg, scalar_t* color, scalar_t* depth,
                                 scalar_t* opacity, scalar_t* weights) {
  const scalar_t dnorm = ray_norm(d);
  const int64_t S_fg = last_bg ? S - 1 : S;  // samples with the network's density and colour
  scalar_t c0 = 0, c1 = 0, c2 = 0, D = 0, A = 0;
  const scalar_t T = walk_ray<scalar_t, kChunk>(
      S_fg, S, sigma, t, dnorm, [&](int64_t i, scalar_t e, scalar_t, scalar_t T_i) {
        const scalar_t w = T_i * (scalar_t(1) - e);
        A += w;
        const scalar_t* c = rgb + 3 * i;
        c0 += w * c[0];
        c1 += w * c[1];
        c2 += w * c[2];
        D += w * t[i];
        weights[i] = w;
      });
  if (last_bg) {  // opaque background sample: all remaining transmittance
    c0 += T * bg[0];
    c1 += T * bg[1];
    c2 += T * bg[2];
    D += T * t[S - 1];
    weights[S - 1] = T;
  } else {
    c0 += (scalar_t(1) - A) * bg[0];
    c1 += (scalar_t(1) - A) * bg[1];
    c2 += (scalar_t(1) - A) * bg[2];
  }
  color[0] = c0;
  color[1] = c1;
  color[2] = c2;
  *depth = D;
  *opacity = A;
}

// gw may be nullptr (the weights output received no gradient).
template <typename scalar_t, int kChunk>
JC_HD void composite_ray_backward(int64_t S, const scalar_t* sigma, const scalar_t* rgb,
                                  const scalar_t* t, const scalar_t* d, const scalar_t* bg,
                                  bool last_bg, const scalar_t* color, scalar_t depth,
                                  scalar_t opacity, const scalar_t* gC, scalar_t gD, scalar_t gA,
                                  const scalar_t* gw, scalar_t* g_sigma, scalar_t* g_rgb,
                                  scalar_t* g_bg) {
  const scalar_t dnorm = ray_norm(d);
  const int64_t S_fg = last_bg ? S - 1 : S;
  const scalar_t gC_bg = gC[0] * bg[0] + gC[1] * bg[1] + gC[2] * bg[2];
  // dL/dw_i of a foreground sample, apart from its colour, depth and weight-gradient terms:
  // opacity's gradient, and in the additive-background mode the -(background) part of colour.
  const scalar_t gA_fg = last_bg ? gA : gA - gC_bg;

  // total = sum_i G_i w_i
  scalar_t total;
  if (gw == nullptr) {
    total = gC[0] * color[0] + gC[1] * color[1] + gC[2] * color[2] + gD * depth + gA * opacity;
    if (!last_bg) total -= gC_bg;  // color included (1 - opacity) * background
  } else {
    total = 0;
    const scalar_t T = walk_ray<scalar_t, kChunk>(
        S_fg, S, sigma, t, dnorm, [&](int64_t i, scalar_t e, scalar_t, scalar_t T_i) {
          const scalar_t w = T_i * (scalar_t(1) - e);
          const scalar_t* c = rgb + 3 * i;
          total += (gC[0] * c[0] + gC[1] * c[1] + gC[2] * c[2] + gD * t[i] + gA_fg + gw[i]) * w;
        });
    if (last_bg) total += (gC_bg + gD * t[S - 1] + gw[S - 1]) * T;
  }

  scalar_t prefix = 0;
  const scalar_t T = walk_ray<scalar_t, kChunk>(
      S_fg, S, sigma, t, dnorm, [&](int64_t i, scalar_t e, scalar_t delta, scalar_t T_i) {
        const scalar_t w = T_i * (scalar_t(1) - e);
        const scalar_t T_next = T_i * e;
        const scalar_t* c = rgb + 3 * i;
        const scalar_t G = gC[0] * c[0] + gC[1] * c[1] + gC[2] * c[2] + gD * t[i] + gA_fg +
                           (gw != nullptr ? gw[i] : scalar_t(0));
        prefix += G * w;
        const scalar_t suffix = i == S - 1 ? scalar_t(0) : total - prefix;
        g_sigma[i] = sigma[i] <= scalar_t(0) ? scalar_t(0) : delta * (G * T_next - suffix);
        scalar_t* gr = g_rgb + 3 * i;
        gr[0] = gC[0] * w;
        gr[1] = gC[1] * w;
        gr[2] = gC[2] * w;
      });
  if (last_bg) {
    // The background sample is opaque whatever its density and its colour is the background.
    g_sigma[S - 1] = 0;
    scalar_t* gr = g_rgb + 3 * (S - 1);
    gr[0] = gr[1] = gr[2] = 0;
    g_bg[0] = gC[0] * T;
    g_bg[1] = gC[1] * T;
    g_bg[2] = gC[2] * T;
  } else {  // color = ... + (1 - opacity) * background
    g_bg[0] = gC[0] * (scalar_t(1) - opacity);
    g_bg[1] = gC[1] * (scalar_t(1) - opacity);
    g_bg[2] = gC[2] * (scalar_t(1) - opacity);
  }
}

// ---- validation shared by the CPU and CUDA entry points --------------------------------------
inline void check_composite_inputs(const at::Tensor& sigma, const at::Tensor& rgb,
                                   const at::Tensor& t, const at::Tensor& rays_d,
                                   const at::Tensor& background) {
  check_float(sigma, "sigma", 2, sigma);
  const int64_t N = sigma.size(0), S = sigma.size(1);
  TORCH_CHECK_VALUE(S >= 1, "sigma must have at least one sample per ray, got shape ",
                    shape_str(sigma));
  check_float(rgb, "rgb", 3, sigma);
  check_sizes(rgb, "rgb", {N, S, 3}, "[N, S, 3] matching sigma [N, S]");
  check_float(t, "t", 2, sigma);
  check_sizes(t, "t", {N, S}, "[N, S] matching sigma");
  check_float(rays_d, "rays_d", 2, sigma);
  check_sizes(rays_d, "rays_d", {N, 3}, "[N, 3]");
  check_float(background, "background", 2, sigma);
  check_sizes(background, "background", {N, 3}, "[N, 3]");
}

// CPU (composite.cpp) and CUDA (composite_cuda.cu) entry points; registered in bindings.cpp.
using CompositeOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using CompositeGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

CompositeOut composite_forward_cpu(const at::Tensor& sigma, const at::Tensor& rgb,
                                   const at::Tensor& t, const at::Tensor& rays_d,
                                   const at::Tensor& background, bool last_sample_is_background);
CompositeGrads composite_backward_cpu(
    const at::Tensor& grad_color, const at::Tensor& grad_depth, const at::Tensor& grad_opacity,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma, const at::Tensor& rgb,
    const at::Tensor& t, const at::Tensor& rays_d, const at::Tensor& background,
    const at::Tensor& color, const at::Tensor& depth, const at::Tensor& opacity,
    bool last_sample_is_background);
#ifdef JEANCORE_WITH_CUDA
CompositeOut composite_forward_cuda(const at::Tensor& sigma, const at::Tensor& rgb,
                                    const at::Tensor& t, const at::Tensor& rays_d,
                                    const at::Tensor& background, bool last_sample_is_background);
CompositeGrads composite_backward_cuda(
    const at::Tensor& grad_color, const at::Tensor& grad_depth, const at::Tensor& grad_opacity,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma, const at::Tensor& rgb,
    const at::Tensor& t, const at::Tensor& rays_d, const at::Tensor& background,
    const at::Tensor& color, const at::Tensor& depth, const at::Tensor& opacity,
    bool last_sample_is_background);
#endif

// Validation of the backward's gradient inputs (shared by both devices).
inline void check_composite_grads(const at::Tensor& sigma, const at::Tensor& grad_color,
                                  const at::Tensor& grad_depth, const at::Tensor& grad_opacity,
                                  const std::optional<at::Tensor>& grad_weights,
                                  const at::Tensor& color, const at::Tensor& depth,
                                  const at::Tensor& opacity) {
  const int64_t N = sigma.size(0), S = sigma.size(1);
  check_float(grad_color, "grad_color", 2, sigma);
  check_sizes(grad_color, "grad_color", {N, 3}, "[N, 3]");
  check_float(color, "color", 2, sigma);
  check_sizes(color, "color", {N, 3}, "[N, 3]");
  check_float(grad_depth, "grad_depth", 1, sigma);
  check_sizes(grad_depth, "grad_depth", {N}, "[N]");
  check_float(depth, "depth", 1, sigma);
  check_sizes(depth, "depth", {N}, "[N]");
  check_float(grad_opacity, "grad_opacity", 1, sigma);
  check_sizes(grad_opacity, "grad_opacity", {N}, "[N]");
  check_float(opacity, "opacity", 1, sigma);
  check_sizes(opacity, "opacity", {N}, "[N]");
  if (grad_weights.has_value()) {
    check_float(*grad_weights, "grad_weights", 2, sigma);
    check_sizes(*grad_weights, "grad_weights", {N, S}, "[N, S]");
  }
}

// Validates the forward's inputs and allocates (color [N,3], depth [N], opacity [N],
// weights [N,S]) on their device; shared by the CPU and CUDA entry points.
inline CompositeOut composite_forward_prepare(const at::Tensor& sigma, const at::Tensor& rgb,
                                              const at::Tensor& t, const at::Tensor& rays_d,
                                              const at::Tensor& background) {
  check_composite_inputs(sigma, rgb, t, rays_d, background);
  const int64_t N = sigma.size(0), S = sigma.size(1);
  return {at::empty({N, 3}, sigma.options()), at::empty({N}, sigma.options()),
          at::empty({N}, sigma.options()), at::empty({N, S}, sigma.options())};
}

// Validates the backward's inputs and allocates (grad_sigma, grad_rgb, grad_background).
inline CompositeGrads composite_backward_prepare(
    const at::Tensor& grad_color, const at::Tensor& grad_depth, const at::Tensor& grad_opacity,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma, const at::Tensor& rgb,
    const at::Tensor& t, const at::Tensor& rays_d, const at::Tensor& background,
    const at::Tensor& color, const at::Tensor& depth, const at::Tensor& opacity) {
  check_composite_inputs(sigma, rgb, t, rays_d, background);
  check_composite_grads(sigma, grad_color, grad_depth, grad_opacity, grad_weights, color, depth,
                        opacity);
  return {at::empty_like(sigma), at::empty_like(rgb), at::empty_like(background)};
}

}  // namespace jeancore
