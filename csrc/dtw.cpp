// CPU DTW: pairs in parallel (parallel_chunks, largest pairs first), row-major dynamic programme per pair with two
// rows of accumulated cost and a byte per cell for the chosen step; see dtw.h.
#include "dtw.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>

#include <algorithm>
#include <vector>

namespace jeancore {

namespace {
// Row-major dynamic programme over the band of one pair. Instead of testing every neighbour
// for admissibility, the two cells just outside the band of each row are set to +inf
// (sentinels): cur[lo - 1] before the row, cur[hi + 1] after it, so interior cells read their
// three neighbours unconditionally.
template <typename scalar_t>
double dtw_pair_cpu(const scalar_t* cost, int64_t stride, const DtwBand& band, double w_diag,
                    std::vector<uint8_t>& dir, std::vector<double>& prev,
                    std::vector<double>& cur) {
  const double inf = std::numeric_limits<double>::infinity();
  const int64_t n = band.n, m = band.m, r = band.window;
  dir.assign(static_cast<size_t>(n * m), kDirNone);
  prev.assign(static_cast<size_t>(m + 1), inf);
  cur.assign(static_cast<size_t>(m + 1), inf);
  auto row_hi = [&](int64_t i) { return r < 0 ? m - 1 : std::min<int64_t>(m - 1, i + r); };
  // Row 0: only horizontal steps.
  const int64_t hi0 = row_hi(0);
  cur[0] = static_cast<double>(cost[0]);
  for (int64_t j = 1; j <= hi0; ++j) {
    cur[j] = cur[j - 1] + static_cast<double>(cost[j]);
    dir[j] = kDirLeft;
  }
  cur[hi0 + 1] = inf;
  for (int64_t i = 1; i < n; ++i) {
    std::swap(prev, cur);
    const scalar_t* crow = cost + i * stride;
    uint8_t* drow = dir.data() + i * m;
    const int64_t lo = r < 0 ? 0 : std::max<int64_t>(0, i - r);
    const int64_t hi = row_hi(i);
    int64_t j = lo;
    if (lo == 0) {  // column 0: only vertical steps
      cur[0] = prev[0] + static_cast<double>(crow[0]);
      drow[0] = kDirUp;
      j = 1;
    } else {
      cur[lo - 1] = inf;
    }
    for (; j <= hi; ++j) {
      dtw_cell(static_cast<double>(crow[j]), prev[j - 1], cur[j - 1], prev[j], w_diag, &cur[j],
               &drow[j]);
    }
    cur[hi + 1] = inf;  // m + 1 entries: hi + 1 <= m is always in range
  }
  return cur[m - 1];
}
}  // namespace

DtwOut dtw_cpu(const at::Tensor& cost, const at::Tensor& offsets, const at::Tensor& row_stride,
               const at::Tensor& x_lengths, const at::Tensor& y_lengths, int64_t step_pattern,
               int64_t window, int64_t max_path_length) {
  check_dtw_inputs(cost, offsets, row_stride, x_lengths, y_lengths, step_pattern, window,
                   max_path_length);
  const int64_t B = offsets.size(0), P = max_path_length;
  const DtwPairs pairs{offsets.data_ptr<int64_t>(), row_stride.data_ptr<int64_t>(),
                       x_lengths.data_ptr<int64_t>(), y_lengths.data_ptr<int64_t>()};
  check_dtw_pairs(pairs, B, cost.numel(), P);
  DtwOut out = dtw_outputs(cost, B, P);
  const at::Tensor &distance = std::get<0>(out), &path = std::get<1>(out),
                   &path_length = std::get<2>(out);
  const double w_diag = step_pattern == kSymmetric2 ? 2.0 : 1.0;
  // Pairs are claimed largest first (longest-processing-time order), so the last pair claimed
  // is a small one and the threads finish together.
  std::vector<int64_t> order(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) order[b] = b;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return pairs.x_lengths[a] * pairs.y_lengths[a] > pairs.x_lengths[b] * pairs.y_lengths[b];
  });
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "dtw_cpu", [&] {
    const scalar_t* c = cost.data_ptr<scalar_t>();
    double* dist = distance.data_ptr<double>();
    int64_t* p = path.data_ptr<int64_t>();
    int64_t* pl = path_length.data_ptr<int64_t>();
    parallel_chunks(B, 1, [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> dir;
      std::vector<double> prev, cur;
      for (int64_t q = begin; q < end; ++q) {
        const int64_t b = order[q];
        const DtwBand band{pairs.x_lengths[b], pairs.y_lengths[b], window};
        dist[b] = dtw_pair_cpu<scalar_t>(c + pairs.offsets[b], pairs.row_stride[b], band, w_diag,
                                         dir, prev, cur);
        pl[b] = dtw_backtrack(dir.data(), band.m, band.n, band.m, p + b * P * 2);
        if (pl[b] == 0) dist[b] = std::numeric_limits<double>::infinity();
      }
    });
  });
  return out;
}

}  // namespace jeancore
