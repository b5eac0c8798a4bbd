// Ray marching through an occupancy grid with empty-space skipping (Instant-NGP Sec. 4;
// nerfacc's OccGridEstimator / RAD-NeRF), exact with respect to the brute-force definition.
//
// Definition, per ray (origin o, direction d, near, far, jitter j in [0, 1), step s):
//   t_start_k = near + (k + j) s,  t_end_k = t_start_k + s,  k = 0, 1, ... while t_end_k <= far;
//   candidate k is kept iff its midpoint o + d (t_start_k + t_end_k) / 2 lies in the aabb
//   (lo_a <= p_a <= hi_a on every axis) and its cell is occupied; cell index
//   c_a = min(floor((p_a - lo_a) * (R / (hi_a - lo_a))), R - 1), occupancy[c_x, c_y, c_z].
// Every quantity is computed in the inputs' dtype in exactly this order of operations (with
// correctly rounded operations on the GPU too), so the kernel's samples are those of the
// definition bit for bit (jeancore.ops.reference.march_rays_reference).
//
// Skipping, and why it is exact: with round-to-nearest arithmetic the midpoint, each coordinate
// of the point and each cell coordinate are monotone in k. So the candidates whose midpoint is
// in the aabb form one interval of k, and if two candidates k < k' lie in the same cell (or in
// the same 8^3 or 32^3 block of cells) every candidate between them does too. The marcher
//   1. bounds the interval by a slab test against the aabb enlarged by a margin that exceeds
//      the rounding error of the midpoint (in double), plus a margin in k;
//   2. tests candidates exactly; at a candidate in an empty cell it takes the largest empty
//      region around it (the cell, its 8^3 block or its 32^3 block: a two-level coarse grid,
//      built per call), estimates from where the ray leaves that region the last candidate k'
//      still inside it, tests k' exactly and skips to k' + 1 if k' is in the same region
//      (halving the jump otherwise). An estimate that falls short costs one more test.
#pragma once

#include "common.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

