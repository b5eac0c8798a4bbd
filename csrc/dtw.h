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

#include <cstdint>
#include <limits>
#include <tuple>

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
JC_HD void dtw_cell(double d, double g_diag, double g_left, double g_up, double w_diag,
                    double* g, uint8_t* dir) {
  double best = std::numeric_limits<double>::infinity();
  uint8_t k = kDirNone;
  double c = g_diag + w_diag * d;
  if (c < best) { best = c; k = kDirDiag; }
  c = g_left + d;
  if (c < best) { best = c; k = kDirLeft; }
  c = g_up + d;
  if (c < best) { best = c; k = kDirUp; }
  *g = k == kDirNone ? std::numeric_limits<double>::infinity() : best;
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

inline void check_dtw_inputs(const at::Tensor& cost, const at::Tensor& x_lengths,
                             const at::Tensor& y_lengths, int64_t step_pattern, int64_t window) {
  check_float(cost, "cost", 3, cost);
  const int64_t B = cost.size(0);
  check_index(x_lengths, "x_lengths", B, cost);
  check_index(y_lengths, "y_lengths", B, cost);
  TORCH_CHECK_VALUE(step_pattern == kSymmetric2 || step_pattern == kSymmetric1,
                    "step_pattern must be 0 (symmetric2) or 1 (symmetric1), got ", step_pattern);
  TORCH_CHECK_VALUE(window >= -1, "window must be >= 0, or -1 for none, got ", window);
}

// Returns (distance [B] float64, path [B, N+M-1, 2] int64 padded with -1, path_length [B] int64).
// distance is +inf and path_length 0 for a pair with no admissible path.
using DtwOut = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
DtwOut dtw_cpu(const at::Tensor& cost, const at::Tensor& x_lengths, const at::Tensor& y_lengths,
               int64_t step_pattern, int64_t window);
#ifdef JEANCORE_WITH_CUDA
DtwOut dtw_cuda(const at::Tensor& cost, const at::Tensor& x_lengths, const at::Tensor& y_lengths,
                int64_t step_pattern, int64_t window);
#endif

}  // namespace jeancore
