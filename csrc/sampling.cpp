// CPU ray sampling and inverse transform sampling; the math is in sampling.h.
#include "sampling.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

namespace jeancore {

SampleOut sample_along_rays_cpu(const at::Tensor& rays_o, const at::Tensor& rays_d,
                                const at::Tensor& near, const at::Tensor& far, int64_t n_samples,
                                const std::optional<at::Tensor>& jitter) {
  check_sample_inputs(rays_o, rays_d, near, far, n_samples, jitter);
  const int64_t N = rays_o.size(0), S = n_samples;
  auto t = at::empty({N, S}, rays_o.options());
  auto points = at::empty({N, S, 3}, rays_o.options());
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "sample_along_rays_cpu", [&] {
    const scalar_t* o = rays_o.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* nr = near.data_ptr<scalar_t>();
    const scalar_t* fr = far.data_ptr<scalar_t>();
    const scalar_t* jt = jitter.has_value() ? jitter->data_ptr<scalar_t>() : nullptr;
    scalar_t* ot = t.data_ptr<scalar_t>();
    scalar_t* op = points.data_ptr<scalar_t>();
    parallel_chunks(N, chunk_for(N, S), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t i = 0; i < S; ++i) {
          const int64_t k = r * S + i;
          sample_point<scalar_t>(i, S, o + 3 * r, d + 3 * r, nr[r], fr[r], jt ? jt + k : nullptr,
                                 ot + k, op + 3 * k);
        }
      }
    });
  });
  return {t, points};
}

at::Tensor sample_pdf_cpu(const at::Tensor& bins, const at::Tensor& weights, const at::Tensor& u) {
  check_pdf_inputs(bins, weights, u);
  const int64_t N = weights.size(0), S = weights.size(1);
  const int64_t n = u.size(u.dim() - 1);
  const int64_t u_stride = u.dim() == 2 ? n : 0;
  auto out = at::empty({N, n}, weights.options());
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "sample_pdf_cpu", [&] {
    const scalar_t* b = bins.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    const scalar_t* uu = u.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    parallel_chunks(N, chunk_for(N, S + n), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        sample_pdf_ray<scalar_t>(S, n, b + r * (S + 1), w + r * S, uu + r * u_stride, o + r * n);
      }
    });
  });
  return out;
}

}  // namespace jeancore
