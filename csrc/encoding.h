// Multiresolution hash encoding (Instant-NGP, Müller et al. 2022, Sec. 3).
//
// Level l has R_l cells per side (R_l + 1 vertices) and owns the embedding rows
// offsets[l] .. offsets[l+1] - 1 (S_l rows of F features). For a point x in [0, 1]^D (D = 2, 3;
// clamped into it, so a point outside gets the value at the nearest border point):
//   p = x R_l,  c = min(floor(p), R_l - 1),  w = p - c   (multilinear weights of the 2^D corners)
// Corner vertex v (integer coordinates in 0 .. R_l) maps to a row of the level:
//   dense  ((R_l + 1)^D <= S_l): v_0 + (R_l + 1) (v_1 + (R_l + 1) v_2)  (row-major)
//   hashed (otherwise):          (v_0 * 1 xor v_1 * 2654435761 xor v_2 * 805459861) mod S_l,
//                                in uint32 arithmetic (tiny-cuda-nn's primes).
// out[n, l F + f] = sum over corners of weight * embeddings[offsets[l] + row, f].
// The backward scatters grad_out back to the rows (a sum over points and corners).
#pragma once

#include "common.h"

#include <ATen/ops/empty.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace jeancore {

enum HashLevelMode : uint32_t {
  kLevelDense = 0,    // row-major vertex index
  kLevelMask = 1,     // hashed, S_l a power of two <= 2^32: h & (S_l - 1)
  kLevelFastmod = 2,  // hashed, other S_l < 2^32: h mod S_l by Lemire's multiply-shift
  kLevelWide = 3,     // hashed, S_l >= 2^32: h itself (h < S_l)
};

// One level's constants, computed on the host once per call (hash_levels).
struct HashLevel {
  int64_t offset;    // first embedding row of the level
  uint64_t fastmod;  // Lemire's M = floor((2^64 - 1) / S_l) + 1 (kLevelFastmod)
  uint32_t res;      // R_l
  uint32_t mode;     // HashLevelMode
  uint32_t size32;   // S_l (when < 2^32)
  uint32_t mask;     // S_l - 1 (kLevelMask)
};

// a mod d for 32-bit a and d (Lemire, Kaser & Kurz 2019, "Faster remainder by direct
// computation"): exact for all a, d < 2^32 with M = floor((2^64 - 1) / d) + 1.
JC_HD uint32_t fastmod_u32(uint32_t a, uint64_t M, uint32_t d) {
  const uint64_t lowbits = M * a;
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__umul64hi(lowbits, d));
#else
  return static_cast<uint32_t>((static_cast<unsigned __int128>(lowbits) * d) >> 64);
#endif
}

// The level's row of vertex v. kMode >= 0 fixes the level's mode at compile time (the CPU loops
// are instantiated per mode); -1 reads it from L.
template <int D, int kMode = -1>
JC_HD int64_t hash_level_row(const HashLevel& L, const uint32_t* v) {
  const uint32_t mode = kMode >= 0 ? uint32_t(kMode) : L.mode;
  if (mode == kLevelDense) {
    const uint64_t side = uint64_t(L.res) + 1;
    uint64_t row = v[D - 1];
    for (int a = D - 2; a >= 0; --a) row = row * side + v[a];
    return static_cast<int64_t>(row);
  }
  uint32_t h = v[0] ^ (v[1] * 2654435761u);
  if (D == 3) h ^= v[D - 1] * 805459861u;
  if (mode == kLevelMask) return h & L.mask;
  if (mode == kLevelFastmod) return fastmod_u32(h, L.fastmod, L.size32);
  return h;
}

// Calls f(row, weight) for the 2^D corners of point x at level L (row: absolute embedding row).
// A NaN coordinate is treated as 0 (the entry points report NaN separately).
template <typename scalar_t, int D, int kMode = -1, typename F>
JC_HD void for_each_corner(const scalar_t* x, const HashLevel& L, F&& f) {
  uint32_t c[D];
  scalar_t w[D];
  const scalar_t R = static_cast<scalar_t>(L.res);
  for (int a = 0; a < D; ++a) {
    scalar_t xa = x[a];
    xa = xa == xa ? xa : scalar_t(0);
    xa = xa < scalar_t(0) ? scalar_t(0) : (xa > scalar_t(1) ? scalar_t(1) : xa);
    const scalar_t p = xa * R;
    uint32_t ci = static_cast<uint32_t>(p);  // p in [0, R]: truncation is floor
    ci = ci > L.res - 1 ? L.res - 1 : ci;
    c[a] = ci;
    w[a] = p - static_cast<scalar_t>(ci);
  }
JC_UNROLL
  for (int b = 0; b < (1 << D); ++b) {
    uint32_t v[D];
    scalar_t weight = 1;
JC_UNROLL
    for (int a = 0; a < D; ++a) {
      const bool up = (b >> a) & 1;
      v[a] = c[a] + (up ? 1u : 0u);
      weight *= up ? w[a] : scalar_t(1) - w[a];
    }
    f(L.offset + hash_level_row<D, kMode>(L, v), weight);
  }
}

// Forward of one point at one level: out[f] = sum_corners weight * emb[row, f].
template <typename scalar_t, int D, int F, int kMode = -1>
JC_HD void encode_point_level(const scalar_t* x, const HashLevel& L, const scalar_t* emb,
                              scalar_t* out) {
  scalar_t acc[F];
JC_UNROLL
  for (int f = 0; f < F; ++f) acc[f] = 0;
  for_each_corner<scalar_t, D, kMode>(x, L, [&](int64_t row, scalar_t weight) {
    const scalar_t* e = emb + row * F;
JC_UNROLL
    for (int f = 0; f < F; ++f) acc[f] += weight * e[f];
  });
JC_UNROLL
  for (int f = 0; f < F; ++f) out[f] = acc[f];
}

