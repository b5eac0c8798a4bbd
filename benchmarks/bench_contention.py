#!/usr/bin/env python
"""Every CPU kernel on a shared machine: idle, one core busy, every core busy, with torch's
threads and with one thread, side by side in one run.

"Busy" cores run other processes that spin (``python -c "while True: pass"``), started by this
script (one, or one per core) and stopped at the end. For each condition and kernel the call is
timed with all of torch's threads and with ``torch.set_num_threads(1)``, alternating between the
two (median of --repeats each). A kernel degrades well when, under load, all threads are no
slower than one thread under the same load (``threads / 1 thread <= 1``); the table also gives
the slowdown against the idle machine. Workloads (fixed seeds, float32, sizes of one NeRF
training step): ray sampling (8192 x 128), sample_pdf (8192 x 128 -> 128), composite forward
and forward + backward (8192 x 128), march_rays (8192 rays through a 128^3 grid holding a
sphere), composite_packed forward + backward (its samples), hash_encode forward + backward
(2^18 points, Instant-NGP's 16 x 2 grid), DTW (64 pairs, lengths 100-400, 128-d, with paths).

Usage: python benchmarks/bench_contention.py [--repeats 9] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import machine_info  # noqa: E402

import jeancore.ops as ops  # noqa: E402


def workloads():
    g = torch.Generator().manual_seed(0)
    n, s = 8192, 128
    rays_o = torch.randn(n, 3, generator=g)
    rays_d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    near, far = torch.full((n,), 2.0), torch.full((n,), 6.0)
    jitter = torch.rand(n, s, generator=g)
    sigma = (torch.randn(n, s, generator=g) * 3).relu_()
    rgb = torch.rand(n, s, 3, generator=g)
    t = torch.sort(torch.rand(n, s, generator=g) * 4 + 2, dim=-1).values
    bg = torch.rand(n, 3, generator=g)
    bins = torch.cat([t, t[:, -1:] + 0.01], dim=1)
    weights = torch.rand(n, s, generator=g)
    u = torch.linspace(0, 1, s)

    def composite_step():
        a, b = sigma.clone().requires_grad_(), rgb.clone().requires_grad_()
        color = ops.composite(a, b, t, rays_d, bg)[0]
        return torch.autograd.grad(color.square().mean(), [a, b])

    # a sphere in a 128^3 grid over [-1.5, 1.5]^3; rays from a camera at distance 4
    idx = (torch.arange(128) + 0.5) / 128 * 3 - 1.5
    x, y, z = torch.meshgrid(idx, idx, idx, indexing="ij")
    occupancy = (x ** 2 + y ** 2 + z ** 2) < 1.0
    aabb = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    cam_o = torch.tensor([0.0, 0.0, 4.0]).expand(n, 3).contiguous()
    target = (torch.rand(n, 3, generator=g) * 2 - 1) * 1.2
    cam_d = torch.nn.functional.normalize(target - cam_o, dim=-1)
    march_jitter = torch.rand(n, generator=g)
    march = (cam_o, cam_d, 2.0, 6.0, occupancy, aabb, 0.01)
    ri, ts, te = ops.march_rays(*march, jitter=march_jitter)
    m = ri.numel()
    p_sigma, p_rgb = torch.rand(m, generator=g) * 5, torch.rand(m, 3, generator=g)

    def packed_step():
        a, b = p_sigma.clone().requires_grad_(), p_rgb.clone().requires_grad_()
        color = ops.composite_packed(a, b, ts, te, ri, n, background=bg)[0]
        return torch.autograd.grad(color.square().mean(), [a, b])

    grid = ops.HashGrid(3)
    points = torch.rand(2 ** 18, 3, generator=g)
    cot = torch.randn(2 ** 18, grid.output_dim, generator=g)

    def hash_step():
        return torch.autograd.grad(grid(points), grid.embeddings, cot)

    lengths_x = torch.randint(100, 401, (64,), generator=g)
    lengths_y = torch.randint(100, 401, (64,), generator=g)
    dx = torch.randn(64, 400, 128, generator=g)
    dy = torch.randn(64, 400, 128, generator=g)

    return {
        "sample_along_rays 8192x128": lambda: ops.sample_along_rays(rays_o, rays_d, near, far, s,
                                                                      stratified=False),
        "sample_along_rays (jitter)": lambda: torch.ops.jeancore.sample_along_rays(
            rays_o, rays_d, near, far, s, jitter),
        "sample_pdf 8192x128": lambda: torch.ops.jeancore.sample_pdf(bins, weights, u),
        "composite fwd 8192x128": lambda: torch.ops.jeancore.composite_forward(sigma, rgb, t, rays_d, bg, True),
        "composite fwd+bwd 8192x128": composite_step,
        f"march_rays 8192 rays ({m / n:.0f} samples/ray)": lambda: ops.march_rays(*march, jitter=march_jitter),
        "composite_packed fwd+bwd": packed_step,
        "hash_encode fwd+bwd 2^18 pts": hash_step,
        "dtw 64 pairs": lambda: ops.dtw(dx, dy, x_lengths=lengths_x, y_lengths=lengths_y),
    }


def time_pair(fn, threads: int, repeats: int):
    """Median time of fn with `threads` and with 1 thread, alternating."""
    out = {threads: [], 1: []}
    for n in (threads, 1):  # warm-up at both settings
        torch.set_num_threads(n)
        fn()
    for _ in range(repeats):
        for n in (threads, 1):
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            fn()
            out[n].append(time.perf_counter() - t0)
    torch.set_num_threads(threads)
    return statistics.median(out[threads]), statistics.median(out[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--only", nargs="*", default=None, help="substrings of kernel names")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "contention.json"))
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    cores = os.cpu_count() or 1
    if threads < 2:
        print("torch uses one thread here: nothing to compare", file=sys.stderr)
    cases = workloads()
    if args.only:
        cases = {k: v for k, v in cases.items() if any(o in k for o in args.only)}
    conditions = [("idle", 0), ("one core busy", 1), (f"all {cores} cores busy", cores)]
    load_before = os.getloadavg()
    results = {name: {} for name in cases}
    hogs = []
    try:
        for cond, n_hogs in conditions:
            while len(hogs) < n_hogs:
                hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
            time.sleep(1.0)
            for name, fn in cases.items():
                t_all, t_one = time_pair(fn, threads, args.repeats)
                results[name][cond] = {"threads_s": t_all, "one_thread_s": t_one}
                print(f"{cond:18s} {name:40s} {threads} threads {t_all * 1e3:8.2f} ms   "
                      f"1 thread {t_one * 1e3:8.2f} ms   ratio {t_all / t_one:5.2f}", file=sys.stderr)
    finally:
        for h in hogs:
            h.kill()
            h.wait()

    info = machine_info()
    info.update(repeats=args.repeats, load_before=load_before,
                command="python benchmarks/bench_contention.py " + " ".join(argv or sys.argv[1:]))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "threads": threads, "results": results}, indent=2))

    names = [c for c, _ in conditions]
    print(f"\n{info['date']} · {info['cpu']} · {cores} cores · torch {info['torch']} · "
          f"{threads} threads vs 1 · median of {args.repeats} · load average before "
          f"{load_before[0]:.2f}\n")
    print("| kernel | " + " | ".join(f"{c}: {threads} thr ms | 1 thr ms | ratio" for c in names)
          + f" | {names[-1]}, {threads} thr vs idle 1 thr |")
    print("|---|" + "---:|---:|---:|" * len(names) + "---:|")
    worst = 0.0
    for name, r in results.items():
        cells = []
        for c in names:
            a, b = r[c]["threads_s"], r[c]["one_thread_s"]
            cells.append(f"{a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.2f}")
            if c != "idle":
                worst = max(worst, a / b)
        vs_idle = r[names[-1]]["threads_s"] / r["idle"]["one_thread_s"]
        print(f"| {name} | " + " | ".join(cells) + f" | {vs_idle:.2f} |")
    print(f"\nworst ratio under load ({threads} threads / 1 thread, same load): {worst:.2f}")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
