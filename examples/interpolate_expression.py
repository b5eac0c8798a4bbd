#!/usr/bin/env python
"""Move a trained identity's expression from one emotion to another while it speaks.

    python examples/interpolate_expression.py RUN_DIR FROM_VIDEO TO_VIDEO --audio SPEECH
                                              --out out.mp4 [--size 256]

The expression code e_e (Sec. 3.2) of each frame is a linear blend of the mean e_e of
FROM_VIDEO and of TO_VIDEO, going from 0 to 1 over the clip (the paper's Fig. 8 shows such an
interpolation decoded by the emotion classifier; here it drives the NeRF). Speech drives the
lips and the head stays in one pose. Uses the library's building blocks directly: the driving
sources, ``NerfRun.render_frames`` and ``write_video``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("from_video")
    ap.add_argument("to_video")
    ap.add_argument("--audio", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--dataset", default=None, help="training dataset (default: the run's)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from tqdm import tqdm

    from jeancore.data.video import write_video
    from jeancore.errors import JeanError
    from jeancore.nerf import load_nerf_run
    from jeancore.render.pipeline import FPS, resolve_dataset
    from jeancore.render.sources import audio_windows, expression_source, head_poses

    try:
        run = load_nerf_run(args.run, "cuda" if torch.cuda.is_available() else "cpu")
        root = resolve_dataset(run, args.dataset)
        windows, wav = audio_windows(args.audio, root, FPS, return_wav=True)
        n = len(windows)
        means = [run.expression_codes_from_features(
            expression_source(v, FPS, max_seconds=10.0).features).mean(0)
            for v in (args.from_video, args.to_video)]
        alpha = torch.linspace(0, 1, n, device=means[0].device)[:, None]
        codes = (1 - alpha) * means[0] + alpha * means[1]              # [T, 64]
        poses = head_poses("frozen", n, dataset=root)
        frames = run.render_frames(poses, windows, codes, size=args.size)
        write_video(args.out, tqdm(frames, total=n, unit="frame"), FPS,
                    audio=np.asarray(wav, np.float32), sr=16000)
    except JeanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {n} frames, expression from {args.from_video} to {args.to_video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