// Calls body.template operator()<D, F>() for the runtime (D, F); D in {2, 3}, F in {1, 2, 4, 8}
// (checked before).
template <typename Body>
void dispatch_dims(int64_t D, int64_t F, Body&& body) {
  auto by_f = [&](auto d) {
    switch (F) {
      case 1: body.template operator()<decltype(d)::value, 1>(); break;
      case 2: body.template operator()<decltype(d)::value, 2>(); break;
      case 4: body.template operator()<decltype(d)::value, 4>(); break;
      default: body.template operator()<decltype(d)::value, 8>(); break;
    }
  };
  if (D == 2) by_f(std::integral_constant<int, 2>{});
  else by_f(std::integral_constant<int, 3>{});
}

// ---- validation and level constants (host) ---------------------------------------------------
inline void check_encode_inputs(const at::Tensor& x, const at::Tensor& embeddings) {
  check_float(x, "x", 2, x);
  TORCH_CHECK_VALUE(x.size(1) == 2 || x.size(1) == 3, "x must be [N, D] with D = 2 or 3, got ",
                    shape_str(x));
  check_float(embeddings, "embeddings", 2, x);
  const int64_t F = embeddings.size(1);
  TORCH_CHECK_VALUE(F == 1 || F == 2 || F == 4 || F == 8,
                    "embeddings must be [P, F] with F (features per level) in {1, 2, 4, 8}, got ",
                    shape_str(embeddings));
}

// Checks offsets [L + 1] and resolutions [L] (int64, any device: they are read on the host)
// against embeddings [P, F] and returns the levels' constants.
inline std::vector<HashLevel> hash_levels(const at::Tensor& offsets, const at::Tensor& resolutions,
                                          int64_t D, int64_t P) {
  TORCH_CHECK_TYPE(offsets.scalar_type() == at::kLong, "offsets must be int64, got ",
                   offsets.scalar_type());
  TORCH_CHECK_TYPE(resolutions.scalar_type() == at::kLong, "resolutions must be int64, got ",
                   resolutions.scalar_type());
  TORCH_CHECK_VALUE(resolutions.dim() == 1 && resolutions.size(0) >= 1,
                    "resolutions must be [L] with L >= 1 levels, got ", shape_str(resolutions));
  const int64_t L = resolutions.size(0);
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.size(0) == L + 1,
                    "offsets must be [L + 1] = [", L + 1, "] for resolutions [", L, "], got ",
                    shape_str(offsets));
  const at::Tensor off = offsets.to(at::kCPU).contiguous();
  const at::Tensor res = resolutions.to(at::kCPU).contiguous();
  const int64_t* o = off.data_ptr<int64_t>();
  const int64_t* r = res.data_ptr<int64_t>();
  TORCH_CHECK_VALUE(o[0] == 0 && o[L] == P, "offsets must run from 0 to the number of embedding "
                    "rows P = ", P, ", got offsets[0] = ", o[0], " and offsets[", L, "] = ", o[L]);
  std::vector<HashLevel> levels(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    const int64_t S = o[l + 1] - o[l];
    TORCH_CHECK_VALUE(S >= 1, "offsets must be strictly increasing (every level owns at least one "
                      "row), got offsets[", l, "] = ", o[l], " and offsets[", l + 1, "] = ", o[l + 1]);
    TORCH_CHECK_VALUE(r[l] >= 1 && r[l] < (int64_t(1) << 31), "resolutions[", l,
                      "] must be in [1, 2^31), got ", r[l]);
    HashLevel& lv = levels[l];
    lv.offset = o[l];
    lv.res = static_cast<uint32_t>(r[l]);
    lv.fastmod = 0;
    lv.size32 = S < (int64_t(1) << 32) ? static_cast<uint32_t>(S) : 0;
    lv.mask = 0;
    // dense iff (R + 1)^D <= S (saturating product)
    const double vertices = std::pow(double(r[l]) + 1.0, double(D));
    if (vertices <= double(S)) {
      lv.mode = kLevelDense;
    } else if (S >= (int64_t(1) << 32)) {
      lv.mode = kLevelWide;
    } else if ((S & (S - 1)) == 0) {
      lv.mode = kLevelMask;
      lv.mask = static_cast<uint32_t>(S - 1);
    } else {
      lv.mode = kLevelFastmod;
      lv.fastmod = UINT64_C(0xFFFFFFFFFFFFFFFF) / uint64_t(S) + 1;
    }
  }
  return levels;
}

at::Tensor hash_encode_cpu(const at::Tensor& x, const at::Tensor& embeddings,
                           const at::Tensor& offsets, const at::Tensor& resolutions);
at::Tensor hash_encode_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                    const at::Tensor& embeddings, const at::Tensor& offsets,
                                    const at::Tensor& resolutions);
#ifdef JEANCORE_WITH_CUDA
at::Tensor hash_encode_cuda(const at::Tensor& x, const at::Tensor& embeddings,
                            const at::Tensor& offsets, const at::Tensor& resolutions);
at::Tensor hash_encode_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                     const at::Tensor& embeddings, const at::Tensor& offsets,
                                     const at::Tensor& resolutions);
#endif

// Validates the backward's grad_out [N, L F] against x and the embeddings.
inline void check_encode_grad(const at::Tensor& grad_out, const at::Tensor& x, int64_t L,
                              int64_t F) {
  check_float(grad_out, "grad_out", 2, x);
  check_sizes(grad_out, "grad_out", {x.size(0), L * F}, "[N, L * F]");
}

}  // namespace jeancore
