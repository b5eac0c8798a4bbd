// CPU ray marching; the traversal is in marching.h. One pass: chunks of rays in parallel, each
// chunk appending its samples to its own buffer; then the buffers are copied into the packed
// outputs at their rays' offsets (the traversal is not run twice).
#include "marching.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include <cstring>

namespace jeancore {

namespace {
// The packed grid (bits and the two block levels, see MarchGrid): one pass over the bools in memory order,
// slabs of 8 x-planes in parallel (each slab owns its row of blocks).
struct PackedGrid {
  std::vector<uint8_t> bits, blocks, big;
};

PackedGrid pack_grid_cpu(const bool* occ, int32_t R) {
  const int32_t Rb = (R + (1 << kBlockShift) - 1) >> kBlockShift;
  PackedGrid p;
  p.bits.assign(static_cast<size_t>(R) * R * Rb, 0);
  p.blocks.assign(static_cast<size_t>(Rb) * Rb * Rb, 0);
  parallel_chunks(Rb, chunk_for(Rb, int64_t(R) * R << kBlockShift), [&](int64_t b0, int64_t b1) {
    for (int64_t x = b0 << kBlockShift; x < std::min<int64_t>(R, b1 << kBlockShift); ++x) {
      uint8_t* brow = p.blocks.data() + (x >> kBlockShift) * Rb * Rb;
      for (int64_t y = 0; y < R; ++y) {
        const bool* line = occ + (x * R + y) * R;
        uint8_t* bits = p.bits.data() + (x * R + y) * Rb;
        uint8_t* bline = brow + (y >> kBlockShift) * Rb;
        for (int32_t zb = 0; zb < Rb; ++zb) {
          uint64_t v = 0;  // 8 bools at once (fewer at the end of the line)
          std::memcpy(&v, line + (zb << kBlockShift),
                      static_cast<size_t>(std::min<int64_t>(8, R - (int64_t(zb) << kBlockShift))));
          bits[zb] = pack_bools(v);
          bline[zb] |= bits[zb] != 0;
        }
      }
    }
  });
  const int32_t Rg = (R + (1 << kBigShift) - 1) >> kBigShift;
  p.big.resize(static_cast<size_t>(Rg) * Rg * Rg);
  for (int64_t b = 0; b < int64_t(Rg) * Rg * Rg; ++b) {
    p.big[b] = big_from_blocks(p.blocks.data(), Rb, static_cast<int32_t>(b / (Rg * Rg)),
                               static_cast<int32_t>(b / Rg % Rg), static_cast<int32_t>(b % Rg));
  }
  return p;
}
}  // namespace

MarchOut march_rays_cpu(const at::Tensor& rays_o, const at::Tensor& rays_d, const at::Tensor& near,
                        const at::Tensor& far, const at::Tensor& occupancy,
                        at::ArrayRef<double> aabb, double step_size,
                        const std::optional<at::Tensor>& jitter) {
  check_march_inputs(rays_o, rays_d, near, far, occupancy, aabb, step_size, jitter);
  const int64_t N = rays_o.size(0);
  const int32_t R = static_cast<int32_t>(occupancy.size(0));
  const PackedGrid packed = pack_grid_cpu(occupancy.data_ptr<bool>(), R);
  MarchOut out;
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "march_rays_cpu", [&] {
    MarchGrid<scalar_t> g = march_grid<scalar_t>(aabb, R);
    g.bits = packed.bits.data();
    g.blocks = packed.blocks.data();
    g.big = packed.big.data();
    const scalar_t* o = rays_o.data_ptr<scalar_t>();
    const scalar_t* d = rays_d.data_ptr<scalar_t>();
    const scalar_t* nr = near.data_ptr<scalar_t>();
    const scalar_t* fr = far.data_ptr<scalar_t>();
    const scalar_t* jt = jitter.has_value() ? jitter->data_ptr<scalar_t>() : nullptr;
    const scalar_t step = static_cast<scalar_t>(step_size);
    // Pass 1: march, each chunk into its own buffer of (t_start, t_end) pairs.
    const int64_t chunk = std::max<int64_t>(1, chunk_for(N, 64));
    const int64_t n_chunks = N > 0 ? (N + chunk - 1) / chunk : 0;
    std::vector<std::vector<scalar_t>> buffers(static_cast<size_t>(n_chunks));
    std::vector<int64_t> counts(static_cast<size_t>(N) + 1, 0);
    parallel_chunks(N, chunk, [&](int64_t r0, int64_t r1) {
      std::vector<scalar_t>& buf = buffers[r0 / chunk];
      for (int64_t r = r0; r < r1; ++r) {
        counts[r] = march_ray(g, o + 3 * r, d + 3 * r, nr[r], fr[r], jt ? jt[r] : scalar_t(0),
                              step, [&](scalar_t ts, scalar_t te) {
                                buf.push_back(ts);
                                buf.push_back(te);
                              });
      }
    });
    // Offsets of the rays' samples (exclusive scan; N is small next to the samples).
    int64_t M = 0;
    for (int64_t r = 0; r < N; ++r) {
      const int64_t c = counts[r];
      counts[r] = M;
      M += c;
    }
    counts[N] = M;
    auto ray_indices = at::empty({M}, rays_o.options().dtype(at::kLong));
    auto t_starts = at::empty({M}, rays_o.options());
    auto t_ends = at::empty({M}, rays_o.options());
    int64_t* ri = ray_indices.data_ptr<int64_t>();
    scalar_t* ots = t_starts.data_ptr<scalar_t>();
    scalar_t* ote = t_ends.data_ptr<scalar_t>();
    // Pass 2: copy each chunk's buffer to its place.
    parallel_chunks(n_chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t r0 = c * chunk, r1 = std::min(N, r0 + chunk);
        const scalar_t* buf = buffers[c].data();
        const int64_t base = counts[r0];
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t i = counts[r]; i < counts[r + 1]; ++i) ri[i] = r;
        }
        for (int64_t i = 0; i < counts[r1] - base; ++i) {
          ots[base + i] = buf[2 * i];
          ote[base + i] = buf[2 * i + 1];
        }
      }
    });
    out = MarchOut{ray_indices, t_starts, t_ends};
  });
  return out;
}

}  // namespace jeancore
