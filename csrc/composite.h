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
#include <utility>

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

// Walks samples 0 .. n - 1 of a ray in order, calling f(i, e_i, delta_i, T_i) with T_i the
// transmittance before sample i; returns the transmittance after the last sample walked.
// factors(base, len, e, delta) fills the transmittance factors e and intervals delta of samples
// base .. base + len - 1. Samples go in chunks of kChunk: first the chunk's factors (a loop
// without loop-carried state, which vectorises on the CPU; float64 still calls libm's exp
// there), then the accumulation. With exp calls inside the accumulating loop, every running
// sum was spilled around each call, since all vector registers are caller-saved (measured ~3x
// slower). CPU code uses kChunk = 64; on the GPU exp is inline and kChunk = 1 (no local array).
// Early termination: the walk stops before the first sample i with T_i < stop_below (0: never)
// and *n_walked (if given) receives the number of samples walked.
template <typename scalar_t, int kChunk, typename Factors, typename F>
JC_HD scalar_t walk_samples(int64_t n, scalar_t stop_below, Factors&& factors, F&& f,
                            int64_t* n_walked = nullptr) {
  scalar_t e[kChunk], delta[kChunk];
  scalar_t T = 1;
  for (int64_t base = 0; base < n; base += kChunk) {
    const int64_t len = n - base < kChunk ? n - base : kChunk;
    factors(base, len, e, delta);
    for (int64_t k = 0; k < len; ++k) {
      if (T < stop_below) {
        if (n_walked != nullptr) *n_walked = base + k;
        return T;
      }
      f(base + k, e[k], delta[k], T);
      T *= e[k];
    }
  }
  if (n_walked != nullptr) *n_walked = n;
  return T;
}

// The dense layout: foreground samples 0 .. S_fg - 1 of a ray of S depths t (composite()).
template <typename scalar_t, int kChunk, typename F>
JC_HD scalar_t walk_ray(int64_t S_fg, int64_t S, const scalar_t* sigma, const scalar_t* t,
                        scalar_t dnorm, F&& f) {
  return walk_samples<scalar_t, kChunk>(
      S_fg, scalar_t(0),
      [&](int64_t base, int64_t len, scalar_t* e, scalar_t* delta) {
        transmittance_factors(base, len, S, sigma, t, dnorm, e, delta);
      },
      f);
}

// color = (c0, c1, c2) + bg_weight * bg (bg may be nullptr: no background term).
template <typename scalar_t>
JC_HD void store_color(scalar_t c0, scalar_t c1, scalar_t c2, scalar_t bg_weight,
                       const scalar_t* bg, scalar_t* color) {
  if (bg != nullptr) {
    c0 += bg_weight * bg[0];
    c1 += bg_weight * bg[1];
    c2 += bg_weight * bg[2];
  }
  color[0] = c0;
  color[1] = c1;
  color[2] = c2;
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
    D += T * t[S - 1];
    weights[S - 1] = T;
  }
  store_color(c0, c1, c2, last_bg ? T : scalar_t(1) - A, bg, color);
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

// ---- packed samples (composite_packed) ------------------------------------------------------
// Samples of all rays in one flat list, sorted by ray (nerfacc's layout): sample i belongs to
// ray ray_indices[i] and covers [t_starts[i], t_ends[i]]. Per ray, over its samples in order:
//   x_i = relu(sigma_i) max(t_end_i - t_start_i, 0),  alpha_i = 1 - exp(-x_i),
//   T_i = prod_{j<i} exp(-x_j),  w_i = T_i alpha_i  (w_i = 0 for the samples after T < stop),
//   color = sum w_i c_i + (1 - opacity) bg,  opacity = sum w_i,
//   depth = sum w_i (t_start_i + t_end_i) / 2.
// The backward is the dense one's (O(1) saved state per ray), with G_i = dL/dw_i
//   = gC.c_i + gD mid_i + gA - gC.bg (+ gw_i), total = sum G_i w_i.

