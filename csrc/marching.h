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
// the same 8^3 block of cells) every candidate between them does too. The marcher
//   1. bounds the interval by a slab test against the aabb enlarged by a margin that exceeds
//      the rounding error of the midpoint (in double), plus a margin in k;
//   2. tests candidates exactly; at a candidate in an empty cell it estimates, from where the
//      ray leaves the cell (or its block, when the whole block is empty), the last candidate
//      k' still inside it, tests k' exactly and skips to k' + 1 if k' is in the same cell or
//      block (halving the jump otherwise). An estimate that falls short costs one more test.
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

constexpr int kBlockShift = 3;  // blocks of 8^3 cells for the coarse occupancy level

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

// The grid of one call: occupancy (R^3 bytes, x-major: index (c_x R + c_y) R + c_z), its coarse
// level (one byte per 8^3 block, Rb = ceil(R / 8) per side) and the aabb in the inputs' dtype.
template <typename scalar_t>
struct MarchGrid {
  const bool* occ;
  const uint8_t* blocks;
  int32_t R, Rb;
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

JC_HD int64_t cell_flat(const int32_t* c, int32_t R) {
  return (static_cast<int64_t>(c[0]) * R + c[1]) * R + c[2];
}

// Whether block (bx, by, bz) of 8^3 cells has an occupied cell (the coarse level's entry).
JC_HD uint8_t block_occupied(const bool* occ, int32_t R, int32_t bx, int32_t by, int32_t bz) {
  const int32_t x1 = min_i32((bx + 1) << kBlockShift, R), y1 = min_i32((by + 1) << kBlockShift, R),
                z1 = min_i32((bz + 1) << kBlockShift, R);
  for (int32_t x = bx << kBlockShift; x < x1; ++x)
    for (int32_t y = by << kBlockShift; y < y1; ++y)
      for (int32_t z = bz << kBlockShift; z < z1; ++z)
        if (occ[(static_cast<int64_t>(x) * R + y) * R + z]) return 1;
  return 0;
}

// Marches one ray; calls emit(t_start, t_end) for each kept candidate in order and returns
// their number.
template <typename scalar_t, typename Emit>
JC_HD int64_t march_ray(const MarchGrid<scalar_t>& g, const scalar_t* o, const scalar_t* d,
                        scalar_t near, scalar_t far, scalar_t jit, scalar_t step, Emit&& emit) {
  // 1. Range of k whose midpoint can be in the aabb (double, conservative).
  const double eps = std::numeric_limits<scalar_t>::epsilon();
  const double dn = double(near), df = double(far), ds = double(step), dj = double(jit);
  double tmin = -DBL_MAX, tmax = DBL_MAX;
  for (int a = 0; a < 3; ++a) {
    const double oa = double(o[a]), da = double(d[a]);
    const double reach = fabs(oa) + fabs(da) * (fabs(dn) + fabs(df) + ds) +
                         fabs(double(g.lo[a])) + fabs(double(g.hi[a]));
    const double margin = 16.0 * eps * reach + DBL_MIN;
    const double lo = double(g.lo[a]) - margin, hi = double(g.hi[a]) + margin;
    if (da == 0.0) {
      if (!(oa >= lo && oa <= hi)) return 0;  // parallel to the slab, outside it (or NaN)
      continue;
    }
    double t0 = (lo - oa) / da, t1 = (hi - oa) / da;
    if (t0 > t1) {
      const double tt = t0;
      t0 = t1;
      t1 = tt;
    }
    tmin = t0 > tmin ? t0 : tmin;
    tmax = t1 < tmax ? t1 : tmax;
  }
  if (!(tmin <= tmax) || !(df >= dn) || !(dj == dj)) return 0;  // misses, empty or NaN
  tmax = tmax < df ? tmax : df;
  // candidate k's midpoint is about near + (k + j + 0.5) s; km covers the rounding of t in k
  const double km = 2.0 + ceil(16.0 * eps * (fabs(dn) + fabs(df) + ds) / ds);
  const double kcap = 4.0e18;
  double klo = floor((tmin - dn) / ds - dj - 0.5) - km;
  double khi = floor((tmax - dn) / ds - dj - 0.5) + km;
  if (!(klo == klo) || !(khi == khi)) return 0;
  klo = klo < 0.0 ? 0.0 : (klo > kcap ? kcap : klo);
  khi = khi > kcap ? kcap : khi;
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
    if (g.occ[cell_flat(cell, g.R)]) {
      emit(c.ts, c.te);
      ++count;
      ++k;
      continue;
    }
    // Empty cell: jump to the last candidate estimated to be in the same cell, or in the same
    // block when the whole block is empty.
    const int32_t Rb = g.Rb;
    const bool block_empty =
        !g.blocks[(static_cast<int64_t>(cell[0] >> kBlockShift) * Rb + (cell[1] >> kBlockShift)) *
                      Rb + (cell[2] >> kBlockShift)];
    double t_exit = DBL_MAX;
    for (int a = 0; a < 3; ++a) {
      const double da = double(d[a]);
      if (da == 0.0) continue;
      int32_t edge;  // index of the cell boundary the ray crosses on axis a
      if (block_empty) {
        const int32_t b = cell[a] >> kBlockShift;
        edge = da > 0.0 ? min_i32((b + 1) << kBlockShift, g.R) : b << kBlockShift;
      } else {
        edge = da > 0.0 ? cell[a] + 1 : cell[a];
      }
      const double plane = double(g.lo[a]) + double(edge) * g.width[a];
      const double ta = (plane - double(o[a])) / da;
      t_exit = ta < t_exit ? ta : t_exit;
    }
    double kj = floor((t_exit - dn) / ds - dj - 0.5) - 1.0;
    kj = kj > double(k_hi) ? double(k_hi) : kj;
    int64_t k_jump = kj > double(k) ? static_cast<int64_t>(kj) : k;
    while (k_jump > k) {  // verify: k_jump in the same empty cell / block as k
      const Candidate<scalar_t> cj = candidate(k_jump, o, d, near, jit, step);
      int32_t cell_j[3];
      bool same = cj.te <= far && cell_of(g, cj.p, cell_j);
      for (int a = 0; a < 3 && same; ++a) {
        same = block_empty ? (cell_j[a] >> kBlockShift) == (cell[a] >> kBlockShift)
                           : cell_j[a] == cell[a];
      }
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
  check_float(rays_o, "rays_o", 2, rays_o);
  const int64_t N = rays_o.size(0);
  check_sizes(rays_o, "rays_o", {N, 3}, "[N, 3]");
  check_float(rays_d, "rays_d", 2, rays_o);
  check_sizes(rays_d, "rays_d", {N, 3}, "[N, 3] matching rays_o");
  check_float(near, "near", 1, rays_o);
  check_sizes(near, "near", {N}, "[N] matching rays_o [N, 3]");
  check_float(far, "far", 1, rays_o);
  check_sizes(far, "far", {N}, "[N] matching rays_o [N, 3]");
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
