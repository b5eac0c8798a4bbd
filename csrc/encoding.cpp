// CPU hash encoding; the per-point math is in encoding.h.
//  * Forward: level by level over all points (tasks of one level and a chunk of points, claimed
//    in level-major order), so the threads read one level's table at a time and it stays in
//    cache; a point-major order (all levels of a chunk of points) missed the cache on most
//    corners and was about 2x slower at 2^18 points.
//  * Backward: one task per level (parallel_chunks over levels). A level's gradient rows belong
//    to that level only, so the scatter-add needs no atomics or private copies, and each level
//    adds its points' contributions in point order: the result does not depend on the number
//    of threads or on which thread ran which level (deterministic).
#include "encoding.h"

#include <ATen/Dispatch.h>

#include <atomic>
#include <limits>

namespace jeancore {

namespace {
// Calls body.template operator()<kMode>() for a level's mode.
template <typename Body>
void dispatch_mode(uint32_t mode, Body&& body) {
  switch (mode) {
    case kLevelDense: body.template operator()<kLevelDense>(); break;
    case kLevelMask: body.template operator()<kLevelMask>(); break;
    case kLevelFastmod: body.template operator()<kLevelFastmod>(); break;
    default: body.template operator()<kLevelWide>(); break;
  }
}

template <typename scalar_t>
void raise_if_nan(const at::Tensor& x) {
  const int64_t N = x.size(0), D = x.size(1);
  const scalar_t* xp = x.data_ptr<scalar_t>();
  std::atomic<int64_t> first{std::numeric_limits<int64_t>::max()};
  parallel_chunks(N * D, chunk_for(N * D, 1), [&](int64_t begin, int64_t end) {
    bool any = false;
    for (int64_t i = begin; i < end; ++i) any |= xp[i] != xp[i];
    if (!any) return;
    for (int64_t i = begin; i < end; ++i) {
      if (xp[i] != xp[i]) {
        int64_t row = i / D, seen = first.load();
        while (row < seen && !first.compare_exchange_weak(seen, row)) {}
        return;
      }
    }
  });
  const int64_t row = first.load();
  TORCH_CHECK_VALUE(row == std::numeric_limits<int64_t>::max(), "x contains NaN (first in row ",
                    row, "); hash_encode needs coordinates in [0, 1]");
}
}  // namespace

at::Tensor hash_encode_cpu(const at::Tensor& x, const at::Tensor& embeddings,
                           const at::Tensor& offsets, const at::Tensor& resolutions) {
  check_encode_inputs(x, embeddings);
  const int64_t N = x.size(0), D = x.size(1), F = embeddings.size(1);
  const std::vector<HashLevel> levels = hash_levels(offsets, resolutions, D, embeddings.size(0));
  const int64_t L = static_cast<int64_t>(levels.size());
  auto out = at::empty({N, L * F}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_cpu", [&] {
    raise_if_nan<scalar_t>(x);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* emb = embeddings.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    dispatch_dims(D, F, [&]<int kD, int kF>() {
      const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(4096, chunk_for(N, 1 << kD)));
      const int64_t n_chunks = (N + chunk - 1) / chunk;
      parallel_chunks(L * n_chunks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t l = t / n_chunks, n0 = (t % n_chunks) * chunk;
          const int64_t n1 = std::min(N, n0 + chunk);
          const HashLevel lv = levels[l];
          dispatch_mode(lv.mode, [&]<int kMode>() {
            for (int64_t n = n0; n < n1; ++n) {
              encode_point_level<scalar_t, kD, kF, kMode>(xp + n * kD, lv, emb,
                                                          op + n * L * kF + l * kF);
            }
          });
        }
      });
    });
  });
  return out;
}

at::Tensor hash_encode_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                    const at::Tensor& embeddings, const at::Tensor& offsets,
                                    const at::Tensor& resolutions) {
  check_encode_inputs(x, embeddings);
  const int64_t N = x.size(0), D = x.size(1), P = embeddings.size(0), F = embeddings.size(1);
  const std::vector<HashLevel> levels = hash_levels(offsets, resolutions, D, P);
  const int64_t L = static_cast<int64_t>(levels.size());
  check_encode_grad(grad_out, x, L, F);
  auto grad = at::empty({P, F}, embeddings.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hash_encode_backward_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    scalar_t* gp = grad.data_ptr<scalar_t>();
    dispatch_dims(D, F, [&]<int kD, int kF>() {
      parallel_chunks(L, 1, [&](int64_t l0, int64_t l1) {
        for (int64_t l = l0; l < l1; ++l) {
          const HashLevel lv = levels[l];
          const int64_t end = l + 1 < L ? levels[l + 1].offset : P;
          std::fill(gp + lv.offset * kF, gp + end * kF, scalar_t(0));
          dispatch_mode(lv.mode, [&]<int kMode>() {
            for (int64_t n = 0; n < N; ++n) {
              scalar_t g[kF];  // a local copy: the stores below could alias grad_out
              JC_UNROLL
              for (int f = 0; f < kF; ++f) g[f] = go[n * L * kF + l * kF + f];
              for_each_corner<scalar_t, kD, kMode>(xp + n * kD, lv, [&](int64_t row, scalar_t w) {
                scalar_t* dst = gp + row * kF;
                JC_UNROLL
                for (int f = 0; f < kF; ++f) dst[f] += w * g[f];
              });
            }
          });
        }
      });
    });
  });
  return grad;
}

}  // namespace jeancore
