// Shared helpers for jeancore's CPU and CUDA kernels: input validation with clear Python
// exceptions (TypeError / ValueError) and a host/device qualifier for per-ray math that is
// written once and used by both the CPU loops and the CUDA kernels.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/FunctionRef.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>

#if defined(__CUDACC__)
#define JC_HD __host__ __device__ __forceinline__
#define JC_UNROLL _Pragma("unroll")
#else
#define JC_HD inline
#define JC_UNROLL _Pragma("GCC unroll 8")
#endif

namespace jeancore {

// Largest delta used for the last sample of a ray (NeRF / AD-NeRF: 1e10).
constexpr double kLastDelta = 1e10;

// Runs chunk(c) for c = 0 .. n_chunks - 1 on the calling thread and threads - 1 helpers from
// torch's inter-op pool (csrc/parallel.cpp); returns when every chunk is done.
void run_chunks(int64_t n_chunks, int64_t threads, c10::function_ref<void(int64_t)> chunk);
// Whether the calling thread is running chunks of run_chunks (nested calls then run inline).
bool in_chunks();
// At most `threads`, fewer when other tasks are running on the machine right now: threads
// minus the tasks runnable besides the caller (Linux /proc/loadavg, read at most every 20 ms),
// at least 1; `threads` where that count is unavailable or JEANCORE_LOAD_AWARE=0.
int64_t threads_for_load(int64_t threads);

// Runs f(begin, end) over consecutive chunks of [0, n) of `chunk` items each (the last one
// shorter), on at::get_num_threads() threads (torch.set_num_threads applies). Built for machines
// where other processes keep cores busy:
//  * the chunks are claimed one at a time from a shared counter, so a thread that runs on a busy
//    core claims fewer and the others take the rest (no fixed share per thread);
//  * the helpers come from torch's inter-op pool and the caller works too, and the call returns
//    when the chunks are done, without waiting for a helper that has not started: a helper the
//    scheduler wakes late finds no work left. (at::parallel_for's OpenMP region ends with a
//    barrier that waits for every thread of the team; with the other core busy that wait was
//    one or more scheduler time slices per call: composite forward 8192 x 128 took 28 ms with
//    2 threads against 3.5 ms with one; see docs/benchmarks.md);
//  * waiting threads sleep (std::atomic wait, a futex) instead of spinning;
//  * when other tasks keep cores busy at the moment of the call, fewer helpers are started
//    (threads_for_load): a helper on a busy core holds its chunk for a scheduler time slice,
//    which a millisecond kernel cannot hide. The chunks stay the same, so results do not change.
// One thread, one chunk, or a call from inside a parallel region runs the chunks in order on
// the calling thread. Each f call must only write what its own items own: the chunk -> thread
// assignment varies from call to call.
template <typename F>
inline void parallel_chunks(int64_t n, int64_t chunk, const F& f) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), n_chunks);
  auto run = [&](int64_t c) { f(c * chunk, std::min(n, (c + 1) * chunk)); };
  const int64_t use = (threads <= 1 || in_chunks() || at::in_parallel_region())
                          ? 1
                          : threads_for_load(threads);
  if (use <= 1) {
    for (int64_t c = 0; c < n_chunks; ++c) run(c);
    return;
  }
  run_chunks(n_chunks, use, run);
}

// Items per chunk of parallel_chunks for `n` items of `work_per_item` elementary steps (a
// sample, a cell) each: about 4096 steps per chunk (a few microseconds), fewer when that
// leaves less than 8 chunks per thread (so the dynamic claiming can balance the load), but
// never under 2048 steps (a call with less work than that runs on the calling thread).
inline int64_t chunk_for(int64_t n, int64_t work_per_item) {
  const int64_t w = std::max<int64_t>(work_per_item, 1);
  const int64_t by_work = std::max<int64_t>(1, 4096 / w);
  const int64_t by_count = n / (8 * std::max<int64_t>(at::get_num_threads(), 1));
  const int64_t floor_items = (2048 + w - 1) / w;
  return std::max(floor_items, std::min(by_work, by_count));
}

inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(t.size(i));
  }
  return s + "]";
}

// A floating tensor (float32 or float64) with the given number of dimensions, contiguous,
// on `device` and of `dtype` (when given).
inline void check_float(const at::Tensor& t, const char* name, int64_t dim,
                        const at::Tensor& like) {
  TORCH_CHECK_VALUE(t.defined(), name, " must be a tensor, got None");
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                   " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK_TYPE(t.scalar_type() == like.scalar_type(), name, " has dtype ", t.scalar_type(),
                   " but the other inputs have ", like.scalar_type(),
                   "; convert all inputs to one dtype");
  TORCH_CHECK_VALUE(t.device() == like.device(), name, " is on ", t.device(),
                    " but the other inputs are on ", like.device(),
                    "; move all inputs to one device");
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must have ", dim, " dimensions, got shape ",
                    shape_str(t));
  TORCH_CHECK_VALUE(t.is_contiguous(), name,
                    " must be contiguous (call .contiguous(); the Python wrappers in "
                    "jeancore.ops do this for you)");
}

// Checks that t.size(i) == sizes[i] for every entry that is >= 0.
inline void check_sizes(const at::Tensor& t, const char* name,
                        std::initializer_list<int64_t> sizes, const char* expected) {
  int64_t i = 0;
  for (int64_t s : sizes) {
    TORCH_CHECK_VALUE(s < 0 || t.size(i) == s, name, " must have shape ", expected,
                      ", got ", shape_str(t));
    ++i;
  }
}

inline void check_index(const at::Tensor& t, const char* name, int64_t n, const at::Tensor& like) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == like.device(), name, " is on ", t.device(),
                    " but the other inputs are on ", like.device());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n && t.is_contiguous(), name,
                    " must be a contiguous 1-D tensor of length ", n, ", got ", shape_str(t));
}

// Rays: rays_o, rays_d [N, 3] and near, far [N] of one float dtype and device; returns N.
inline int64_t check_rays(const at::Tensor& rays_o, const at::Tensor& rays_d,
                          const at::Tensor& near, const at::Tensor& far) {
  check_float(rays_o, "rays_o", 2, rays_o);
  const int64_t N = rays_o.size(0);
  check_sizes(rays_o, "rays_o", {N, 3}, "[N, 3]");
  check_float(rays_d, "rays_d", 2, rays_o);
  check_sizes(rays_d, "rays_d", {N, 3}, "[N, 3] matching rays_o");
  check_float(near, "near", 1, rays_o);
  check_sizes(near, "near", {N}, "[N] matching rays_o [N, 3]");
  check_float(far, "far", 1, rays_o);
  check_sizes(far, "far", {N}, "[N] matching rays_o [N, 3]");
  return N;
}

}  // namespace jeancore
