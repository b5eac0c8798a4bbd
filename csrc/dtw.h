// Dynamic time warping with the warping path, batched over pairs of different lengths.
//
// Given a local cost matrix d [n, m] (computed by the caller with torch), the accumulated cost
//   g[0,0] = d[0,0]
//   g[i,j] = min( g[i-1,j-1] + w_diag d[i,j],  g[i,j-1] + d[i,j],  g[i-1,j] + d[i,j] )
// with w_diag = 2 (step pattern "symmetric2") or 1 ("symmetric1"), exactly as dtw-python's
// symmetric2 / symmetric1. Ties go to the first minimum in that order (diagonal, (i, j-1),
// (i-1, j)), as dtw-python does. Optional Sakoe-Chiba band: cells with |i - j| > window are
// not admissible. The path is backtracked from (n-1, m-1) to (0, 0) through the step chosen
// at each cell.
#pragma once

#include "common.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>

#include <cstdint>
#include <limits>
#include <tuple>
#include <utility>

namespace jeancore {

enum DtwDir : uint8_t { kDirDiag = 0, kDirLeft = 1, kDirUp = 2, kDirNone = 3 };
enum DtwStepPattern : int64_t { kSymmetric2 = 0, kSymmetric1 = 1 };

struct DtwBand {
  int64_t n, m, window;  // window < 0: no band
  JC_HD bool admissible(int64_t i, int64_t j) const {
    if (i < 0 || j < 0 || i >= n || j >= m) return false;
    if (window < 0) return true;
    const int64_t k = i - j;
    return k <= window && -k <= window;
  }
};

// One cell of the dynamic programme: candidates in dtw-python's order, first strict minimum.
// Inadmissible neighbours are passed as +inf.
// Written with selects rather than branches: on random data the winner is unpredictable.
JC_HD void dtw_cell(double d, double g_diag, double g_left, double g_up, double w_diag,
                    double* g, uint8_t* dir) {
  double best = std::numeric_limits<double>::infinity();
  uint8_t k = kDirNone;
  const double c_diag = g_diag + w_diag * d, c_left = g_left + d, c_up = g_up + d;
  bool take = c_diag < best;
  best = take ? c_diag : best;
  k = take ? uint8_t(kDirDiag) : k;
  take = c_left < best;
  best = take ? c_left : best;
  k = take ? uint8_t(kDirLeft) : k;
  take = c_up < best;
  best = take ? c_up : best;
  k = take ? uint8_t(kDirUp) : k;
  *g = best;  // +inf when no candidate is finite (k == kDirNone)
  *dir = k;
}

// Follows the stored steps from (n-1, m-1) back to (0, 0); writes the path forwards into
// path[0 .. 2L) as (i, j) pairs and returns L, or 0 if the end is not reachable.
JC_HD int64_t dtw_backtrack(const uint8_t* dir, int64_t stride, int64_t n, int64_t m,
                            int64_t* path) {
  int64_t i = n - 1, j = m - 1, L = 0;
  while (true) {
    path[2 * L] = i;
    path[2 * L + 1] = j;
    ++L;
    if (i == 0 && j == 0) break;
    const uint8_t s = dir[i * stride + j];
    if (s == kDirDiag) { --i; --j; }
    else if (s == kDirLeft) { --j; }
    else if (s == kDirUp) { --i; }
    else return 0;
  }
  for (int64_t a = 0, b = L - 1; a < b; ++a, --b) {
    const int64_t ti = path[2 * a], tj = path[2 * a + 1];
    path[2 * a] = path[2 * b];
    path[2 * a + 1] = path[2 * b + 1];
    path[2 * b] = ti;
    path[2 * b + 1] = tj;
  }
  return L;
}

// The local costs are packed: pair b's cell (i, j) is cost[offsets[b] + i * row_stride[b] + j]
// (a padded [B, N, M] batch is offsets = b N M, row_stride = M; a packed one has no padding).
struct DtwPairs {
  const int64_t* offsets;
  const int64_t* row_stride;
  const int64_t* x_lengths;
  const int64_t* y_lengths;
};

inline void check_dtw_inputs(const at::Tensor& cost, const at::Tensor& offsets,
                             const at::Tensor& row_stride, const at::Tensor& x_lengths,
                             const at::Tensor& y_lengths, int64_t step_pattern, int64_t window,
                             int64_t max_path_length) {
  check_float(cost, "cost", 1, cost);
  const int64_t B = offsets.dim() == 1 ? offsets.size(0) : -1;
  check_index(offsets, "offsets", B, cost);
  check_index(row_stride, "row_stride", B, cost);
  check_index(x_lengths, "x_lengths", B, cost);
  check_index(y_lengths, "y_lengths", B, cost);
  TORCH_CHECK_VALUE(step_pattern == kSymmetric2 || step_pattern == kSymmetric1,
                    "step_pattern must be 0 (symmetric2) or 1 (symmetric1), got ", step_pattern);
  TORCH_CHECK_VALUE(window >= -1, "window must be >= 0, or -1 for none, got ", window);
  TORCH_CHECK_VALUE(max_path_length >= 1, "max_path_length must be >= 1, got ", max_path_length);
}

// Host-side check of every pair's lengths and extent (index tensors on the CPU); returns the
// largest n and m.
inline std::pair<int64_t, int64_t> check_dtw_pairs(const DtwPairs& p, int64_t B, int64_t numel,
                                                   int64_t max_path_length) {
  int64_t n_max = 0, m_max = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = p.x_lengths[b], m = p.y_lengths[b], off = p.offsets[b],
                  st = p.row_stride[b];
    TORCH_CHECK_VALUE(n >= 1 && m >= 1, "pair ", b, ": lengths (", n, ", ", m,
                      ") must be >= 1");
    TORCH_CHECK_VALUE(st >= m && off >= 0 && off + (n - 1) * st + m <= numel, "pair ", b,
                      ": cost block (offset ", off, ", row stride ", st, ", ", n, " x ", m,
                      ") does not fit in the cost buffer of ", numel, " entries");
    TORCH_CHECK_VALUE(n + m - 1 <= max_path_length, "pair ", b, ": max_path_length ",
                      max_path_length, " is shorter than n + m - 1 = ", n + m - 1);
    n_max = std::max(n_max, n);
    m_max = std::max(m_max, m);
  }
  return {n_max, m_max};
}

