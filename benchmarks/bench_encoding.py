#!/usr/bin/env python
"""Hash encoding: the fused kernel vs the vectorised pure-PyTorch reference, side by side.

Workload: Instant-NGP's grid (``HashGrid(3)``: 16 levels x 2 features, 2^19 table, resolutions
16..2048, float32) at 2^16..2^20 random points in [0, 1]^3, and ER-NeRF's tri-plane grid
(``HashGrid(2, 12, 1, 14, 64, 512)``, one plane). Each case times the forward and one training
step of the encoding (forward + backward to the embeddings with a random cotangent), median of
``--repeats`` runs after a warm-up (``--ref-repeats`` for the reference), and measures the peak memory the step adds on top of its
inputs (CPU: resident-set high-water mark; CUDA: the caching allocator's peak). On a GPU,
tiny-cuda-nn's ``HashGrid`` encoding with the same layout is timed too when ``tinycudann``
imports. The kernel's output is checked against the reference (max abs difference) on every
size. Results: markdown on stdout, JSON in --out.

Usage: python benchmarks/bench_encoding.py [--device cpu|cuda] [--repeats 5]
                                           [--log2-points 16 17 18 19 20]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import CpuPeakMemory, machine_info, median_time, peak_mb  # noqa: E402

import jeancore.ops as ops  # noqa: E402
from jeancore.ops.reference import hash_encode_reference  # noqa: E402

GRIDS = {
    "instant-ngp 3-D 16x2, 2^19": dict(dims=3, n_levels=16, features_per_level=2,
                                       log2_table_size=19, base_resolution=16,
                                       max_resolution=2048),
    "er-nerf plane 2-D 12x1, 2^14": dict(dims=2, n_levels=12, features_per_level=1,
                                         log2_table_size=14, base_resolution=64,
                                         max_resolution=512),
}


def tcnn_encoding(cfg):
    """tiny-cuda-nn's HashGrid with the same layout, or None when tinycudann is missing."""
    try:
        import tinycudann as tcnn
    except Exception:  # noqa: BLE001
        return None
    growth = (cfg["max_resolution"] / cfg["base_resolution"]) ** (1 / (cfg["n_levels"] - 1))
    return tcnn.Encoding(cfg["dims"], {
        "otype": "HashGrid", "n_levels": cfg["n_levels"],
        "n_features_per_level": cfg["features_per_level"],
        "log2_hashmap_size": cfg["log2_table_size"], "base_resolution": cfg["base_resolution"],
        "per_level_scale": growth}, dtype=torch.float32)


