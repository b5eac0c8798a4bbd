#!/usr/bin/env python
"""Preprocessing benchmark: time per step and frames per second of ``jean preprocess``.

Default: the 20 s Obama clip (``$JEAN_MEDIA/video/obama_20s_450.mp4``) at 450x450, all steps
from scratch (a fresh output folder), then a second run on the same folder to time the cache.
Writes ``benchmarks/results/preprocess.json``.

    python benchmarks/bench_preprocess.py [--video PATH] [--size 450] [--max-seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("JEAN_MEDIA", REPO.parent / "shared" / "media"))


def main() -> int:
    # imported here, not at the top: the preprocessing worker processes are spawned and
    # re-import this script as their main module, which should stay cheap
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine_info

    from jeancore.data import PreprocessConfig, preprocess

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(MEDIA / "video/obama_20s_450.mp4"))
    ap.add_argument("--size", type=int, default=450)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/preprocess.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="jean-bench-"))
    try:
        cfg = PreprocessConfig(size=args.size, max_seconds=args.max_seconds)
        t0 = time.perf_counter()
        res = preprocess(args.video, work / "ds", cfg, progress=False)
        total = time.perf_counter() - t0
        t0 = time.perf_counter()
        preprocess(args.video, work / "ds", cfg, progress=False)
        cached = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = res.meta["n_frames"]
    out = {
        "machine": machine_info(), "video": args.video, "size": args.size, "frames": n,
        "duration_s": res.meta["duration"], "seconds_per_step": res.meta["seconds"],
        "fps_per_step": {k: (n / v if v > 0 else None) for k, v in res.meta["seconds"].items()},
        "seconds_total": total, "frames_per_second": n / total,
        "realtime_factor": res.meta["duration"] / total, "seconds_rerun_cached": cached,
        "reprojection_error_px": res.meta["tracking"]["reprojection_error_px_mean"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{n} frames ({res.meta['duration']:.1f} s of video) in {total:.2f} s: "
          f"{n / total:.1f} frames/s, {out['realtime_factor']:.2f}x real time; "
          f"cached rerun {cached:.2f} s")
    for k, v in res.meta["seconds"].items():
        print(f"  {k:<14} {v:6.2f} s  {n / v if v else float('nan'):7.1f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
