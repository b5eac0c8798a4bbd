// CUDA hash encoding: one thread per (point, level) (blockIdx.y = level, as tiny-cuda-nn), the
// per-point math shared with the CPU path (encoding.h). The backward scatters with atomic adds
// (not deterministic in the order of float additions, unlike the CPU path).
#include "encoding.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/any.h>
#include <ATen/ops/isnan.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>

namespace jeancore {

namespace {
constexpr int kThreads = 128;

// The levels' constants as a device buffer (a byte tensor holding HashLevel structs).
at::Tensor levels_on_device(const std::vector<HashLevel>& levels, const at::Tensor& like) {
  auto host = at::empty({static_cast<int64_t>(levels.size() * sizeof(HashLevel))},
                        at::TensorOptions().dtype(at::kByte));
  std::memcpy(host.data_ptr<uint8_t>(), levels.data(), levels.size() * sizeof(HashLevel));
  return host.to(like.device());
}

template <typename scalar_t, int D, int F>
__global__ void hash_encode_kernel(int64_t N, int64_t L, const scalar_t* __restrict__ x,
                                   const HashLevel* __restrict__ levels,
                                   const scalar_t* __restrict__ emb, scalar_t* out) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t l = blockIdx.y;
  if (n >= N) return;
  const HashLevel lv = levels[l];
  encode_point_level<scalar_t, D, F>(x + n * D, lv, emb, out + n * L * F + l * F);
}

template <typename scalar_t, int D, int F>
__global__ void hash_encode_backward_kernel(int64_t N, int64_t L, const scalar_t* __restrict__ x,
                                            const HashLevel* __restrict__ levels,
                                            const scalar_t* __restrict__ grad_out,
                                            scalar_t* grad) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t l = blockIdx.y;
  if (n >= N) return;
  const HashLevel lv = levels[l];
  scalar_t g[F];
  for (int f = 0; f < F; ++f) g[f] = grad_out[n * L * F + l * F + f];
  for_each_corner<scalar_t, D>(x + n * D, lv, [&](int64_t row, scalar_t w) {
    for (int f = 0; f < F; ++f) atomicAdd(grad + row * F + f, w * g[f]);
  });
}

dim3 grid_for(int64_t N, int64_t L) {
  return dim3(static_cast<unsigned int>((N + kThreads - 1) / kThreads),
              static_cast<unsigned int>(L));
}
}  // namespace

at::Tensor hash_encode_cuda(const at::Tensor& x, const at::Tensor& embeddings,
                            const at::Tensor& offsets, const at::Tensor& resolutions) {
  const c10::cuda::CUDAGuard guard(x.device());
  check_encode_inputs(x, embeddings);
  const int64_t N = x.size(0), D = x.size(1), F = embeddings.size(1);
  const std::vector<HashLevel> levels = hash_levels(offsets, resolutions, D, embeddings.size(0));
  const int64_t L = static_cast<int64_t>(levels.size());
  TORCH_CHECK_VALUE(L <= 65535, "at most 65535 levels on the GPU, got ", L);
  auto out = at::empty({N, L * F}, x.options());
  if (N == 0) return out;
  TORCH_CHECK_VALUE(!at::isnan(x).any().item<bool>(),
                    "x contains NaN; hash_encode needs coordinates in [0, 1]");
  const at::Tensor dev_levels = levels_on_device(levels, x);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_cuda", [&] {
    dispatch_dims(D, F, [&]<int kD, int kF>() {
      hash_encode_kernel<scalar_t, kD, kF><<<grid_for(N, L), kThreads, 0, stream>>>(
          N, L, x.data_ptr<scalar_t>(),
          reinterpret_cast<const HashLevel*>(dev_levels.data_ptr<uint8_t>()),
          embeddings.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor hash_encode_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                     const at::Tensor& embeddings, const at::Tensor& offsets,
                                     const at::Tensor& resolutions) {
  const c10::cuda::CUDAGuard guard(x.device());
  check_encode_inputs(x, embeddings);
  const int64_t N = x.size(0), D = x.size(1), F = embeddings.size(1);
  const std::vector<HashLevel> levels = hash_levels(offsets, resolutions, D, embeddings.size(0));
  const int64_t L = static_cast<int64_t>(levels.size());
  check_encode_grad(grad_out, x, L, F);
  auto grad = at::zeros_like(embeddings);
  if (N == 0) return grad;
  const at::Tensor dev_levels = levels_on_device(levels, x);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_backward_cuda", [&] {
    dispatch_dims(D, F, [&]<int kD, int kF>() {
      hash_encode_backward_kernel<scalar_t, kD, kF><<<grid_for(N, L), kThreads, 0, stream>>>(
          N, L, x.data_ptr<scalar_t>(),
          reinterpret_cast<const HashLevel*>(dev_levels.data_ptr<uint8_t>()),
          grad_out.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad;
}

}  // namespace jeancore
