#!/usr/bin/env bash
# One-call kernel check on a GPU machine (NVIDIA H100/H200): build the CUDA kernels, run the
# kernel tests (CUDA against CPU and the references), time the ops and DTW against their
# references, and measure the copy-bandwidth ceiling the kernel numbers are compared with.
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR] [DATASET_DIR]
#
# DATASET_DIR (a folder written by `jean preprocess`) adds the occupancy-grid marching benchmark
# on that head (bench_marching.py); without it that benchmark is skipped.
# Needs: a CUDA build of torch, nvcc, CMake >= 3.26, ninja, scikit-build-core, pytest,
# dtw-python (a wheel in .whl/ is installed to /tmp/site if it is missing).
# Writes OUT_DIR/{build.log,tests.log,ops_cuda.json,dtw.json,bandwidth.json,encoding_cuda.json,
# marching_cuda.json}. tiny-cuda-nn is timed beside the hash encoding when `tinycudann` imports
# (a wheel in .whl/ is installed with the others; it cannot be built without network access).
set -uo pipefail
OUT="${1:-${OUT:-benchmarks/results}}"
DATA="${2:-}"
mkdir -p "$OUT"; OUT_ABS="$(cd "$OUT" && pwd)"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
cmake --version | head -1; nvcc --version | tail -1
$PY -c "import torch; print('torch', torch.__version__, torch.version.cuda)"

t0=$(date +%s)
JEANCORE_CUDA=ON TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" CMAKE_BUILD_PARALLEL_LEVEL=16 \
  $PY -m pip install --no-build-isolation --no-deps -v . > "$OUT/build.log" 2>&1 \
  || { echo "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
grep -E "ptxas info|registers" "$OUT/build.log" | head -20

# Copy-bandwidth ceiling (bytes read + written) for the memory-bound kernels.
$PY - "$OUT/bandwidth.json" <<'EOF'
import json, sys, torch
x = torch.empty(2**30 // 4 * 2, device="cuda").uniform_()
y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
torch.cuda.synchronize()
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
ts = []
for _ in range(10):
    s.record(); y.copy_(x); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
ts.sort(); ms = ts[len(ts) // 2]
gbs = 2 * x.numel() * 4 / ms / 1e6
print(f"device copy: {gbs:.0f} GB/s (read+write), median {ms:.3f} ms for {2 * x.numel() * 4 / 1e9:.1f} GB")
json.dump({"copy_GBps": gbs, "gpu": torch.cuda.get_device_name()}, open(sys.argv[1], "w"))
EOF

t0=$(date +%s)
(cd python_tests && $PY -m pytest -q -p no:cacheprovider --maxfail=25 --timeout=300 \
   test_registration.py test_composite.py test_sampling.py test_dtw.py \
   test_composite_packed.py test_encoding.py test_marching.py \
   -k "not real_speech" > "$OUT_ABS/tests.log" 2>&1)
rc=$?
tail -15 "$OUT/tests.log"
echo "kernel tests: rc=$rc, $(( $(date +%s) - t0 )) s"

$PY benchmarks/bench_ops.py --device cuda --repeats 20 --rays 2048 8192 65536 \
  --samples 64 128 192 --out "$OUT/ops_cuda.json" 2>/dev/null | tail -40
$PY benchmarks/bench_dtw.py --no-tslearn --out "$OUT/dtw.json" 2>&1 | tail -15
$PY benchmarks/bench_encoding.py --device cuda --repeats 20 --log2-points 16 18 20 --grids "instant-ngp 3-D 16x2, 2^19" \
  --out "$OUT/encoding_cuda.json" 2>/dev/null | tail -20
if [ -n "$DATA" ]; then
  $PY benchmarks/bench_marching.py "$DATA" --device cuda --repeats 20 --rays 8192 \
    --out "$OUT/marching_cuda.json" 2>/dev/null | tail -25
  $PY benchmarks/bench_marching.py "$DATA" --device cuda --repeats 20 --rays 65536 \
    --out "$OUT/marching_cuda_65536.json" 2>/dev/null | tail -12
else
  echo "bench_marching.py skipped: no DATASET_DIR given"
fi
exit $rc
