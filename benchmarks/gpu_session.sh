#!/usr/bin/env bash
# Everything a lent GPU machine (NVIDIA H100/H200) is used for, in one call: the kernel checks
# (build, CUDA tests, op, DTW, hash-encoding and occupancy-grid marching benchmarks, copy
# bandwidth: gpu_checks.sh, the marching one on DATASET_DIR's head), then the NeRF:
# fused-vs-reference training throughput and a time-limited run of the full preset with its
# validation PSNR curve (bench_nerf.py), then rendering speed and quality of that run on the
# validation frames at the dataset's size (bench_render.py), then the grid backbone's `fast`
# preset for 30 minutes (bench_backbones.py).
#
#   OUT=... bash benchmarks/gpu_session.sh DATASET_DIR [TRAIN_SECONDS=300]
#
# Writes to $OUT (at most 8 files come back from the device tool): results.tar (logs and
# JSON), val_frames.npz (rendered and real validation frames, for the landmark metrics that
# need dlib), nerf_checkpoint.pt, val_last.png.
set -uo pipefail
DATA="$(cd "${1:?usage: gpu_session.sh DATASET_DIR [TRAIN_SECONDS]}" && pwd)"
TRAIN_S="${2:-300}"
OUT="${OUT:-benchmarks/results}"; mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
R="$OUT/r"; mkdir -p "$R"

cd "$REPO"
bash benchmarks/gpu_checks.sh "$R" "$DATA" 2>&1 | tail -80

# A bad-shape call (1-D sigma) crashed the CUDA build under torch 2.11 (2026-12-01); each
# variant in its own process, and a backtrace of the crash.
cd /tmp
cat > /tmp/badshape.py <<'PY'
import sys, torch, jeancore.ops as ops
g = torch.Generator().manual_seed(0)
x = [torch.rand(5, 4, generator=g, dtype=torch.float64), torch.rand(5, 4, 3, generator=g, dtype=torch.float64),
     torch.sort(torch.rand(5, 4, generator=g, dtype=torch.float64), -1).values,
     torch.rand(5, 3, generator=g, dtype=torch.float64), torch.rand(5, 3, generator=g, dtype=torch.float64)]
case = sys.argv[1]
if case == "view1d": x[0] = x[0][0]
elif case in ("copy1d", "direct1d"): x[0] = x[0][0].clone()
elif case == "view_ok": x = [v[1:4] for v in x]
try:
    (torch.ops.jeancore.composite_forward(*x, True) if case == "direct1d" else ops.composite(*x))
    print(case, "no error")
except Exception as e:
    print(case, "raised", type(e).__name__, str(e)[:70])
PY
for c in view1d copy1d view_ok direct1d; do echo "$c: $($PY /tmp/badshape.py $c 2>&1 | tail -1)"; done
cuda-gdb -batch -ex run -ex bt --args $PY /tmp/badshape.py view1d > "$R/badshape_bt.txt" 2>&1
grep -m1 -A25 "SIGSEGV" "$R/badshape_bt.txt" | cut -c1-160

t0=$(date +%s)
$PY "$REPO/benchmarks/bench_nerf.py" "$DATA" --json "$R/bench_nerf.json" --preset full \
    --device cuda --steps 40 --warmup 10 --train-seconds "$TRAIN_S" --val-count 6 \
    --val-frames 4 --keep-run /tmp/nerf_full > "$R/bench_nerf.md" 2> "$R/bench_nerf.err"
echo "bench_nerf: rc=$?, $(( $(date +%s) - t0 )) s"
cat "$R/bench_nerf.md"; tail -3 "$R/bench_nerf.err"
t0=$(date +%s)
$PY "$REPO/benchmarks/bench_render.py" /tmp/nerf_full --json "$R/render.json" \
    --save-frames "$OUT/val_frames.npz" 2> "$R/render.err" | tail -12
echo "bench_render: rc=$?, $(( $(date +%s) - t0 )) s"; tail -3 "$R/render.err"
# the grid backbone's `fast` preset on the GPU: face-box PSNR curve over 30 minutes (snapshots
# at 2, 5, 10, 20, 30 min) and frames/s at the dataset's size
t0=$(date +%s)
$PY "$REPO/benchmarks/bench_backbones.py" "$DATA" --backbones grid --preset fast \
    --device cuda --minutes "${FAST_MINUTES:-2,5,10,20,30}" --lip --json "$R/backbones_fast.json" \
    > "$R/backbones_fast.md" 2> "$R/backbones_fast.err"
echo "bench_backbones (fast): rc=$?, $(( $(date +%s) - t0 )) s"
tail -12 "$R/backbones_fast.md"; tail -3 "$R/backbones_fast.err"
cp /tmp/nerf_full/checkpoint.pt "$OUT/nerf_checkpoint.pt" 2>/dev/null
cp /tmp/nerf_full/metrics.json "$R/nerf_metrics.json" 2>/dev/null
last=$(ls /tmp/nerf_full/val/*.png 2>/dev/null | tail -1); [ -n "$last" ] && cp "$last" "$OUT/val_last.png"
tar -C "$OUT" -cf "$OUT/results.tar" r && rm -rf "$R"
ls -la "$OUT"