// offsets [N + 1] of sorted ray indices: offsets[r] = first sample of ray r, offsets[N] = M.
// Entry i of the scan (0 <= i <= M; i = M stands for a sentinel sample of ray N) writes
// offsets[r] = i for prev < r <= cur, so every entry is written by exactly one i; runs on the
// CPU (in parallel) and as one CUDA thread per i. Returns 1 for an index outside [0, N), 2 for
// one smaller than its predecessor, 0 otherwise.
JC_HD int packed_offsets_at(int64_t i, int64_t M, int64_t N, const int64_t* ray_indices,
                            int64_t* offsets) {
  const int64_t cur = i < M ? ray_indices[i] : N;
  const int64_t prev = i > 0 ? ray_indices[i - 1] : -1;
  if (i < M && (cur < 0 || cur >= N)) return 1;
  if (cur < prev) return 2;
  const int64_t lo = prev < -1 ? -1 : prev;  // prev out of range was reported by its own i
  for (int64_t r = lo + 1; r <= cur && r <= N; ++r) offsets[r] = i;
  return 0;
}

template <typename scalar_t>
JC_HD void packed_factors(int64_t base, int64_t len, const scalar_t* sigma,
                          const scalar_t* t_starts, const scalar_t* t_ends, scalar_t* e,
                          scalar_t* delta) {
  for (int64_t k = 0; k < len; ++k) {
    const int64_t i = base + k;
    const scalar_t dt = t_ends[i] - t_starts[i];
    const scalar_t dl = dt > scalar_t(0) ? dt : scalar_t(0);
    const scalar_t s = sigma[i] < scalar_t(0) ? scalar_t(0) : sigma[i];
    delta[k] = dl;
    e[k] = jc_exp(-(s * dl));
  }
}

// One ray's samples (pointers already offset to its first sample, n of them). bg may be nullptr
// (no background term).
template <typename scalar_t, int kChunk>
JC_HD void composite_packed_ray_forward(int64_t n, const scalar_t* sigma, const scalar_t* rgb,
                                        const scalar_t* t_starts, const scalar_t* t_ends,
                                        const scalar_t* bg, scalar_t stop, scalar_t* color,
                                        scalar_t* opacity, scalar_t* depth, scalar_t* weights) {
  scalar_t c0 = 0, c1 = 0, c2 = 0, D = 0, A = 0;
  int64_t walked = 0;
  walk_samples<scalar_t, kChunk>(
      n, stop,
      [&](int64_t base, int64_t len, scalar_t* e, scalar_t* delta) {
        packed_factors<scalar_t>(base, len, sigma, t_starts, t_ends, e, delta);
      },
      [&](int64_t i, scalar_t e, scalar_t, scalar_t T_i) {
        const scalar_t w = T_i * (scalar_t(1) - e);
        A += w;
        const scalar_t* c = rgb + 3 * i;
        c0 += w * c[0];
        c1 += w * c[1];
        c2 += w * c[2];
        D += w * (scalar_t(0.5) * (t_starts[i] + t_ends[i]));
        weights[i] = w;
      },
      &walked);
  for (int64_t i = walked; i < n; ++i) weights[i] = 0;  // after early termination
  store_color(c0, c1, c2, scalar_t(1) - A, bg, color);
  *opacity = A;
  *depth = D;
}

