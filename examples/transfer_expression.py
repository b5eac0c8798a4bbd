#!/usr/bin/env python
"""Transfer the expression of another person's video onto a trained identity.

    python examples/transfer_expression.py RUN_DIR EXPRESSION_VIDEO --audio SPEECH
                                           --out out.mp4 [--pose frozen|dataset|VIDEO]

The identity keeps its own face; the emotion features of EXPRESSION_VIDEO (any face, e.g.
``video/sad_woman_20s_640x360.mp4``) go through the run's expression transformer, SPEECH
drives the lips, and the head follows the training poses (or stays still with
``--pose frozen``, or follows another video's head motion). The frame grid beside the mp4
shows the expression source next to the output.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("expression")
    ap.add_argument("--audio", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pose", default="frozen")
    ap.add_argument("--size", type=int, default=None)
    args = ap.parse_args(argv)

    from jeancore.errors import JeanError
    from jeancore.render.pipeline import render

    try:
        res = render(args.run, args.audio, args.expression, args.pose, args.out,
                     size=args.size)
    except JeanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{res.video} ({res.n_frames} frames); expression source | output: {res.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
