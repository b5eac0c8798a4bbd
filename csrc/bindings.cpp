// All of jeancore's bindings in one place.
//  * Operators are registered with the PyTorch dispatcher (TORCH_LIBRARY), so they are reachable
//    as torch.ops.jeancore.<name>, dispatch to the CPU or CUDA kernel by device, and work with
//    torch.compile (fake/meta implementations and autograd are attached in Python, see
//    jeancore/ops/_registry.py).
//  * A small pybind11 module (jeancore._C) reports how the extension was built.
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include "composite.h"
#include "dtw.h"
#include "encoding.h"
#include "marching.h"
#include "sampling.h"

TORCH_LIBRARY(jeancore, m) {
  m.def(
      "sample_along_rays(Tensor rays_o, Tensor rays_d, Tensor near, Tensor far, int n_samples, "
      "Tensor? jitter) -> (Tensor t, Tensor points)");
  m.def("sample_pdf(Tensor bins, Tensor weights, Tensor u) -> Tensor");
  m.def(
      "composite_forward(Tensor sigma, Tensor rgb, Tensor t, Tensor rays_d, Tensor background, "
      "bool last_sample_is_background) -> (Tensor color, Tensor depth, Tensor opacity, "
      "Tensor weights)");
  m.def(
      "composite_backward(Tensor grad_color, Tensor grad_depth, Tensor grad_opacity, "
      "Tensor? grad_weights, Tensor sigma, Tensor rgb, Tensor t, Tensor rays_d, "
      "Tensor background, Tensor color, Tensor depth, Tensor opacity, "
      "bool last_sample_is_background) -> (Tensor grad_sigma, Tensor grad_rgb, "
      "Tensor grad_background)");
  m.def(
      "composite_packed_forward(Tensor sigma, Tensor rgb, Tensor t_starts, Tensor t_ends, "
      "Tensor ray_indices, int n_rays, Tensor? background, float early_stop) -> (Tensor color, "
      "Tensor opacity, Tensor depth, Tensor weights, Tensor offsets)");
  m.def(
      "composite_packed_backward(Tensor grad_color, Tensor grad_opacity, Tensor grad_depth, "
      "Tensor? grad_weights, Tensor sigma, Tensor rgb, Tensor t_starts, Tensor t_ends, "
      "Tensor offsets, Tensor? background, Tensor color, Tensor opacity, Tensor depth, "
      "float early_stop) -> (Tensor grad_sigma, Tensor grad_rgb, Tensor grad_background)");
  m.def("hash_encode(Tensor x, Tensor embeddings, Tensor offsets, Tensor resolutions) -> Tensor");
  m.def(
      "hash_encode_backward(Tensor grad_out, Tensor x, Tensor embeddings, Tensor offsets, "
      "Tensor resolutions) -> Tensor");
  m.def(
      "march_rays(Tensor rays_o, Tensor rays_d, Tensor near, Tensor far, Tensor occupancy, "
      "float[] aabb, float step_size, Tensor? jitter) -> (Tensor ray_indices, Tensor t_starts, "
      "Tensor t_ends)");
  m.def(
      "dtw_local_cost(Tensor x, Tensor y, Tensor x_lengths, Tensor y_lengths, int metric) -> "
      "(Tensor cost, Tensor offsets, Tensor row_stride)");
  m.def(
      "dtw(Tensor cost, Tensor offsets, Tensor row_stride, Tensor x_lengths, Tensor y_lengths, "
      "int step_pattern, int window, int max_path_length) -> (Tensor distance, Tensor path, "
      "Tensor path_length)");
}

TORCH_LIBRARY_IMPL(jeancore, CPU, m) {
  m.impl("sample_along_rays", &jeancore::sample_along_rays_cpu);
  m.impl("sample_pdf", &jeancore::sample_pdf_cpu);
  m.impl("composite_forward", &jeancore::composite_forward_cpu);
  m.impl("composite_backward", &jeancore::composite_backward_cpu);
  m.impl("composite_packed_forward", &jeancore::composite_packed_forward_cpu);
  m.impl("composite_packed_backward", &jeancore::composite_packed_backward_cpu);
  m.impl("hash_encode", &jeancore::hash_encode_cpu);
  m.impl("hash_encode_backward", &jeancore::hash_encode_backward_cpu);
  m.impl("march_rays", &jeancore::march_rays_cpu);
  m.impl("dtw_local_cost", &jeancore::dtw_local_cost_cpu);
  m.impl("dtw", &jeancore::dtw_cpu);
}

#ifdef JEANCORE_WITH_CUDA
TORCH_LIBRARY_IMPL(jeancore, CUDA, m) {
  m.impl("sample_along_rays", &jeancore::sample_along_rays_cuda);
  m.impl("sample_pdf", &jeancore::sample_pdf_cuda);
  m.impl("composite_forward", &jeancore::composite_forward_cuda);
  m.impl("composite_backward", &jeancore::composite_backward_cuda);
  m.impl("composite_packed_forward", &jeancore::composite_packed_forward_cuda);
  m.impl("composite_packed_backward", &jeancore::composite_packed_backward_cuda);
  m.impl("hash_encode", &jeancore::hash_encode_cuda);
  m.impl("hash_encode_backward", &jeancore::hash_encode_backward_cuda);
  m.impl("march_rays", &jeancore::march_rays_cuda);
  m.impl("dtw_local_cost", &jeancore::dtw_local_cost_cuda);
  m.impl("dtw", &jeancore::dtw_cuda);
}
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "jeancore compiled kernels (operators live in torch.ops.jeancore)";
  m.def("with_cuda", [] {
#ifdef JEANCORE_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "True if the CUDA kernels were compiled into this build.");
  m.attr("__version__") = JEANCORE_VERSION;
}
