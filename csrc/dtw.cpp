// CPU DTW: pairs in parallel (at::parallel_for), row-major dynamic programme per pair with two
// rows of accumulated cost and a byte per cell for the chosen step; see dtw.h.
#include "dtw.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>

#include <vector>

namespace jeancore {

namespace {
template <typename scalar_t>
double dtw_pair_cpu(const scalar_t* cost, int64_t stride, const DtwBand& band, double w_diag,
                    std::vector<uint8_t>& dir, std::vector<double>& prev,
                    std::vector<double>& cur) {
  const double inf = std::numeric_limits<double>::infinity();
  const int64_t n = band.n, m = band.m, r = band.window;
  dir.assign(static_cast<size_t>(n * m), kDirNone);
  prev.assign(static_cast<size_t>(m), inf);
  cur.assign(static_cast<size_t>(m), inf);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t lo = r < 0 ? 0 : std::max<int64_t>(0, i - r);
    const int64_t hi = r < 0 ? m - 1 : std::min<int64_t>(m - 1, i + r);
    for (int64_t j = lo; j <= hi; ++j) {
      const double d = static_cast<double>(cost[i * stride + j]);
      if (i == 0 && j == 0) {
        cur[0] = d;
        continue;
      }
      const double g_diag = band.admissible(i - 1, j - 1) ? prev[j - 1] : inf;
      const double g_left = band.admissible(i, j - 1) ? cur[j - 1] : inf;
      const double g_up = band.admissible(i - 1, j) ? prev[j] : inf;
      dtw_cell(d, g_diag, g_left, g_up, w_diag, &cur[j], &dir[i * m + j]);
    }
    std::swap(prev, cur);
  }
  return prev[m - 1];
}
}  // namespace

DtwOut dtw_cpu(const at::Tensor& cost, const at::Tensor& x_lengths, const at::Tensor& y_lengths,
               int64_t step_pattern, int64_t window) {
  check_dtw_inputs(cost, x_lengths, y_lengths, step_pattern, window);
  const int64_t B = cost.size(0), N = cost.size(1), M = cost.size(2);
  const int64_t max_len = std::max<int64_t>(N + M - 1, 1);
  auto distance = at::empty({B}, cost.options().dtype(at::kDouble));
  auto path = at::full({B, max_len, 2}, -1, cost.options().dtype(at::kLong));
  auto path_length = at::empty({B}, cost.options().dtype(at::kLong));
  const int64_t* xl = x_lengths.data_ptr<int64_t>();
  const int64_t* yl = y_lengths.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK_VALUE(xl[b] >= 1 && xl[b] <= N && yl[b] >= 1 && yl[b] <= M,
                      "pair ", b, ": lengths (", xl[b], ", ", yl[b],
                      ") must be in [1, ", N, "] and [1, ", M, "]");
  }
  const double w_diag = step_pattern == kSymmetric2 ? 2.0 : 1.0;
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "dtw_cpu", [&] {
    const scalar_t* c = cost.data_ptr<scalar_t>();
    double* dist = distance.data_ptr<double>();
    int64_t* p = path.data_ptr<int64_t>();
    int64_t* pl = path_length.data_ptr<int64_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> dir;
      std::vector<double> prev, cur;
      for (int64_t b = begin; b < end; ++b) {
        const DtwBand band{xl[b], yl[b], window};
        dist[b] = dtw_pair_cpu<scalar_t>(c + b * N * M, M, band, w_diag, dir, prev, cur);
        pl[b] = dtw_backtrack(dir.data(), band.m, band.n, band.m, p + b * max_len * 2);
        if (pl[b] == 0) dist[b] = std::numeric_limits<double>::infinity();
      }
    });
  });
  return {distance, path, path_length};
}

}  // namespace jeancore
