#!/usr/bin/env python
"""DTW benchmark: jeancore batched DTW (with paths) vs dtw-python and tslearn, pair by pair.

Workload (fixed seed): ``--pairs`` pairs of random lengths in [--min-len, --max-len], feature width
``--dim``, float32 features. Methods, timed in the same run:

  (a) jeancore ``dtw`` on CPU: one call over the padded batch (x_lengths / y_lengths), paths included;
      float32 (the workload's dtype) and float64 (dtw-python's working precision).
  (b) dtw-python ``dtw.dtw(x, y, dist_method="euclidean")`` pair by pair (returns the path too;
      works in float64, symmetric2 step pattern).
  (c) tslearn ``dtw_path`` pair by pair. NOTE: a different cost: tslearn's DTW is
      sqrt(sum of SQUARED euclidean distances along the path) with unweighted (symmetric1-like)
      steps, so its distances are not comparable with (a)/(b); it is timed as "a DTW with path".
  (d) jeancore ``dtw`` on CUDA (if a GPU and a CUDA build are available), same padded batch;
      the host->device copy of the batch is excluded, fetching results to the host is included.

Every method is warmed up (tslearn's numba JIT compiles on first call), then timed as the median of
``--repeats`` runs (time.perf_counter). The script checks that (a) gives dtw-python's distances
(euclidean / symmetric2) and reports how many paths are identical; it exits with status 1 if the
distances disagree. Results go to stdout (markdown) and to ``--out`` as JSON.

Usage:  python benchmarks/bench_dtw.py [--pairs 64] [--repeats 5] [--min-len 100] [--max-len 400]
                                       [--dim 128] [--out benchmarks/results/dtw.json]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import pathlib
import platform
import sys

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import cpu_model as _cpu_model, median_time as _time  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-len", type=int, default=100)
    ap.add_argument("--max-len", type=int, default=400)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "dtw.json"))
    ap.add_argument("--no-tslearn", action="store_true", help="skip tslearn (slow numba warm-up)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.pairs < 1 or not (1 <= args.min_len <= args.max_len) or args.dim < 1:
        ap.error("need --repeats >= 1, --pairs >= 1, 1 <= --min-len <= --max-len, --dim >= 1")

    import dtw as dtwpy
    import jeancore.ops as jops
    from jeancore.ops import dtw as jdtw

    # ---- workload -------------------------------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    B, D = args.pairs, args.dim
    lx = rng.integers(args.min_len, args.max_len + 1, size=B)
    ly = rng.integers(args.min_len, args.max_len + 1, size=B)
    xs = [rng.standard_normal((int(n), D)).astype(np.float32) for n in lx]
    ys = [rng.standard_normal((int(m), D)).astype(np.float32) for m in ly]
    xp = np.zeros((B, int(lx.max()), D), np.float32)
    yp = np.zeros((B, int(ly.max()), D), np.float32)
    for b in range(B):
        xp[b, :lx[b]] = xs[b]
        yp[b, :ly[b]] = ys[b]
    X, Y = torch.from_numpy(xp), torch.from_numpy(yp)
    XL, YL = torch.from_numpy(lx.astype(np.int64)), torch.from_numpy(ly.astype(np.int64))
    X64, Y64 = X.double(), Y.double()
    cells = int((lx * ly).sum())

    results = []

    def add(name, median, times, notes=""):
        results.append({"method": name, "median_s": median, "times_s": times, "notes": notes})
        print(f"  {name}: median {median:.4f} s over {len(times)} runs", file=sys.stderr)

    # (b) dtw-python, pair by pair
    def run_dtwpy():
        return [dtwpy.dtw(xs[b], ys[b], dist_method="euclidean", step_pattern=dtwpy.symmetric2)
                for b in range(B)]

    med, times, ref = _time(run_dtwpy, args.repeats)
    add("dtw-python (pair by pair)", med, times, "float64, euclidean, symmetric2, with path")
    ref_dist = np.array([a.distance for a in ref])
    ref_paths = [np.stack([a.index1, a.index2], 1) for a in ref]

    # (a) ours, CPU, one call over the padded batch
    checks = {}
    for label, (xx, yy) in (("float32", (X, Y)), ("float64", (X64, Y64))):
        med, times, res = _time(lambda: jdtw(xx, yy, x_lengths=XL, y_lengths=YL), args.repeats)
        add(f"jeancore dtw CPU, {label} (batched)", med, times,
            f"{label}, euclidean, symmetric2, paths; one call over the padded batch")
        got = res.distance.double().numpy()
        rtol = 1e-4 if label == "float32" else 1e-9
        rel = np.abs(got - ref_dist) / np.abs(ref_dist)
        same_paths = sum(int(np.array_equal(res.paths[b].numpy(), ref_paths[b])) for b in range(B))
        checks[f"cpu_{label}"] = {"max_rel_distance_error_vs_dtw_python": float(rel.max()),
                                  "rtol": rtol, "distances_match": bool(rel.max() <= rtol),
                                  "identical_paths": same_paths, "pairs": B}

    # (c) tslearn, pair by pair (different cost, see module docstring)
    if not args.no_tslearn:
        try:
            from tslearn.metrics import dtw_path
        except Exception as e:  # noqa: BLE001
            print(f"  tslearn unavailable: {e}", file=sys.stderr)
        else:
            med, times, _ = _time(lambda: [dtw_path(xs[b], ys[b]) for b in range(B)], args.repeats)
            add("tslearn dtw_path (pair by pair)", med, times,
                "DIFFERENT COST: sqrt(sum sq. euclidean), unweighted steps; numba JIT excluded (warm-up)")

    # (d) ours, CUDA
    cuda_note = None
    if torch.cuda.is_available() and jops.cuda_available():
        Xc, Yc, XLc, YLc = X.cuda(), Y.cuda(), XL.cuda(), YL.cuda()
        X64c, Y64c = X64.cuda(), Y64.cuda()
        for label, (xx, yy) in (("float32", (Xc, Yc)), ("float64", (X64c, Y64c))):
            def run_cuda(xx=xx, yy=yy):
                r = jdtw(xx, yy, x_lengths=XLc, y_lengths=YLc)
                return r.distance.cpu(), [p.cpu() for p in r.paths]

            med, times, (dist, paths) = _time(run_cuda, args.repeats, warmup=2,
                                              sync=torch.cuda.synchronize)
            add(f"jeancore dtw CUDA, {label} (batched)", med, times,
                f"{label}; {torch.cuda.get_device_name()}; results copied to host")
            rtol = 1e-4 if label == "float32" else 1e-9
            rel = np.abs(dist.double().numpy() - ref_dist) / np.abs(ref_dist)
            checks[f"cuda_{label}"] = {
                "max_rel_distance_error_vs_dtw_python": float(rel.max()), "rtol": rtol,
                "distances_match": bool(rel.max() <= rtol),
                "identical_paths": sum(int(np.array_equal(paths[b].numpy(), ref_paths[b])) for b in range(B)),
                "pairs": B}
    else:
        cuda_note = ("CUDA not benchmarked: " + ("no GPU (torch.cuda.is_available() is False)"
                     if not torch.cuda.is_available() else "jeancore built without CUDA"))
        print(f"  {cuda_note}", file=sys.stderr)

    base = next(r["median_s"] for r in results if r["method"].startswith("dtw-python"))
    for r in results:
        r["speedup_vs_dtw_python"] = base / r["median_s"]
        r["ms_per_pair"] = 1e3 * r["median_s"] / B
        r["mcells_per_s"] = cells / r["median_s"] / 1e6

    machine = {
        "platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_num_threads": torch.get_num_threads(),
        "numpy": np.__version__, "dtw_python": getattr(dtwpy, "__version__", "?"),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "jeancore_cuda_available": bool(jops.cuda_available()),
    }
    try:
        import tslearn
        machine["tslearn"] = tslearn.__version__
    except Exception:  # noqa: BLE001
        pass
    config = {"pairs": B, "dim": D, "min_len": args.min_len, "max_len": args.max_len,
              "repeats": args.repeats, "seed": args.seed, "dtype": "float32",
              "total_cells": cells, "mean_len_x": float(lx.mean()), "mean_len_y": float(ly.mean())}
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    # ---- report ---------------------------------------------------------------------------------
    lines = [f"# DTW benchmark ({now})", "",
             f"{B} pairs, lengths {args.min_len}-{args.max_len} (mean {lx.mean():.0f} x {ly.mean():.0f}), "
             f"D={D}, float32 inputs, euclidean, with paths; median of {args.repeats} runs after warm-up.",
             f"Machine: {machine['cpu']} ({machine['cpu_count']} CPUs), {machine['platform']}, "
             f"torch {machine['torch']} ({machine['torch_num_threads']} threads)"
             + (f", GPU {machine['cuda_device']}" if machine["cuda_device"] else ""), "",
             "| method | median s | ms / pair | Mcells/s | speedup vs dtw-python | notes |",
             "|---|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['method']} | {r['median_s']:.4f} | {r['ms_per_pair']:.2f} | "
                     f"{r['mcells_per_s']:.1f} | {r['speedup_vs_dtw_python']:.2f}x | {r['notes']} |")
    lines.append("")
    for k, c in checks.items():
        lines.append(f"- check {k}: distances vs dtw-python max rel. error "
                     f"{c['max_rel_distance_error_vs_dtw_python']:.2e} (rtol {c['rtol']:g}) -> "
                     f"{'OK' if c['distances_match'] else 'MISMATCH'}; identical paths "
                     f"{c['identical_paths']}/{c['pairs']}")
    if cuda_note:
        lines.append(f"- {cuda_note}")
    print("\n".join(lines))

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "dtw", "date": now, "machine": machine, "config": config,
                               "results": results, "checks": checks, "cuda_note": cuda_note},
                              indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    ok = all(c["distances_match"] for c in checks.values())
    if not ok:
        print("ERROR: jeancore distances differ from dtw-python's", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
