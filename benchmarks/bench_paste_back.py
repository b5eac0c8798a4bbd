#!/usr/bin/env python
"""Paste-back (jeancore.render.paste_back) on a real dataset: speed, peak memory against the
output length (ping-pong over the source), and how closely the dataset's own frames pasted
back reproduce the source.

    python benchmarks/bench_paste_back.py DATASET [--frames N] [--repeat 1 3] [--json out.json]

For each ``--repeat`` factor r, ``r * N`` rendered frames (the dataset's own JPEG frames, pose
``dataset`` ping-pong order, read from disk one at a time) are pasted back and written with
``write_paste_back`` (H.264 + the dataset's audio) in a fresh process; wall time, output
frames and the peak resident memory added by the call are printed. Then, for the first
``N`` frames, the pasted frames (before encoding) are compared with the decoded source frames:
PSNR inside the crop (inside the feathered border), and whether every pixel outside the crop
square is the source's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _renders(root: Path, first: int, frames):
    from jeancore._io import read_image

    for j in frames:
        yield read_image(root / "frames" / f"{first + int(j):06d}.jpg")


def run_one(dataset: str, n: int, repeat: int, out: str) -> dict:
    from _common import CpuPeakMemory

    from jeancore.data.dataset import read_meta
    from jeancore.data.video import load_audio
    from jeancore.render.paste_back import write_paste_back
    from jeancore.render.sources import fit_length

    root = Path(dataset)
    meta = read_meta(root)
    n = min(n, int(meta["n_frames"]))
    d = fit_length(np.arange(n), repeat * n, "pingpong")
    wav = np.tile(load_audio(root / "audio.wav"), repeat + 1)
    probe = CpuPeakMemory()
    res = {}

    def work():
        t0 = time.perf_counter()
        r = write_paste_back(out, _renders(root, int(meta["first_frame"]), d), d, root, wav)
        res.update(seconds=time.perf_counter() - t0, out_frames=r.n_frames, fps=r.fps,
                   width=r.width, height=r.height)

    peak = probe.measure(work)
    res.update(renders=len(d), peak_mb=None if peak is None else peak / 2**20)
    return res


def fidelity(dataset: str, n: int) -> dict:
    import av

    from jeancore.data.dataset import read_meta
    from jeancore.metrics.face import psnr
    from jeancore.render.paste_back import iter_paste_back, paste_back_plan, paste_back_source

    root = Path(dataset)
    meta = read_meta(root)
    n = min(n, int(meta["n_frames"]))
    src = paste_back_source(root)
    d = np.arange(n)
    pasted = list(iter_paste_back(_renders(root, src.first_frame, d), d, src))
    sidx, _ = paste_back_plan(d, src.first_frame, src.timeline, fps=src.fps)
    need = set(sidx.tolist())
    ref = {}
    with av.open(str(src.video)) as c:
        for k, f in enumerate(c.decode(video=0)):
            if k in need:
                ref[k] = f.to_ndarray(format="rgb24")
            if k >= max(need):
                break
    x0, y0, side = src.crop
    f = int(np.ceil(0.04 * side))
    inner = (slice(y0 + f, y0 + side - f), slice(x0 + f, x0 + side - f))
    outside = np.ones((src.height, src.width), bool)
    outside[y0:y0 + side, x0:x0 + side] = False
    scores = [psnr(p[inner], ref[s][inner]) for p, s in zip(pasted, sidx)]
    return {"frames": len(pasted), "psnr_inside_min": float(np.min(scores)),
            "psnr_inside_mean": float(np.mean(scores)),
            "outside_exact": bool(all(np.array_equal(p[:src.height, :src.width][outside],
                                                     ref[s][outside])
                                      for p, s in zip(pasted, sidx))),
            "outside_pixels": int(outside.sum()), "crop": list(src.crop),
            "source": f"{src.width}x{src.height} @ {src.timeline.fps:.3f} fps",
            "dataset_size": src.size}


def main(argv=None) -> int:
    from _common import machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--repeat", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--json")
    ap.add_argument("--_one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._one:
        print(json.dumps(run_one(args.dataset, int(args._one[0]), int(args._one[1]),
                                 args._one[2])))
        return 0
    report = {"machine": machine_info(), "dataset": args.dataset, "runs": []}
    for r in args.repeat:
        out = Path("/tmp") / f"bench_paste_back_{r}.mp4"
        p = subprocess.run([sys.executable, __file__, args.dataset, "--_one", str(args.frames),
                            str(r), str(out)], capture_output=True, text=True, check=True)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        out.unlink(missing_ok=True)
        report["runs"].append({"repeat": r, **res})
        print(f"x{r}: {res['renders']} renders -> {res['out_frames']} frames "
              f"{res['width']}x{res['height']} @ {res['fps']:.3f} fps in {res['seconds']:.1f} s "
              f"({res['out_frames'] / res['seconds']:.1f} frames/s), peak +{res['peak_mb']:.0f} MB")
    fid = fidelity(args.dataset, args.frames)
    report["fidelity"] = fid
    print(f"own frames pasted back ({fid['source']}, crop {fid['crop']}, dataset "
          f"{fid['dataset_size']} px): PSNR inside the crop min {fid['psnr_inside_min']:.1f} / "
          f"mean {fid['psnr_inside_mean']:.1f} dB; outside the crop ({fid['outside_pixels']} px) "
          f"exactly the source: {fid['outside_exact']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
