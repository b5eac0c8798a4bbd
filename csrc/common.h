// Shared helpers for jeancore's CPU and CUDA kernels: input validation with clear Python
// exceptions (TypeError / ValueError) and a host/device qualifier for per-ray math that is
// written once and used by both the CPU loops and the CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>

#if defined(__CUDACC__)
#define JC_HD __host__ __device__ __forceinline__
#else
#define JC_HD inline
#endif

namespace jeancore {

// Largest delta used for the last sample of a ray (NeRF / AD-NeRF: 1e10).
constexpr double kLastDelta = 1e10;

// Rays per at::parallel_for task for per-ray work of `work_per_ray` samples: about 4096
// samples per task, enough to amortise scheduling.
inline int64_t rays_per_task(int64_t work_per_ray) {
  return std::max<int64_t>(1, 4096 / std::max<int64_t>(work_per_ray, 1));
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

}  // namespace jeancore
