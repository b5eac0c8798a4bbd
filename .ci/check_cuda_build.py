"""After `make cuda-check`: the CUDA build imports and registered CUDA kernels for every op."""

import torch

import jeancore.ops as ops

assert ops.built_with_cuda(), "jeancore was built without its CUDA kernels"
names = ["sample_along_rays", "sample_pdf", "composite_forward", "composite_backward",
         "composite_packed_forward", "composite_packed_backward", "hash_encode",
         "hash_encode_backward", "march_rays", "dtw_local_cost", "dtw"]
missing = [n for n in names
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"jeancore::{n}", "CUDA")]
assert not missing, f"no CUDA kernel registered for {missing}"
print(f"CUDA build OK: torch {torch.__version__}, CUDA kernels for {', '.join(names)}")