// Returns (distance [B] float64, path [B, max_path_length, 2] int64 padded with -1,
// path_length [B] int64). distance is +inf and path_length 0 for a pair with no admissible path.
using DtwOut = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// Allocates (distance [B] float64, path [B, P, 2] int64 filled with -1, path_length [B] int64).
inline DtwOut dtw_outputs(const at::Tensor& cost, int64_t B, int64_t max_path_length) {
  return {at::empty({B}, cost.options().dtype(at::kDouble)),
          at::full({B, max_path_length, 2}, -1, cost.options().dtype(at::kLong)),
          at::empty({B}, cost.options().dtype(at::kLong))};
}
// ---- local cost matrices (the DP's input), computed with ATen (BLAS) ops ------------------------
enum DtwMetric : int64_t { kEuclidean = 0, kSqEuclidean = 1, kCosine = 2 };

// Writes the local cost of frames x [n, D] (or [B, n, D]) against y [m, D] ([B, m, D]) into out
// [n, m] ([B, n, m]): |x - y| (euclidean), |x - y|^2 (from |x|^2 + |y|^2 - 2 x.y, clamped at 0)
// or 1 - x.y / (|x| |y|) (cosine; a zero vector is orthogonal to everything), as
// scipy.spatial.distance.cdist (dtw-python's local distance). One (b)addmm plus in-place passes.
void local_cost_into(at::Tensor& out, const at::Tensor& x, const at::Tensor& y, int64_t metric);

inline void check_local_cost_inputs(const at::Tensor& x, const at::Tensor& y,
                                    const at::Tensor& x_lengths, const at::Tensor& y_lengths,
                                    int64_t metric) {
  check_float(x, "x", 3, x);
  check_float(y, "y", 3, x);
  const int64_t B = x.size(0);
  TORCH_CHECK_VALUE(y.size(0) == B && y.size(2) == x.size(2), "y must be [B, M, D] matching x ",
                    shape_str(x), ", got ", shape_str(y));
  for (auto [t, name, full] : {std::tuple<const at::Tensor*, const char*, int64_t>{
                                   &x_lengths, "x_lengths", x.size(1)},
                               {&y_lengths, "y_lengths", y.size(1)}}) {
    TORCH_CHECK_TYPE(t->scalar_type() == at::kLong, name, " must be int64");
    TORCH_CHECK_VALUE(t->device().is_cpu() && t->dim() == 1 && t->size(0) == B, name,
                      " must be a CPU tensor [B] (B = ", B, "), got ", shape_str(*t));
    const at::Tensor c = t->contiguous();
    const int64_t* v = c.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      TORCH_CHECK_VALUE(v[b] >= 1 && v[b] <= full, name, "[", b, "] = ", v[b],
                        " is outside [1, ", full, "]");
    }
  }
  TORCH_CHECK_VALUE(metric >= kEuclidean && metric <= kCosine,
                    "metric must be 0 (euclidean), 1 (sqeuclidean) or 2 (cosine), got ", metric);
}

// (cost, offsets [B], row_stride [B]) in the packed layout of the dtw operator, on x's device.
// CPU: one block per pair ([n_b, m_b], no padding), the pairs in parallel; CUDA: the padded
// batch [B, N, M] from one batched matmul.
using DtwCost = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
DtwCost dtw_local_cost_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                           const at::Tensor& y_lengths, int64_t metric);
#ifdef JEANCORE_WITH_CUDA
DtwCost dtw_local_cost_cuda(const at::Tensor& x, const at::Tensor& y,
                            const at::Tensor& x_lengths, const at::Tensor& y_lengths,
                            int64_t metric);
#endif

DtwOut dtw_cpu(const at::Tensor& cost, const at::Tensor& offsets, const at::Tensor& row_stride,
               const at::Tensor& x_lengths, const at::Tensor& y_lengths, int64_t step_pattern,
               int64_t window, int64_t max_path_length);
#ifdef JEANCORE_WITH_CUDA
DtwOut dtw_cuda(const at::Tensor& cost, const at::Tensor& offsets, const at::Tensor& row_stride,
                const at::Tensor& x_lengths, const at::Tensor& y_lengths, int64_t step_pattern,
                int64_t window, int64_t max_path_length);
#endif

}  // namespace jeancore