def make_cases(grid, x, cot, tcnn):
    """{(implementation, "fwd" | "fwd+bwd"): callable} on these inputs (bound here, so that the
    memory pass after all timings measures each case's own inputs)."""
    def fwd(fn):
        with torch.no_grad():
            return fn(x, grid.embeddings, grid.offsets, grid.resolutions)

    def step(fn):
        emb = grid.embeddings
        out = fn(x, emb, grid.offsets, grid.resolutions)
        return torch.autograd.grad(out, emb, cot)[0]

    cases = {
        ("jeancore", "fwd"): lambda: fwd(ops.hash_encode),
        ("jeancore", "fwd+bwd"): lambda: step(ops.hash_encode),
        ("reference", "fwd"): lambda: fwd(hash_encode_reference),
        ("reference", "fwd+bwd"): lambda: step(hash_encode_reference),
    }
    if tcnn is not None:  # its own table, same layout; fp32
        def tcnn_fwd():
            with torch.no_grad():
                return tcnn(x)

        def tcnn_step():
            out = tcnn(x)
            return torch.autograd.grad(out, tcnn.params, cot.to(out.dtype))[0]

        cases[("tiny-cuda-nn", "fwd")] = tcnn_fwd
        cases[("tiny-cuda-nn", "fwd+bwd")] = tcnn_step
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if ops.cuda_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-repeats", type=int, default=3,
                    help="repeats of the (slow) reference, at most --repeats")
    ap.add_argument("--log2-points", type=int, nargs="+", default=[16, 17, 18, 19, 20])
    ap.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None
    out_path = pathlib.Path(args.out or REPO / "benchmarks" / "results" / f"encoding_{device.type}.json")

    rows, pending = [], []
    for gname in args.grids:
        cfg = GRIDS[gname]
        torch.manual_seed(0)
        grid = ops.HashGrid(**cfg, device=device)
        with torch.no_grad():
            grid.embeddings.uniform_(-1.0, 1.0)
        tcnn = tcnn_encoding(cfg) if cuda else None
        for lp in args.log2_points:
            n = 2 ** lp
            g = torch.Generator().manual_seed(lp)
            x = torch.rand(n, cfg["dims"], generator=g).to(device)
            cot = torch.randn(n, grid.output_dim, generator=g).to(device)

            cases = make_cases(grid, x, cot, tcnn)
            with torch.no_grad():
                err = float((cases[("jeancore", "fwd")]() - cases[("reference", "fwd")]()).abs().max())
            res = dict(grid=gname, points=n, max_abs_diff=err)
            for (name, mode), fn in cases.items():
                reps = min(args.repeats, args.ref_repeats) if name == "reference" else args.repeats
                t, _, _ = median_time(fn, reps, sync=sync)
                res[f"{name} {mode} ms"] = t * 1e3
                pending.append((res, f"{name} {mode} peak MB", fn))
                print(f"{gname} 2^{lp} {name:12s} {mode:8s} {t * 1e3:9.2f} ms", file=sys.stderr)
            for mode in ("fwd", "fwd+bwd"):
                res[f"speedup {mode}"] = res[f"reference {mode} ms"] / res[f"jeancore {mode} ms"]
            rows.append(res)

    # Peak memory after all timings (the CPU probe pins glibc's mmap threshold for the process).
    cpu_mem = None if cuda else CpuPeakMemory()
    for res, key, fn in pending:
        res[key] = peak_mb(fn, cuda, cpu_mem)

    info = machine_info()
    info.update(device=str(device), repeats=args.repeats, ref_repeats=args.ref_repeats,
                command="python benchmarks/bench_encoding.py " + " ".join(argv or sys.argv[1:]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"machine": info, "results": rows}, indent=2))

    def mb(v):
        return "-" if v is None else f"{v:.1f}"

    print(f"\n{info['date']} · {info.get('gpu') if cuda else info['cpu']} · torch {info['torch']}"
          f" · {info['torch_threads']} threads · device {device} · median of {args.repeats}"
          f" (reference: {min(args.repeats, args.ref_repeats)})\n")
    has_tcnn = any("tiny-cuda-nn fwd ms" in r for r in rows)
    head = ("| grid | points | jeancore fwd ms | reference fwd ms | fwd speedup | jeancore fwd+bwd ms "
            "| reference fwd+bwd ms | fwd+bwd speedup | jeancore peak MB | reference peak MB |")
    if has_tcnn:
        head += " tiny-cuda-nn fwd ms | tiny-cuda-nn fwd+bwd ms |"
    print(head)
    print("|---|---:|" + "---:|" * (head.count("|") - 3))
    for r in rows:
        line = (f"| {r['grid']} | 2^{r['points'].bit_length() - 1} | {r['jeancore fwd ms']:.1f} | "
                f"{r['reference fwd ms']:.1f} | {r['speedup fwd']:.1f}x | "
                f"{r['jeancore fwd+bwd ms']:.1f} | {r['reference fwd+bwd ms']:.1f} | "
                f"{r['speedup fwd+bwd']:.1f}x | {mb(r['jeancore fwd+bwd peak MB'])} | "
                f"{mb(r['reference fwd+bwd peak MB'])} |")
        if has_tcnn:
            line += (f" {r.get('tiny-cuda-nn fwd ms', float('nan')):.2f} | "
                     f"{r.get('tiny-cuda-nn fwd+bwd ms', float('nan')):.2f} |")
        print(line)
    worst = max(r["max_abs_diff"] for r in rows)
    print(f"\nmax |jeancore - reference| over all outputs: {worst:.2e}")
    if cuda and not has_tcnn:
        print("tiny-cuda-nn: not importable here (not timed)")
    print(f"JSON: {out_path}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
