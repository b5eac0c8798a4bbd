#!/usr/bin/env python
"""Ray-marching kernels vs their pure-PyTorch references, side by side in one run.

For each size (rays x samples) and each op: the fused jeancore kernel and the reference from
jeancore.ops.reference get the same inputs; we time the forward, and for ``composite`` also
forward + backward of the NeRF training loss (MSE on colour), and measure the peak memory the
step adds on top of its inputs (CPU: resident-set high-water mark; CUDA: the caching
allocator's peak). Median of --repeats runs after a warm-up. Results: markdown on stdout and
JSON in --out.

Usage: python benchmarks/bench_ops.py [--device cpu|cuda] [--repeats 5]
                                      [--rays 2048 8192] [--samples 64 128 192]
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
from jeancore.ops import reference as ref  # noqa: E402


def make_inputs(n, s, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    sigma = (torch.randn(n, s, generator=g) * 3).relu_()
    rgb = torch.rand(n, s, 3, generator=g)
    t = torch.sort(torch.rand(n, s, generator=g) * 4 + 2, dim=-1).values
    rays_o = torch.randn(n, 3, generator=g)
    rays_d = torch.randn(n, 3, generator=g)
    bg = torch.rand(n, 3, generator=g)
    target = torch.rand(n, 3, generator=g)
    near = torch.full((n,), 2.0)
    far = torch.full((n,), 6.0)
    jitter = torch.rand(n, s, generator=g)
    return {k: v.to(device) for k, v in dict(sigma=sigma, rgb=rgb, t=t, rays_o=rays_o,
                                             rays_d=rays_d, bg=bg, target=target, near=near,
                                             far=far, jitter=jitter).items()}


def composite_step(fn, x, backward):
    sigma = x["sigma"].detach().requires_grad_(backward)
    rgb = x["rgb"].detach().requires_grad_(backward)
    color = fn(sigma, rgb, x["t"], x["rays_d"], x["bg"])[0]
    if backward:
        loss = ((color - x["target"]) ** 2).mean()
        torch.autograd.grad(loss, [sigma, rgb])
    return color


def make_cases(x, s):
    """{op: (fused, reference)} callables bound to this size's inputs."""
    u = torch.linspace(0, 1, s, device=x["t"].device)
    jc = torch.ops.jeancore
    return {
        "composite fwd": (lambda: composite_step(ops.composite, x, False),
                          lambda: composite_step(ref.composite_reference, x, False)),
        "composite fwd+bwd": (lambda: composite_step(ops.composite, x, True),
                              lambda: composite_step(ref.composite_reference, x, True)),
        "sample_along_rays": (
            lambda: jc.sample_along_rays(x["rays_o"], x["rays_d"], x["near"], x["far"], s,
                                         x["jitter"]),
            lambda: ref.sample_along_rays_reference(x["rays_o"], x["rays_d"], x["near"],
                                                    x["far"], s, x["jitter"])),
        "sample_pdf": (lambda: jc.sample_pdf(x["bins"], x["weights"], u),
                       lambda: ref.sample_pdf_reference(x["bins"], x["weights"], u)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if ops.cuda_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rays", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--samples", type=int, nargs="+", default=[64, 128, 192])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None
    out_path = pathlib.Path(args.out or REPO / "benchmarks" / "results" / f"ops_{device.type}.json")
    cpu_mem = None  # created after all timings: it changes glibc's allocation policy

    rows, pending = [], []
    for n in args.rays:
        for s in args.samples:
            x = make_inputs(n, s, device)
            x["bins"] = torch.cat([x["t"], x["t"][:, -1:] + 0.01], dim=1)
            x["weights"] = ref.composite_reference(x["sigma"], x["rgb"], x["t"], x["rays_d"], x["bg"])[3]
            for name, (fast, slow) in make_cases(x, s).items():
                t_fast, _, _ = median_time(fast, args.repeats, sync=sync)
                t_ref, _, _ = median_time(slow, args.repeats, sync=sync)
                rows.append(dict(op=name, rays=n, samples=s, fast_ms=t_fast * 1e3,
                                 ref_ms=t_ref * 1e3, speedup=t_ref / t_fast))
                pending.append((rows[-1], fast, slow))
                print(f"{name:18s} {n:5d}x{s:<4d} fast {t_fast * 1e3:8.2f} ms  ref {t_ref * 1e3:8.2f} ms"
                      f"  x{t_ref / t_fast:5.1f}", file=sys.stderr)
    # Peak memory after all timings (the CPU probe pins glibc's mmap threshold for the process).
    cpu_mem = None if cuda else CpuPeakMemory()
    for row, fast, slow in pending:
        m_fast, m_ref = peak_mb(fast, cuda, cpu_mem), peak_mb(slow, cuda, cpu_mem)
        row["fast_peak_mb"], row["ref_peak_mb"] = m_fast, m_ref
        if m_fast and m_ref:
            row["memory_ratio"] = m_ref / m_fast

    info = machine_info()
    info.update(device=str(device), repeats=args.repeats,
                command="python benchmarks/bench_ops.py " + " ".join(argv or sys.argv[1:]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"machine": info, "results": rows}, indent=2))

    print(f"\n{info['date']} · {info['cpu'] if not cuda else info.get('gpu')} · torch {info['torch']}"
          f" · {info['torch_threads']} threads · device {device} · median of {args.repeats}\n")
    print("| op | rays x samples | jeancore ms | reference ms | speedup | jeancore peak MB | reference peak MB | memory ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        fm = "-" if r["fast_peak_mb"] is None else f"{r['fast_peak_mb']:.1f}"
        rm = "-" if r["ref_peak_mb"] is None else f"{r['ref_peak_mb']:.1f}"
        ratio = f"{r['memory_ratio']:.1f}x" if "memory_ratio" in r else "-"
        print(f"| {r['op']} | {r['rays']}x{r['samples']} | {r['fast_ms']:.2f} | {r['ref_ms']:.2f} | "
              f"{r['speedup']:.1f}x | {fm} | {rm} | {ratio} |")
    print(f"\nJSON: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
