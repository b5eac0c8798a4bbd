// CUDA DTW: one block per pair sweeping anti-diagonals (wavefront). Cells of one anti-diagonal
// are independent; the three most recent anti-diagonals of accumulated cost live in shared
// memory (global scratch for very long sequences), the chosen step of every cell in a byte
// matrix, and one thread backtracks the path on the device. Cell update and backtracking are
// the same code as the CPU path (dtw.h).
#include "dtw.h"

#include <ATen/ATen.h>

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace jeancore {

namespace {
constexpr int kThreads = 256;
constexpr int64_t kMaxSharedBytes = 48 * 1024;

template <typename scalar_t>
__global__ void dtw_wavefront_kernel(const scalar_t* __restrict__ cost, DtwPairs pairs,
                                     int64_t N, int64_t M, int64_t window,
                                     double w_diag, bool use_shared, double* scratch,
                                     uint8_t* dir_all, double* distance, int64_t* path,
                                     int64_t* path_length, int64_t max_len) {
  extern __shared__ double smem[];
  const int64_t b = blockIdx.x;
  const int64_t n = pairs.x_lengths[b], m = pairs.y_lengths[b];
  const DtwBand band{n, m, window};
  const scalar_t* c = cost + pairs.offsets[b];
  const int64_t stride = pairs.row_stride[b];
  uint8_t* dir = dir_all + b * N * M;  // N x M (largest lengths), row stride M
  // Three anti-diagonal buffers indexed by row i: diag k uses buf[(k % 3) * N + i].
  double* buf = use_shared ? smem : scratch + b * 3 * N;
  const double inf = std::numeric_limits<double>::infinity();

  for (int64_t k = 0; k <= n + m - 2; ++k) {
    double* g_k = buf + (k % 3) * N;
    const double* g_k1 = buf + ((k + 2) % 3) * N;  // diag k-1
    const double* g_k2 = buf + ((k + 1) % 3) * N;  // diag k-2
    int64_t i_lo = k - (m - 1) > 0 ? k - (m - 1) : 0;
    int64_t i_hi = k < n - 1 ? k : n - 1;
    if (window >= 0) {  // |2i - k| <= window
      const int64_t lo_w = (k - window + 1) / 2 > 0 ? (k - window + 1) / 2 : 0;
      i_lo = i_lo > lo_w ? i_lo : lo_w;
      const int64_t hi_w = (k + window) / 2;
      i_hi = i_hi < hi_w ? i_hi : hi_w;
    }
    for (int64_t i = i_lo + threadIdx.x; i <= i_hi; i += blockDim.x) {
      const int64_t j = k - i;
      if (!band.admissible(i, j)) continue;
      const double d = static_cast<double>(c[i * stride + j]);
      if (k == 0) {
        g_k[0] = d;
        dir[0] = kDirNone;
        continue;
      }
      const double g_diag = band.admissible(i - 1, j - 1) ? g_k2[i - 1] : inf;
      const double g_left = band.admissible(i, j - 1) ? g_k1[i] : inf;
      const double g_up = band.admissible(i - 1, j) ? g_k1[i - 1] : inf;
      dtw_cell(d, g_diag, g_left, g_up, w_diag, &g_k[i], &dir[i * M + j]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double g_end = buf[((n + m - 2) % 3) * N + (n - 1)];
    const int64_t L = dtw_backtrack(dir, M, n, m, path + b * max_len * 2);
    path_length[b] = L;
    distance[b] = L > 0 ? g_end : inf;
  }
}
}  // namespace

DtwOut dtw_cuda(const at::Tensor& cost, const at::Tensor& offsets, const at::Tensor& row_stride,
                const at::Tensor& x_lengths, const at::Tensor& y_lengths, int64_t step_pattern,
                int64_t window, int64_t max_path_length) {
  check_dtw_inputs(cost, offsets, row_stride, x_lengths, y_lengths, step_pattern, window,
                   max_path_length);
  const c10::cuda::CUDAGuard guard(cost.device());
  const int64_t B = offsets.size(0), P = max_path_length;
  // Validate every pair on the host (one small copy) so bad input is an error, not a fault.
  const auto off_h = offsets.cpu(), st_h = row_stride.cpu(), xl_h = x_lengths.cpu(),
             yl_h = y_lengths.cpu();
  const auto [N, M] = check_dtw_pairs(
      DtwPairs{off_h.data_ptr<int64_t>(), st_h.data_ptr<int64_t>(), xl_h.data_ptr<int64_t>(),
               yl_h.data_ptr<int64_t>()},
      B, cost.numel(), P);
  DtwOut out = dtw_outputs(cost, B, P);
  const at::Tensor &distance = std::get<0>(out), &path = std::get<1>(out),
                   &path_length = std::get<2>(out);
  if (B == 0) return out;
  auto dir = at::empty({B, N, M}, cost.options().dtype(at::kByte));
  const int64_t shared_bytes = 3 * N * static_cast<int64_t>(sizeof(double));
  const bool use_shared = shared_bytes <= kMaxSharedBytes;
  at::Tensor scratch;
  if (!use_shared) scratch = at::empty({B, 3, N}, cost.options().dtype(at::kDouble));
  auto stream = c10::cuda::getCurrentCUDAStream();
  const double w_diag = step_pattern == kSymmetric2 ? 2.0 : 1.0;
  const DtwPairs pairs{offsets.data_ptr<int64_t>(), row_stride.data_ptr<int64_t>(),
                       x_lengths.data_ptr<int64_t>(), y_lengths.data_ptr<int64_t>()};
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "dtw_cuda", [&] {
    dtw_wavefront_kernel<scalar_t><<<static_cast<unsigned int>(B), kThreads,
                                     use_shared ? shared_bytes : 0, stream>>>(
        cost.data_ptr<scalar_t>(), pairs, N, M, window, w_diag, use_shared,
        use_shared ? nullptr : scratch.data_ptr<double>(), dir.data_ptr<uint8_t>(),
        distance.data_ptr<double>(), path.data_ptr<int64_t>(), path_length.data_ptr<int64_t>(),
        P);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

DtwCost dtw_local_cost_cuda(const at::Tensor& x, const at::Tensor& y,
                            const at::Tensor& x_lengths, const at::Tensor& y_lengths,
                            int64_t metric) {
  const c10::cuda::CUDAGuard guard(x.device());
  check_local_cost_inputs(x, y, x_lengths, y_lengths, metric);
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1);
  at::Tensor cost = at::empty({B, N, M}, x.options());
  local_cost_into(cost, x, y, metric);
  const at::Tensor offsets = at::arange(B, x_lengths.options()) * (N * M);
  return {cost.view({-1}), offsets.to(x.device()),
          at::full({B}, M, x_lengths.options()).to(x.device())};
}

}  // namespace jeancore
