#!/usr/bin/env python
"""Dub a trained identity with new speech, keeping its own expression and head motion.

    python examples/dub_new_audio.py RUN_DIR SPEECH --out dubbed.mp4 [--size 256]

RUN_DIR is a ``jean train`` run. The expression comes from the identity's own training video
(its source is recorded in the dataset's meta.json) and the head poses from the training
poses, so only the mouth follows the new speech. Any audio file or video with sound works;
the output is as long as the speech.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("speech")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--dataset", default=None, help="training dataset (default: the run's)")
    args = ap.parse_args(argv)

    import torch

    from jeancore.errors import JeanError
    from jeancore.nerf import load_nerf_run
    from jeancore.render.pipeline import render, resolve_dataset

    try:
        run = load_nerf_run(args.run, "cuda" if torch.cuda.is_available() else "cpu")
        root = resolve_dataset(run, args.dataset)
        video = json.loads((root / "meta.json").read_text())["source"]["video"]
        if not Path(video).is_file():
            raise SystemExit(f"the training video {video} is gone; use jean render "
                             "--expression with another video of this person")
        res = render(None, args.speech, video, "dataset", args.out, dataset=root,
                     size=args.size, run=run)
    except JeanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{res.video}: {res.n_frames} frames with the new speech; grid {res.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
