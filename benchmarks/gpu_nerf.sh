#!/usr/bin/env bash
# NeRF training benchmark on a GPU machine (NVIDIA H100/H200): build jeancore with the CUDA
# kernels, then benchmarks/bench_nerf.py on one preprocessed dataset: fused vs reference ops
# throughput (it/s, rays/s, peak memory) and a time-limited run of the full preset with its
# validation PSNR curve.
#
#   bash benchmarks/gpu_nerf.sh DATASET_DIR [TRAIN_SECONDS=180] [STEPS=60] [VAL_COUNT=6]
#
# Needs: a CUDA build of torch, nvcc, CMake >= 3.26, ninja, scikit-build-core; numpy, opencv,
# tensorboard, tqdm, torchmetrics (no av / librosa / dlib / mediapipe: the training path does
# not import them). Writes $OUT (default benchmarks/results) /{build.log,bench_nerf.json,
# bench_nerf.md,bench_nerf.err}. Budget: build (1-3 min) + 2 x STEPS steps + TRAIN_SECONDS
# + validations (about 10 s each at 450 px) -- about 6-7 minutes with the defaults.
set -uo pipefail
DATA="${1:?usage: gpu_nerf.sh DATASET_DIR [TRAIN_SECONDS] [STEPS] [VAL_COUNT]}"
TRAIN_S="${2:-180}"; STEPS="${3:-60}"; VAL_COUNT="${4:-6}"
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"; DATA="$(cd "$DATA" && pwd)"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, torch.version.cuda)"

t0=$(date +%s)
(cd "$REPO" && JEANCORE_CUDA=ON TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
   CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-16}" \
   $PY -m pip install --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1) \
  || { echo "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"

# run outside the source tree so that the installed package (with the CUDA kernels) is used
cd /tmp
$PY -c "import jeancore.ops as o; assert o.cuda_available(), 'jeancore built without CUDA'; print('CUDA kernels: yes')" \
  || exit 1
t0=$(date +%s)
$PY "$REPO/benchmarks/bench_nerf.py" "$DATA" --json "$OUT/bench_nerf.json" --preset full \
    --device cuda --steps "$STEPS" --warmup 10 --train-seconds "$TRAIN_S" \
    --val-count "$VAL_COUNT" --val-frames 4 > "$OUT/bench_nerf.md" 2> "$OUT/bench_nerf.err"
rc=$?
cat "$OUT/bench_nerf.md"; tail -5 "$OUT/bench_nerf.err"
echo "bench: rc=$rc, $(( $(date +%s) - t0 )) s"
exit $rc