namespace jeancore {

constexpr int kBlockShift = 3;  // level-1 blocks of 8^3 cells
constexpr int kBigShift = 5;    // level-2 blocks of 32^3 cells (4^3 level-1 blocks)

// Correctly rounded arithmetic on both sides: nvcc would otherwise contract a * b + c into an
// FMA, and the kernel's samples would then differ from the definition near cell borders. (The
// CPU build passes -ffp-contract=off.)
#if defined(__CUDA_ARCH__)
JC_HD float add_rn(float a, float b) { return __fadd_rn(a, b); }
JC_HD float sub_rn(float a, float b) { return __fsub_rn(a, b); }
JC_HD float mul_rn(float a, float b) { return __fmul_rn(a, b); }
JC_HD double add_rn(double a, double b) { return __dadd_rn(a, b); }
JC_HD double sub_rn(double a, double b) { return __dsub_rn(a, b); }
JC_HD double mul_rn(double a, double b) { return __dmul_rn(a, b); }
#else
template <typename T> JC_HD T add_rn(T a, T b) { return a + b; }
template <typename T> JC_HD T sub_rn(T a, T b) { return a - b; }
template <typename T> JC_HD T mul_rn(T a, T b) { return a * b; }
#endif

// The grid of one call, packed once per call from the bool occupancy [R, R, R] (x-major):
//   bits:   one bit per cell, bit (c_z & 7) of byte (c_x R + c_y) Rb + (c_z >> 3)  (R^3 / 8 bytes:
//           a 128^3 grid is 256 KB and stays in the L2 cache, the bool grid's 2 MB did not);
//   blocks: one byte per 8^3 block, Rb = ceil(R / 8) per side, nonzero if a cell is occupied;
//   big:    one byte per 32^3 block, Rg = ceil(R / 32) per side, nonzero if a block is;
// and the aabb in the inputs' dtype.
template <typename scalar_t>
struct MarchGrid {
  const uint8_t* bits;
  const uint8_t* blocks;
  const uint8_t* big;
  int32_t R, Rb, Rg;
  scalar_t lo[3], hi[3], scale[3];  // scale_a = R / (hi_a - lo_a)
  double width[3];                  // cell size (hi_a - lo_a) / R, for the jump estimates
};

// Candidate k of a ray: t_start, t_end and the midpoint's position.
template <typename scalar_t>
struct Candidate {
  scalar_t ts, te;
  scalar_t p[3];
};

template <typename scalar_t>
JC_HD Candidate<scalar_t> candidate(int64_t k, const scalar_t* o, const scalar_t* d,
                                    scalar_t near, scalar_t jit, scalar_t step) {
  Candidate<scalar_t> c;
  c.ts = add_rn(near, mul_rn(add_rn(static_cast<scalar_t>(k), jit), step));
  c.te = add_rn(c.ts, step);
  const scalar_t mid = mul_rn(add_rn(c.ts, c.te), scalar_t(0.5));
  for (int a = 0; a < 3; ++a) c.p[a] = add_rn(o[a], mul_rn(d[a], mid));
  return c;
}

// Inside the aabb: writes the cell coordinates and returns true.
template <typename scalar_t>
JC_HD bool cell_of(const MarchGrid<scalar_t>& g, const scalar_t* p, int32_t* cell) {
  for (int a = 0; a < 3; ++a) {
    if (!(g.lo[a] <= p[a] && p[a] <= g.hi[a])) return false;  // NaN: outside
  }
  for (int a = 0; a < 3; ++a) {
    const scalar_t u = mul_rn(sub_rn(p[a], g.lo[a]), g.scale[a]);  // >= 0: truncation is floor
    cell[a] = u < scalar_t(g.R - 1) ? static_cast<int32_t>(u) : g.R - 1;
  }
  return true;
}

JC_HD int32_t min_i32(int32_t a, int32_t b) { return a < b ? a : b; }

// Bit i of the result = byte i of the 8 bools in v (each 0 or 1): the multiplier places byte i's
// bit at position 56 + i, with no two partial products overlapping (so no carries).
JC_HD uint8_t pack_bools(uint64_t v) {
  return static_cast<uint8_t>((v * UINT64_C(0x0102040810204080)) >> 56);
}

// Packs bools z = 8 zb .. 8 zb + 7 of line (x, y) of the grid (fewer at the end of a line).
JC_HD uint8_t packed_byte(const bool* occ, int32_t R, int64_t line, int32_t zb) {
  uint64_t v = 0;
  const int32_t z0 = zb << kBlockShift;
  const int32_t n = R - z0 < 8 ? R - z0 : 8;
  for (int32_t i = 0; i < n; ++i) v |= uint64_t(occ[line * R + z0 + i] != 0) << (8 * i);
  return pack_bools(v);
}

// Whether block (bx, by, bz) has an occupied cell, from the packed bits (a block is one byte wide
// in z).
JC_HD uint8_t block_from_bits(const uint8_t* bits, int32_t R, int32_t Rb, int32_t bx, int32_t by,
                              int32_t bz) {
  const int32_t x1 = min_i32((bx + 1) << kBlockShift, R), y1 = min_i32((by + 1) << kBlockShift, R);
  uint8_t any = 0;
  for (int32_t x = bx << kBlockShift; x < x1; ++x)
    for (int32_t y = by << kBlockShift; y < y1; ++y) any |= bits[(int64_t(x) * R + y) * Rb + bz];
  return any != 0;
}

// Whether big block (gx, gy, gz) has an occupied level-1 block.
JC_HD uint8_t big_from_blocks(const uint8_t* blocks, int32_t Rb, int32_t gx, int32_t gy,
                              int32_t gz) {
  constexpr int f = kBigShift - kBlockShift;
  const int32_t x1 = min_i32((gx + 1) << f, Rb), y1 = min_i32((gy + 1) << f, Rb),
                z1 = min_i32((gz + 1) << f, Rb);
  uint8_t any = 0;
  for (int32_t x = gx << f; x < x1; ++x)
    for (int32_t y = gy << f; y < y1; ++y)
      for (int32_t z = gz << f; z < z1; ++z) any |= blocks[(int64_t(x) * Rb + y) * Rb + z];
  return any != 0;
}

template <typename scalar_t>
JC_HD bool cell_occupied(const MarchGrid<scalar_t>& g, const int32_t* c) {
  return (g.bits[(int64_t(c[0]) * g.R + c[1]) * g.Rb + (c[2] >> kBlockShift)] >> (c[2] & 7)) & 1;
}

// floor for doubles of magnitude < 2^62 without a libm call (the CPU build targets baseline
// x86-64, where floor() is a function call).
JC_HD double floor_fast(double x) {
  const double t = static_cast<double>(static_cast<int64_t>(x));
  return t > x ? t - 1.0 : t;
}

// Marches one ray; calls emit(t_start, t_end) for each kept candidate in order and returns
// their number.
template <typename scalar_t, typename Emit>
JC_HD int64_t march_ray(const MarchGrid<scalar_t>& g, const scalar_t* o, const scalar_t* d,
                        scalar_t near, scalar_t far, scalar_t jit, scalar_t step, Emit&& emit) {
  // 1. Range of k whose midpoint can be in the aabb (double, conservative).
  const double eps = std::numeric_limits<scalar_t>::epsilon();
  const double dn = double(near), df = double(far), ds = double(step), dj = double(jit);
  if (!(df >= dn) || !(dj == dj) || !(ds > 0.0)) return 0;  // empty range, or NaN
  double inv_d[3];
  double tmin = -DBL_MAX, tmax = DBL_MAX;
  for (int a = 0; a < 3; ++a) {
    const double oa = double(o[a]), da = double(d[a]);
    const double reach = fabs(oa) + fabs(da) * (fabs(dn) + fabs(df) + ds) +
                         fabs(double(g.lo[a])) + fabs(double(g.hi[a]));
    const double margin = 16.0 * eps * reach + DBL_MIN;
    const double lo = double(g.lo[a]) - margin, hi = double(g.hi[a]) + margin;
    inv_d[a] = da != 0.0 ? 1.0 / da : 0.0;
    if (da == 0.0) {
      if (!(oa >= lo && oa <= hi)) return 0;  // parallel to the slab, outside it (or NaN)
      continue;
    }
    double t0 = (lo - oa) * inv_d[a], t1 = (hi - oa) * inv_d[a];
    if (t0 > t1) {
      const double tt = t0;
      t0 = t1;
      t1 = tt;
    }
    tmin = t0 > tmin ? t0 : tmin;
    tmax = t1 < tmax ? t1 : tmax;
  }
  if (!(tmin <= tmax)) return 0;  // misses the aabb (or NaN)
  tmax = tmax < df ? tmax : df;
  // candidate k's midpoint is about near + (k + j + 0.5) s; km covers the rounding of t in k
  const double inv_step = 1.0 / ds;
  const double km = 2.0 + ceil(16.0 * eps * (fabs(dn) + fabs(df) + ds) * inv_step);
  const double kcap = 4.0e18;
  double klo = (tmin - dn) * inv_step - dj - 0.5;
  double khi = (tmax - dn) * inv_step - dj - 0.5;
  if (!(klo == klo) || !(khi == khi)) return 0;
  klo = klo < -1.0 ? -1.0 : (klo > kcap ? kcap : klo);
  khi = khi < -1.0 ? -1.0 : (khi > kcap ? kcap : khi);
  klo = floor_fast(klo) - km;
  khi = floor_fast(khi) + km;
  klo = klo < 0.0 ? 0.0 : klo;
  if (khi < klo) return 0;
  const int64_t k_hi = static_cast<int64_t>(khi);

  // 2. Exact tests, skipping empty cells and blocks.
  int64_t count = 0;
  bool entered = false;
  int32_t cell[3];
  for (int64_t k = static_cast<int64_t>(klo); k <= k_hi;) {
    const Candidate<scalar_t> c = candidate(k, o, d, near, jit, step);
    if (!(c.te <= far)) break;  // t_end grows with k
    if (!cell_of(g, c.p, cell)) {
      if (entered) break;  // left the aabb: the inside candidates are one interval
      ++k;
      continue;
    }
    entered = true;
    // The largest empty region around the cell: a 32^3 block, an 8^3 block or the cell.
    int shift;
    if (!g.big[(int64_t(cell[0] >> kBigShift) * g.Rg + (cell[1] >> kBigShift)) * g.Rg +
               (cell[2] >> kBigShift)]) {
      shift = kBigShift;
    } else if (!g.blocks[(int64_t(cell[0] >> kBlockShift) * g.Rb + (cell[1] >> kBlockShift)) *
                             g.Rb + (cell[2] >> kBlockShift)]) {
      shift = kBlockShift;
    } else if (cell_occupied(g, cell)) {
      emit(c.ts, c.te);
      ++count;
      ++k;
      continue;
    } else {
      shift = 0;
    }
    // Empty: jump to the last candidate estimated to be in the same region.
    double t_exit = DBL_MAX;
    for (int a = 0; a < 3; ++a) {
      if (inv_d[a] == 0.0) continue;
      const int32_t b = cell[a] >> shift;  // the region's boundary the ray crosses on axis a
      const int32_t edge = inv_d[a] > 0.0 ? min_i32((b + 1) << shift, g.R) : b << shift;
      const double ta = (double(g.lo[a]) + double(edge) * g.width[a] - double(o[a])) * inv_d[a];
      t_exit = ta < t_exit ? ta : t_exit;
    }
    double kj = (t_exit - dn) * inv_step - dj - 0.5;
    kj = kj > double(k_hi) ? double(k_hi) : kj;  // also catches +inf
    // one candidate short of the estimate, so rounding in t_exit rarely overshoots
    int64_t k_jump = kj > double(k) + 1.0 ? static_cast<int64_t>(floor_fast(kj)) - 1 : k;
    while (k_jump > k) {  // verify: k_jump in the same empty region as k
      const Candidate<scalar_t> cj = candidate(k_jump, o, d, near, jit, step);
      int32_t cell_j[3];
      bool same = cj.te <= far && cell_of(g, cj.p, cell_j);
      for (int a = 0; a < 3 && same; ++a) same = (cell_j[a] >> shift) == (cell[a] >> shift);
      if (same) break;
      k_jump = k + (k_jump - k) / 2;
    }
    k = k_jump + 1;
  }
  return count;
}

// ---- validation (host) -----------------------------------------------------------------------
template <typename scalar_t>
MarchGrid<scalar_t> march_grid(const at::ArrayRef<double>& aabb, int32_t R) {
  MarchGrid<scalar_t> g{};
  g.R = R;
  g.Rb = (R + (1 << kBlockShift) - 1) >> kBlockShift;
  g.Rg = (R + (1 << kBigShift) - 1) >> kBigShift;
  for (int a = 0; a < 3; ++a) {
    g.lo[a] = static_cast<scalar_t>(aabb[a]);
    g.hi[a] = static_cast<scalar_t>(aabb[a + 3]);
    g.scale[a] = static_cast<scalar_t>(R) / (g.hi[a] - g.lo[a]);
    g.width[a] = (double(g.hi[a]) - double(g.lo[a])) / double(R);
  }
  return g;
}

inline void check_march_inputs(const at::Tensor& rays_o, const at::Tensor& rays_d,
                               const at::Tensor& near, const at::Tensor& far,
                               const at::Tensor& occupancy, at::ArrayRef<double> aabb,
                               double step_size, const std::optional<at::Tensor>& jitter) {
  const int64_t N = check_rays(rays_o, rays_d, near, far);
  if (jitter.has_value()) {
    check_float(*jitter, "jitter", 1, rays_o);
    check_sizes(*jitter, "jitter", {N}, "[N] (one offset in [0, 1) per ray)");
  }
  TORCH_CHECK_TYPE(occupancy.scalar_type() == at::kBool, "occupancy must be a bool tensor, got ",
                   occupancy.scalar_type());
  TORCH_CHECK_VALUE(occupancy.device() == rays_o.device(), "occupancy is on ", occupancy.device(),
                    " but the rays are on ", rays_o.device());
  TORCH_CHECK_VALUE(occupancy.dim() == 3 && occupancy.size(0) >= 1 &&
                        occupancy.size(0) == occupancy.size(1) &&
                        occupancy.size(0) == occupancy.size(2),
                    "occupancy must be a cubic grid [R, R, R] with R >= 1, got ",
                    shape_str(occupancy));
  TORCH_CHECK_VALUE(occupancy.size(0) <= 4096, "occupancy resolution R must be <= 4096, got ",
                    occupancy.size(0));
  TORCH_CHECK_VALUE(occupancy.is_contiguous(), "occupancy must be contiguous");
  TORCH_CHECK_VALUE(aabb.size() == 6, "aabb must have 6 numbers (xmin, ymin, zmin, xmax, ymax, "
                    "zmax), got ", aabb.size());
  for (int a = 0; a < 3; ++a) {
    TORCH_CHECK_VALUE(std::isfinite(aabb[a]) && std::isfinite(aabb[a + 3]) && aabb[a] < aabb[a + 3],
                      "aabb must be finite with min < max on every axis, got axis ", a, ": [",
                      aabb[a], ", ", aabb[a + 3], "]");
  }
  TORCH_CHECK_VALUE(std::isfinite(step_size) && step_size > 0.0,
                    "step_size must be a finite number > 0, got ", step_size);
}

using MarchOut = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

MarchOut march_rays_cpu(const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& near,
                        const at::Tensor& far, const at::Tensor& occupancy,
                        at::ArrayRef<double> aabb, double step_size,
                        const std::optional<at::Tensor>& jitter);
#ifdef JEANCORE_WITH_CUDA
MarchOut march_rays_cuda(const at::Tensor& rays_o, const at::Tensor& rays_d,
                         const at::Tensor& near, const at::Tensor& far,
                         const at::Tensor& occupancy, at::ArrayRef<double> aabb,
                         double step_size, const std::optional<at::Tensor>& jitter);
#endif

}  // namespace jeancore