// gw may be nullptr (the weights output received no gradient); bg may be nullptr. g_bg gets
// dL/dbackground of this ray (gC (1 - opacity)), written even without a background.
template <typename scalar_t, int kChunk>
JC_HD void composite_packed_ray_backward(
    int64_t n, const scalar_t* sigma, const scalar_t* rgb, const scalar_t* t_starts,
    const scalar_t* t_ends, const scalar_t* bg, scalar_t stop, const scalar_t* color,
    scalar_t opacity, scalar_t depth, const scalar_t* gC, scalar_t gA, scalar_t gD,
    const scalar_t* gw, scalar_t* g_sigma, scalar_t* g_rgb, scalar_t* g_bg) {
  const scalar_t gC_bg = bg != nullptr ? gC[0] * bg[0] + gC[1] * bg[1] + gC[2] * bg[2]
                                       : scalar_t(0);
  const scalar_t gA_fg = gA - gC_bg;
  auto factors = [&](int64_t base, int64_t len, scalar_t* e, scalar_t* delta) {
    packed_factors<scalar_t>(base, len, sigma, t_starts, t_ends, e, delta);
  };
  auto G_of = [&](int64_t i) {
    const scalar_t* c = rgb + 3 * i;
    return gC[0] * c[0] + gC[1] * c[1] + gC[2] * c[2] +
           gD * (scalar_t(0.5) * (t_starts[i] + t_ends[i])) + gA_fg +
           (gw != nullptr ? gw[i] : scalar_t(0));
  };
  scalar_t total;  // sum_i G_i w_i
  if (gw == nullptr) {
    total = gC[0] * color[0] + gC[1] * color[1] + gC[2] * color[2] - gC_bg + gD * depth +
            gA * opacity;
  } else {
    total = 0;
    walk_samples<scalar_t, kChunk>(n, stop, factors,
                                   [&](int64_t i, scalar_t e, scalar_t, scalar_t T_i) {
                                     total += G_of(i) * (T_i * (scalar_t(1) - e));
                                   });
  }
  scalar_t prefix = 0;
  int64_t walked = 0;
  walk_samples<scalar_t, kChunk>(
      n, stop, factors,
      [&](int64_t i, scalar_t e, scalar_t delta, scalar_t T_i) {
        const scalar_t w = T_i * (scalar_t(1) - e);
        const scalar_t T_next = T_i * e;
        const scalar_t G = G_of(i);
        prefix += G * w;
        // After the ray's last sample (or the last one before termination) nothing follows.
        const bool last = i == n - 1 || T_next < stop;
        const scalar_t suffix = last ? scalar_t(0) : total - prefix;
        g_sigma[i] = sigma[i] <= scalar_t(0) ? scalar_t(0) : delta * (G * T_next - suffix);
        scalar_t* gr = g_rgb + 3 * i;
        gr[0] = gC[0] * w;
        gr[1] = gC[1] * w;
        gr[2] = gC[2] * w;
      },
      &walked);
  for (int64_t i = walked; i < n; ++i) {
    g_sigma[i] = 0;
    g_rgb[3 * i] = g_rgb[3 * i + 1] = g_rgb[3 * i + 2] = 0;
  }
  g_bg[0] = gC[0] * (scalar_t(1) - opacity);
  g_bg[1] = gC[1] * (scalar_t(1) - opacity);
  g_bg[2] = gC[2] * (scalar_t(1) - opacity);
}

