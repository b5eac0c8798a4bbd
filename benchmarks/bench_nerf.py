"""End-to-end NeRF training benchmark (JEAN Sec. 3.3): fused kernels vs pure-torch reference ops.

Two parts, on one preprocessed dataset (``jean preprocess``):

* throughput: the same training steps (same model, seed and rays) with ``ops="fused"``
  (jeancore.ops kernels) and ``ops="reference"`` (jeancore.ops.reference), side by side:
  iterations/s, rays/s and peak memory (CUDA: ``max_memory_allocated``; CPU: peak RSS added);
* time-limited training (``--train-seconds``): the preset trained for that many seconds of
  training time with the fused ops, the validation PSNR / SSIM (head region) over time.

    python benchmarks/bench_nerf.py DATASET --json out.json [--preset full|cpu-smoke]
        [--steps 50] [--warmup 5] [--train-seconds 180] [--val-count 8] [--val-frames 4]
        [--iters auto|N] [--resolution PX] [--device auto]

JSON to ``--json``; a markdown table on stdout. The audio encoder and expression transformer
are the shipped generic ones when present (``load_audio_model(None)`` /
``load_expression_model(None)``), fresh ones otherwise (speed does not depend on them; the
JSON says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuPeakMemory, machine_info  # noqa: E402


def _encoders():
    from jeancore.models import AudioEncoder, ExpressionTransformer

    kind = {}
    try:
        from jeancore.checkpoints import load_audio_model

        enc = load_audio_model(None).audio_encoder
        kind["audio_encoder"] = "generic"
    except Exception as e:  # noqa: BLE001 - no shipped weights: speed does not depend on them
        torch.manual_seed(0)
        enc, kind["audio_encoder"] = AudioEncoder(in_dim=80), f"fresh ({type(e).__name__})"
    try:
        from jeancore.checkpoints import load_expression_model

        expr = load_expression_model(None)
        kind["expression_model"] = "generic"
    except Exception as e:  # noqa: BLE001
        torch.manual_seed(0)
        expr, kind["expression_model"] = ExpressionTransformer(), f"fresh ({type(e).__name__})"
    return enc, expr, kind


def throughput(dataset, cfg_kwargs, steps, warmup, enc, expr, cpu_memory=False) -> dict:
    """Train steps/s of both ops back ends on identical work."""
    import copy

    from jeancore.nerf.data import load_nerf_data
    from jeancore.train._run import resolve_device
    from jeancore.train.nerf import NerfTrainer, preset_config

    cfg0 = preset_config(**cfg_kwargs)
    data = load_nerf_data(dataset, cfg0.resolution)
    codes = None
    out = {}
    for backend in ("fused", "reference"):
        cfg = preset_config(**dict(cfg_kwargs, ops=backend))
        dev = resolve_device(cfg.device)
        tr = NerfTrainer(data, cfg, dev, copy.deepcopy(enc), expr, codes)
        codes = tr.expr_codes.cpu()
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        for _ in range(warmup):
            tr.train_step()
        sync()
        losses = []

        def run():
            for _ in range(steps):
                losses.append(tr.train_step()["loss"])
            sync()

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        run()
        dt = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
        if dev.type == "cpu" and cpu_memory:
            # after the timing: the probe makes every buffer an mmap (slow), see _common.py
            peak = CpuPeakMemory().measure(run)
        out[backend] = {"steps": steps, "seconds": dt, "it_per_s": steps / dt,
                        "rays_per_s": steps * cfg.n_rays / dt,
                        "peak_memory_MB": None if peak is None else peak / 2**20,
                        "mean_loss": sum(losses) / len(losses), "device": str(dev)}
        del tr
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    out["speedup_fused_over_reference"] = out["fused"]["it_per_s"] / out["reference"]["it_per_s"]
    return out


def timed_training(dataset, cfg_kwargs, seconds, val_count, enc, expr, iters,
                   keep_run=None) -> dict:
    from jeancore.train import preset_config, train_nerf

    cfg = preset_config(**dict(cfg_kwargs, iters=iters, time_limit_s=seconds,
                               val_every=max(1, iters // val_count), checkpoint_every=10**9))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train_nerf(dataset, Path(keep_run or Path(tmp) / "run"), cfg, audio_encoder=enc,
                         expression_model=expr, progress=False)
        wall = time.perf_counter() - t0
    return {"train_seconds": res["train_seconds"], "wall_seconds": wall, "steps": res["step"],
            "iters_horizon": iters, "it_per_s": res["it_per_s"], "rays_per_s": res["rays_per_s"],
            "val": res["val"], "config": dataclasses.asdict(cfg)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="preprocessed dataset folder")
    ap.add_argument("--json", required=True, help="output JSON path")
    ap.add_argument("--preset", default=None, help="full (GPU default) or cpu-smoke")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per ops back end")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--train-seconds", type=float, default=0.0,
                    help="also train for this many seconds and record the PSNR curve (0: no)")
    ap.add_argument("--iters", default="auto", help="learning-rate horizon of the timed run: "
                    "N, or auto = measured fused it/s x train-seconds")
    ap.add_argument("--val-count", type=int, default=8, help="validations during the timed run")
    ap.add_argument("--val-frames", type=int, default=4, help="validation frames rendered")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--keep-run", default=None,
                    help="train the timed run into this folder (kept) instead of a temporary one")
    args = ap.parse_args(argv)

    from jeancore.train import preset_config

    cfg_kwargs = {"name": args.preset, "device": args.device, "val_frames": args.val_frames}
    if args.resolution:
        cfg_kwargs["resolution"] = args.resolution
    preset = preset_config(**cfg_kwargs).preset
    cfg_kwargs["name"] = preset
    enc, expr, kind = _encoders()
    result = {"machine": machine_info(), "dataset": str(args.dataset), "preset": preset,
              "encoders": kind}
    import jeancore.ops as ops
    result["cuda_kernels"] = bool(ops.cuda_available())
    if not args.skip_throughput:
        result["throughput"] = throughput(args.dataset, cfg_kwargs, args.steps, args.warmup,
                                          enc, expr)
    if args.train_seconds > 0:
        if args.iters == "auto":
            ips = result.get("throughput", {}).get("fused", {}).get("it_per_s")
            iters = int(ips * args.train_seconds) if ips else 20000
        else:
            iters = int(args.iters)
        result["train"] = timed_training(args.dataset, cfg_kwargs, args.train_seconds,
                                         args.val_count, enc, expr, max(iters, 1),
                                         args.keep_run)
    if "throughput" in result and result["throughput"]["fused"]["device"] == "cpu":
        # CPU peak memory last: the probe slows every allocation down for the rest of the run
        mem = throughput(args.dataset, cfg_kwargs, 2, 1, enc, expr, cpu_memory=True)
        for b in ("fused", "reference"):
            result["throughput"][b]["peak_memory_MB"] = mem[b]["peak_memory_MB"]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")

    m = result["machine"]
    print(f"# NeRF training, preset {preset}, {m.get('gpu', m['cpu'])}, torch {m['torch']}")
    if "throughput" in result:
        t = result["throughput"]
        print("\n| ops | it/s | rays/s | peak memory (MB) | mean loss |")
        print("|---|---|---|---|---|")
        for b in ("fused", "reference"):
            r = t[b]
            mem = "n/a" if r["peak_memory_MB"] is None else f"{r['peak_memory_MB']:.0f}"
            print(f"| {b} | {r['it_per_s']:.2f} | {r['rays_per_s']:.0f} | {mem} | "
                  f"{r['mean_loss']:.4f} |")
        print(f"\nfused / reference: {t['speedup_fused_over_reference']:.2f}x")
    if "train" in result:
        r = result["train"]
        print(f"\ntimed run: {r['steps']} steps in {r['train_seconds']:.0f} s of training "
              f"({r['it_per_s']:.2f} it/s; wall {r['wall_seconds']:.0f} s incl. validation)")
        print("\n| step | train seconds | val PSNR (head) | SSIM | PSNR (full frame) |")
        print("|---|---|---|---|---|")
        for v in r["val"]:
            print(f"| {v['step']} | {v['seconds']:.0f} | {v['psnr']:.2f} | {v['ssim']:.3f} | "
                  f"{v['psnr_full']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
