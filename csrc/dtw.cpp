// CPU DTW: pairs in parallel (parallel_chunks, largest pairs first), row-major dynamic programme per pair with two
// rows of accumulated cost and a byte per cell for the chosen step; see dtw.h.
#include "dtw.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <dlfcn.h>
#include <omp.h>

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

void local_cost_into(at::Tensor& out, const at::Tensor& x, const at::Tensor& y, int64_t metric) {
  const bool batched = x.dim() == 3;
  if (metric == kCosine) {
    const double tiny = x.scalar_type() == at::kFloat ? double(std::numeric_limits<float>::min())
                                                     : std::numeric_limits<double>::min();
    const at::Tensor xn = x / x.norm(2, {-1}, true).clamp_min(tiny);
    const at::Tensor yn = y / y.norm(2, {-1}, true).clamp_min(tiny);
    const at::Tensor one = at::ones({}, x.options());
    if (batched) at::baddbmm_out(out, one, xn, yn.transpose(-1, -2), 1, -1);  // 1 - cos
    else at::addmm_out(out, one, xn, yn.t(), 1, -1);
    return;
  }
  const at::Tensor x2 = (x * x).sum(-1).unsqueeze(-1);
  const at::Tensor y2 = (y * y).sum(-1).unsqueeze(-2);
  if (batched) at::baddbmm_out(out, x2, x, y.transpose(-1, -2), 1, -2);  // |x|^2 - 2 x.y
  else at::addmm_out(out, x2, x, y.t(), 1, -2);
  out.add_(y2).clamp_(0);
  if (metric == kEuclidean) out.sqrt_();
}

namespace {
// BLAS on one thread for the calling thread (restored on destruction): the OpenMP ICV of the
// thread and, when the BLAS is MKL (torch's x86 builds export its symbols), MKL's thread-local
// count (torch.set_num_threads sets it on the main thread). The pairs are what runs in parallel;
// a multi-threaded BLAS call inside a chunk would open an OpenMP region that waits for its team.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : omp_(omp_get_max_threads()) {
    omp_set_num_threads(1);
    if (mkl_local() != nullptr) mkl_ = mkl_local()(1);
  }
  ~SingleThreadedBlas() {
    omp_set_num_threads(omp_);
    if (mkl_local() != nullptr) mkl_local()(mkl_);
  }

 private:
  using SetLocal = int (*)(int);
  static SetLocal mkl_local() {
    // MKL's C interface (what torch calls); the lower-case name is the Fortran one (int*)
    static const SetLocal f =
        reinterpret_cast<SetLocal>(dlsym(RTLD_DEFAULT, "MKL_Set_Num_Threads_Local"));
    return f;
  }
  int omp_, mkl_ = 0;
};
}  // namespace

DtwCost dtw_local_cost_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                           const at::Tensor& y_lengths, int64_t metric) {
  check_local_cost_inputs(x, y, x_lengths, y_lengths, metric);
  const int64_t B = x.size(0);
  const at::Tensor xl = x_lengths.contiguous(), yl = y_lengths.contiguous();
  const int64_t* n = xl.data_ptr<int64_t>();
  const int64_t* m = yl.data_ptr<int64_t>();
  auto offsets = at::empty({B}, xl.options());
  int64_t* off = offsets.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b) {
    off[b] = total;
    total += n[b] * m[b];
  }
  auto cost = at::empty({total}, x.options());
  std::vector<int64_t> order(static_cast<size_t>(B));  // largest pairs first, as the DP
  for (int64_t b = 0; b < B; ++b) order[b] = b;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return n[a] * m[a] > n[b] * m[b]; });
  parallel_chunks(B, 1, [&](int64_t q0, int64_t q1) {
    const SingleThreadedBlas one_thread;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t b = order[q];
      at::Tensor block = cost.narrow(0, off[b], n[b] * m[b]).view({n[b], m[b]});
      local_cost_into(block, x[b].narrow(0, 0, n[b]), y[b].narrow(0, 0, m[b]), metric);
    }
  });
  return {cost, offsets, yl.clone()};
}

}  // namespace jeancore