// The sample range [start, end) of ray r from offsets, clamped into [0, M] (the CUDA kernels
// do not read offsets back to the host to check them).
JC_HD void packed_range(const int64_t* offsets, int64_t r, int64_t M, int64_t* start,
                        int64_t* end) {
  int64_t a = offsets[r], b = offsets[r + 1];
  a = a < 0 ? 0 : (a > M ? M : a);
  b = b < a ? a : (b > M ? M : b);
  *start = a;
  *end = b;
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

// ---- validation of composite_packed (both devices) -------------------------------------------
// The per-sample inputs, the background and early_stop.
inline void check_packed_samples(const at::Tensor& sigma, const at::Tensor& rgb,
                                 const at::Tensor& t_starts, const at::Tensor& t_ends,
                                 int64_t n_rays, const std::optional<at::Tensor>& background,
                                 double early_stop) {
  check_float(sigma, "sigma", 1, sigma);
  const int64_t M = sigma.size(0);
  check_float(rgb, "rgb", 2, sigma);
  check_sizes(rgb, "rgb", {M, 3}, "[M, 3] matching sigma [M]");
  check_float(t_starts, "t_starts", 1, sigma);
  check_sizes(t_starts, "t_starts", {M}, "[M] matching sigma");
  check_float(t_ends, "t_ends", 1, sigma);
  check_sizes(t_ends, "t_ends", {M}, "[M] matching sigma");
  TORCH_CHECK_VALUE(n_rays >= 0, "n_rays must be >= 0, got ", n_rays);
  if (background.has_value()) {
    check_float(*background, "background", 2, sigma);
    check_sizes(*background, "background", {n_rays, 3}, "[n_rays, 3]");
  }
  TORCH_CHECK_VALUE(early_stop >= 0.0 && early_stop < 1.0,
                    "early_stop must be in [0, 1) (a transmittance), got ", early_stop);
}

inline void raise_packed_index_error(int code) {
  TORCH_CHECK_VALUE(code != 1, "ray_indices must be in [0, n_rays)");
  TORCH_CHECK_VALUE(code != 2,
                    "ray_indices must be sorted (the samples of each ray together, rays in "
                    "ascending order), as march_rays returns them");
}

using PackedOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Allocates (color [N,3], opacity [N], depth [N], weights [M], offsets [N+1] int64).
inline PackedOut composite_packed_outputs(const at::Tensor& sigma, int64_t M, int64_t N) {
  return {at::empty({N, 3}, sigma.options()), at::empty({N}, sigma.options()),
          at::empty({N}, sigma.options()), at::empty({M}, sigma.options()),
          at::empty({N + 1}, sigma.options().dtype(at::kLong))};
}

// Validates the backward's inputs and allocates (grad_sigma [M], grad_rgb [M,3], grad_bg [N,3]).
inline CompositeGrads composite_packed_backward_prepare(
    const at::Tensor& grad_color, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma,
    const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& offsets, const std::optional<at::Tensor>& background,
    const at::Tensor& color, const at::Tensor& opacity, const at::Tensor& depth,
    double early_stop) {
  check_float(sigma, "sigma", 1, sigma);
  const int64_t M = sigma.size(0);
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.size(0) >= 1,
                    "offsets must be [n_rays + 1], got ", shape_str(offsets));
  const int64_t N = offsets.size(0) - 1;
  check_index(offsets, "offsets", N + 1, sigma);
  check_packed_samples(sigma, rgb, t_starts, t_ends, N, background, early_stop);
  check_float(grad_color, "grad_color", 2, sigma);
  check_sizes(grad_color, "grad_color", {N, 3}, "[N, 3]");
  check_float(color, "color", 2, sigma);
  check_sizes(color, "color", {N, 3}, "[N, 3]");
  for (auto [t, name] : {std::pair<const at::Tensor*, const char*>{&grad_opacity, "grad_opacity"},
                         {&grad_depth, "grad_depth"}, {&opacity, "opacity"}, {&depth, "depth"}}) {
    check_float(*t, name, 1, sigma);
    check_sizes(*t, name, {N}, "[N]");
  }
  if (grad_weights.has_value()) {
    check_float(*grad_weights, "grad_weights", 1, sigma);
    check_sizes(*grad_weights, "grad_weights", {M}, "[M]");
  }
  return {at::empty_like(sigma), at::empty_like(rgb), at::empty({N, 3}, sigma.options())};
}

PackedOut composite_packed_forward_cpu(const at::Tensor& sigma, const at::Tensor& rgb,
                                       const at::Tensor& t_starts, const at::Tensor& t_ends,
                                       const at::Tensor& ray_indices, int64_t n_rays,
                                       const std::optional<at::Tensor>& background,
                                       double early_stop);
CompositeGrads composite_packed_backward_cpu(
    const at::Tensor& grad_color, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma,
    const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& offsets, const std::optional<at::Tensor>& background,
    const at::Tensor& color, const at::Tensor& opacity, const at::Tensor& depth,
    double early_stop);
#ifdef JEANCORE_WITH_CUDA
PackedOut composite_packed_forward_cuda(const at::Tensor& sigma, const at::Tensor& rgb,
                                        const at::Tensor& t_starts, const at::Tensor& t_ends,
                                        const at::Tensor& ray_indices, int64_t n_rays,
                                        const std::optional<at::Tensor>& background,
                                        double early_stop);
CompositeGrads composite_packed_backward_cuda(
    const at::Tensor& grad_color, const at::Tensor& grad_opacity, const at::Tensor& grad_depth,
    const std::optional<at::Tensor>& grad_weights, const at::Tensor& sigma,
    const at::Tensor& rgb, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& offsets, const std::optional<at::Tensor>& background,
    const at::Tensor& color, const at::Tensor& opacity, const at::Tensor& depth,
    double early_stop);
#endif

}  // namespace jeancore
