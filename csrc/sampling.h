// Sampling along rays: the coarse pass (evenly spaced or stratified depths between near and far)
// and the fine pass (inverse transform sampling of the coarse weights, NeRF's sample_pdf).
// Per-ray math is written once here and used by the CPU loops and the CUDA kernels.
#pragma once

#include "common.h"

#include <optional>
#include <tuple>

namespace jeancore {

// Coarse depth i of a ray (NeRF / AD-NeRF): z_i = near (1 - s_i) + far s_i, s_i = i / (S - 1)
// (s_0 = 0 when S == 1). With jitter u_i in [0, 1) (jitter_i != nullptr) the depth is drawn
// uniformly in its bin, the bins bounded by the midpoints between neighbouring z (first and
// last bins end at near and far): t_i = lower_i + (upper_i - lower_i) u_i. Each depth depends
// only on i, so the CUDA kernel computes one sample per thread.
template <typename scalar_t>
JC_HD scalar_t sample_depth(int64_t i, int64_t S, scalar_t near, scalar_t far,
                            const scalar_t* jitter_i) {
  const scalar_t inv = S > 1 ? scalar_t(1) / scalar_t(S - 1) : scalar_t(0);
  auto z = [&](int64_t k) {
    const scalar_t s = scalar_t(k) * inv;
    return near * (scalar_t(1) - s) + far * s;
  };
  scalar_t ti = z(i);
  if (jitter_i != nullptr) {
    const scalar_t lower = i > 0 ? scalar_t(0.5) * (z(i - 1) + ti) : ti;
    const scalar_t upper = i + 1 < S ? scalar_t(0.5) * (ti + z(i + 1)) : ti;
    ti = lower + (upper - lower) * *jitter_i;
  }
  return ti;
}

// Sample i of a ray: its depth t_i and point o + t_i d.
template <typename scalar_t>
JC_HD void sample_point(int64_t i, int64_t S, const scalar_t* o, const scalar_t* d,
                        scalar_t near, scalar_t far, const scalar_t* jitter_i, scalar_t* t,
                        scalar_t* point) {
  const scalar_t ti = sample_depth<scalar_t>(i, S, near, far, jitter_i);
  *t = ti;
  point[0] = o[0] + ti * d[0];
  point[1] = o[1] + ti * d[1];
  point[2] = o[2] + ti * d[2];
}

// Inverse transform sampling of one ray, exactly NeRF's sample_pdf: pdf = (w + 1e-5) / sum,
// cdf = [0, cumsum(pdf)] (S + 1 entries, clamped to 1, the last exactly 1),
// idx = searchsorted(cdf, u, right=True), below = max(idx - 1, 0), above = min(idx, S),
// denominators < 1e-5 replaced by 1, linear
// interpolation between bins[below] and bins[above]. u must be ascending (the wrapper makes it
// so), which lets one walk along the CDF serve all samples: O(S + n) work and O(1) state.
template <typename scalar_t>
JC_HD void sample_pdf_ray(int64_t S, int64_t n, const scalar_t* bins, const scalar_t* w,
                          const scalar_t* u, scalar_t* out) {
  const scalar_t eps = scalar_t(1e-5);
  scalar_t total = 0;
  for (int64_t k = 0; k < S; ++k) total += w[k] + eps;
  // Walk state: j = number of CDF entries <= u seen so far; cdf_j is entry j (if j <= S),
  // cdf_prev is entry j - 1.
  int64_t j = 0;
  scalar_t cdf_j = 0, cdf_prev = 0;
  for (int64_t m = 0; m < n; ++m) {
    const scalar_t um = u[m];
    while (j <= S && cdf_j <= um) {
      cdf_prev = cdf_j;
      ++j;
      // The CDF is clamped to 1 and its last entry is exactly 1: a float sum lands an ulp
      // either side of 1, which would make the CDF non-monotone or the u = 1 sample jump.
      if (j <= S) {
        const scalar_t next = cdf_prev + (w[j - 1] + eps) / total;
        cdf_j = j == S || next > scalar_t(1) ? scalar_t(1) : next;
      }
    }
    const int64_t below = j - 1 > 0 ? j - 1 : 0;
    const int64_t above = j < S ? j : S;
    // j >= 1 always (cdf_0 = 0 <= u); cdf[below] = cdf_prev, cdf[above] = cdf_j or cdf_prev.
    const scalar_t c0 = cdf_prev;
    const scalar_t c1 = j <= S ? cdf_j : cdf_prev;
    scalar_t denom = c1 - c0;
    if (denom < eps) denom = 1;
    const scalar_t f = (um - c0) / denom;
    out[m] = bins[below] + f * (bins[above] - bins[below]);
  }
}

inline void check_sample_inputs(const at::Tensor& rays_o, const at::Tensor& rays_d,
                                const at::Tensor& near, const at::Tensor& far, int64_t n_samples,
                                const std::optional<at::Tensor>& jitter) {
  const int64_t N = check_rays(rays_o, rays_d, near, far);
  TORCH_CHECK_VALUE(n_samples >= 1, "n_samples must be >= 1, got ", n_samples);
  if (jitter.has_value()) {
    check_float(*jitter, "jitter", 2, rays_o);
    check_sizes(*jitter, "jitter", {N, n_samples}, "[N, n_samples]");
  }
}

inline void check_pdf_inputs(const at::Tensor& bins, const at::Tensor& weights,
                             const at::Tensor& u) {
  check_float(weights, "weights", 2, weights);
  const int64_t N = weights.size(0), S = weights.size(1);
  TORCH_CHECK_VALUE(S >= 1, "weights must have at least one bin per ray, got shape ",
                    shape_str(weights));
  check_float(bins, "bins", 2, weights);
  check_sizes(bins, "bins", {N, S + 1}, "[N, S + 1] for weights [N, S]");
  TORCH_CHECK_VALUE(u.dim() == 1 || u.dim() == 2, "u must be [n] or [N, n], got ", shape_str(u));
  check_float(u, "u", u.dim(), weights);
  if (u.dim() == 2) check_sizes(u, "u", {N, -1}, "[N, n]");
}

using SampleOut = std::tuple<at::Tensor, at::Tensor>;

SampleOut sample_along_rays_cpu(const at::Tensor& rays_o, const at::Tensor& rays_d,
                                const at::Tensor& near, const at::Tensor& far, int64_t n_samples,
                                const std::optional<at::Tensor>& jitter);
at::Tensor sample_pdf_cpu(const at::Tensor& bins, const at::Tensor& weights, const at::Tensor& u);
#ifdef JEANCORE_WITH_CUDA
SampleOut sample_along_rays_cuda(const at::Tensor& rays_o, const at::Tensor& rays_d,
                                 const at::Tensor& near, const at::Tensor& far, int64_t n_samples,
                                 const std::optional<at::Tensor>& jitter);
at::Tensor sample_pdf_cuda(const at::Tensor& bins, const at::Tensor& weights, const at::Tensor& u);
#endif

}  // namespace jeancore
