// CUDA ray sampling (one thread per sample) and inverse transform sampling (one thread per
// ray), the math shared with the CPU path (sampling.h).
#include "sampling.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace jeancore {

namespace {
constexpr int kThreads = 128;
unsigned int blocks_for(int64_t N) { return static_cast<unsigned int>((N + kThreads - 1) / kThreads); }

// One thread per sample (ray r = k / S, sample i = k % S): consecutive threads write
// consecutive depths and points (coalesced), and the per-ray inputs are broadcast reads.
template <typename scalar_t>
__global__ void sample_along_rays_kernel(int64_t N, int64_t S, const scalar_t* __restrict__ o,
                                         const scalar_t* __restrict__ d,
                                         const scalar_t* __restrict__ nr,
                                         const scalar_t* __restrict__ fr,
                                         const scalar_t* __restrict__ jt, scalar_t* ot,
                                         scalar_t* op) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= N * S) return;
  const int64_t r = k / S, i = k - r * S;
  sample_point<scalar_t>(i, S, o + 3 * r, d + 3 * r, nr[r], fr[r], jt ? jt + k : nullptr, ot + k,
                         op + 3 * k);
}

template <typename scalar_t>
__global__ void sample_pdf_kernel(int64_t N, int64_t S, int64_t n, int64_t u_stride,
                                  const scalar_t* __restrict__ b, const scalar_t* __restrict__ w,
                                  const scalar_t* __restrict__ u, scalar_t* o) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= N) return;
  sample_pdf_ray<scalar_t>(S, n, b + r * (S + 1), w + r * S, u + r * u_stride, o + r * n);
}
}  // namespace

SampleOut sample_along_rays_cuda(const at::Tensor& rays_o, const at::Tensor& rays_d,
                                 const at::Tensor& near, const at::Tensor& far, int64_t n_samples,
                                 const std::optional<at::Tensor>& jitter) {
  check_sample_inputs(rays_o, rays_d, near, far, n_samples, jitter);
  const c10::cuda::CUDAGuard guard(rays_o.device());
  const int64_t N = rays_o.size(0), S = n_samples;
  auto t = at::empty({N, S}, rays_o.options());
  auto points = at::empty({N, S, 3}, rays_o.options());
  if (N == 0) return {t, points};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "sample_along_rays_cuda", [&] {
    sample_along_rays_kernel<scalar_t><<<blocks_for(N * S), kThreads, 0, stream>>>(
        N, S, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), near.data_ptr<scalar_t>(),
        far.data_ptr<scalar_t>(), jitter.has_value() ? jitter->data_ptr<scalar_t>() : nullptr,
        t.data_ptr<scalar_t>(), points.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {t, points};
}

at::Tensor sample_pdf_cuda(const at::Tensor& bins, const at::Tensor& weights, const at::Tensor& u) {
  check_pdf_inputs(bins, weights, u);
  const c10::cuda::CUDAGuard guard(weights.device());
  const int64_t N = weights.size(0), S = weights.size(1);
  const int64_t n = u.size(u.dim() - 1);
  auto out = at::empty({N, n}, weights.options());
  if (N == 0 || n == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "sample_pdf_cuda", [&] {
    sample_pdf_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        N, S, n, u.dim() == 2 ? n : 0, bins.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
        u.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace jeancore
