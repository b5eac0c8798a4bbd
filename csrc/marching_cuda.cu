// CUDA ray marching: one thread per ray, two passes (count, then fill at the offsets from a
// cumulative sum), the traversal shared with the CPU path (marching.h). The number of samples is
// read back to the host to allocate the outputs (one sync per call, as nerfacc).
#include "marching.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace jeancore {

namespace {
constexpr int kThreads = 128;
unsigned int blocks_for(int64_t N) { return static_cast<unsigned int>((N + kThreads - 1) / kThreads); }

// One thread per byte of the packed bits, then one per block (see MarchGrid).
__global__ void pack_bits_kernel(const bool* __restrict__ occ, int32_t R, int32_t Rb,
                                 uint8_t* bits) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<int64_t>(R) * R * Rb) return;
  bits[i] = packed_byte(occ, R, i / Rb, static_cast<int32_t>(i % Rb));
}

__global__ void pack_blocks_kernel(const uint8_t* __restrict__ bits, int32_t R, int32_t Rb,
                                   uint8_t* blocks) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= static_cast<int64_t>(Rb) * Rb * Rb) return;
  blocks[b] = block_from_bits(bits, R, Rb, static_cast<int32_t>(b / (Rb * Rb)),
                              static_cast<int32_t>(b / Rb % Rb), static_cast<int32_t>(b % Rb));
}

__global__ void pack_big_kernel(const uint8_t* __restrict__ blocks, int32_t Rb, int32_t Rg,
                                uint8_t* big) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= static_cast<int64_t>(Rg) * Rg * Rg) return;
  big[b] = big_from_blocks(blocks, Rb, static_cast<int32_t>(b / (Rg * Rg)),
                           static_cast<int32_t>(b / Rg % Rg), static_cast<int32_t>(b % Rg));
}

template <typename scalar_t>
__global__ void march_count_kernel(int64_t N, MarchGrid<scalar_t> g, const scalar_t* __restrict__ o,
                                   const scalar_t* __restrict__ d, const scalar_t* __restrict__ nr,
                                   const scalar_t* __restrict__ fr, const scalar_t* __restrict__ jt,
                                   scalar_t step, int64_t* counts) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= N) return;
  counts[r] = march_ray(g, o + 3 * r, d + 3 * r, nr[r], fr[r], jt ? jt[r] : scalar_t(0), step,
                        [](scalar_t, scalar_t) {});
}

template <typename scalar_t>
__global__ void march_fill_kernel(int64_t N, MarchGrid<scalar_t> g, const scalar_t* __restrict__ o,
                                  const scalar_t* __restrict__ d, const scalar_t* __restrict__ nr,
                                  const scalar_t* __restrict__ fr, const scalar_t* __restrict__ jt,
                                  scalar_t step, const int64_t* __restrict__ ends, int64_t* ri,
                                  scalar_t* ots, scalar_t* ote) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= N) return;
  int64_t i = r > 0 ? ends[r - 1] : 0;
  march_ray(g, o + 3 * r, d + 3 * r, nr[r], fr[r], jt ? jt[r] : scalar_t(0), step,
            [&](scalar_t ts, scalar_t te) {
              ri[i] = r;
              ots[i] = ts;
              ote[i] = te;
              ++i;
            });
}
}  // namespace

MarchOut march_rays_cuda(const at::Tensor& rays_o, const at::Tensor& rays_d,
                         const at::Tensor& near, const at::Tensor& far,
                         const at::Tensor& occupancy, at::ArrayRef<double> aabb,
                         double step_size, const std::optional<at::Tensor>& jitter) {
  const c10::cuda::CUDAGuard guard(rays_o.device());
  check_march_inputs(rays_o, rays_d, near, far, occupancy, aabb, step_size, jitter);
  const int64_t N = rays_o.size(0);
  const int32_t R = static_cast<int32_t>(occupancy.size(0));
  const int32_t Rb = (R + (1 << kBlockShift) - 1) >> kBlockShift;
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto bits = at::empty({static_cast<int64_t>(R) * R * Rb}, occupancy.options().dtype(at::kByte));
  auto blocks = at::empty({static_cast<int64_t>(Rb) * Rb * Rb}, occupancy.options().dtype(at::kByte));
  pack_bits_kernel<<<blocks_for(bits.numel()), kThreads, 0, stream>>>(
      occupancy.data_ptr<bool>(), R, Rb, bits.data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  pack_blocks_kernel<<<blocks_for(blocks.numel()), kThreads, 0, stream>>>(
      bits.data_ptr<uint8_t>(), R, Rb, blocks.data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int32_t Rg = (R + (1 << kBigShift) - 1) >> kBigShift;
  auto big = at::empty({static_cast<int64_t>(Rg) * Rg * Rg}, occupancy.options().dtype(at::kByte));
  pack_big_kernel<<<blocks_for(big.numel()), kThreads, 0, stream>>>(
      blocks.data_ptr<uint8_t>(), Rb, Rg, big.data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  MarchOut out;
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "march_rays_cuda", [&] {
    MarchGrid<scalar_t> g = march_grid<scalar_t>(aabb, R);
    g.bits = bits.data_ptr<uint8_t>();
    g.blocks = blocks.data_ptr<uint8_t>();
    g.big = big.data_ptr<uint8_t>();
    const scalar_t step = static_cast<scalar_t>(step_size);
    const scalar_t* jt = jitter.has_value() ? jitter->data_ptr<scalar_t>() : nullptr;
    auto counts = at::empty({N}, rays_o.options().dtype(at::kLong));
    if (N > 0) {
      march_count_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
          N, g, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), near.data_ptr<scalar_t>(),
          far.data_ptr<scalar_t>(), jt, step, counts.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const at::Tensor ends = at::cumsum(counts, 0);
    const int64_t M = N > 0 ? ends[N - 1].item<int64_t>() : 0;
    auto ray_indices = at::empty({M}, rays_o.options().dtype(at::kLong));
    auto t_starts = at::empty({M}, rays_o.options());
    auto t_ends = at::empty({M}, rays_o.options());
    if (M > 0) {
      march_fill_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
          N, g, rays_o.data_ptr<scalar_t>(), rays_d.data_ptr<scalar_t>(), near.data_ptr<scalar_t>(),
          far.data_ptr<scalar_t>(), jt, step, ends.data_ptr<int64_t>(),
          ray_indices.data_ptr<int64_t>(), t_starts.data_ptr<scalar_t>(),
          t_ends.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    out = MarchOut{ray_indices, t_starts, t_ends};
  });
  return out;
}

}  // namespace jeancore
