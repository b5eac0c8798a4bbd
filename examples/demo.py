#!/usr/bin/env python
"""The whole method on a real video, end to end (``make demo``).

    python examples/demo.py [--video VIDEO] [--audio SPEECH] [--expression VIDEO] [--out DIR]
                            [--preset cpu|cpu-long|fast|full] [--iters N] [--train-audio]

1. preprocess the video (``jean preprocess``; cached: a rerun skips finished steps);
2. audio encoder: the shipped generic one (``--train-audio`` trains one on this video);
3. expression encoder: the shipped generic one (the video has no emotion pairs);
4. NeRF (``jean train``): the grid backbone's ``cpu`` preset on a CPU (about 8 minutes on
   2 cores), the paper's ``full`` on a GPU; resumes;
5. render the identity saying SPEECH with the expression of the expression video
   (``jean render``): the full frame (head over the torso and background) with the speech,
   the same pasted back into the source video, and a frame grid
   (expression source | output | pose source);
6. evaluate (``jean evaluate``): self-driven on the validation frames (and ``compare.mp4``:
   ground truth | render), cross-driven on the rendered video with its new speech and
   expression (lip-speech sync z-score beside the ground truth's); JSON + a table;
7. ``still.png``: a small frame strip of the output (what the README shows).

Defaults use the shared media (``JEAN_MEDIA``, default ``../shared/media``): the Obama clip,
the radio speech ``audio/radio31_8s_en.wav`` and the crying woman
``video/sad_woman_20s_640x360.mp4``. Every step is resumable: run the same command again
after an interruption.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_still(grid_png, out, cols: int = 3, rows: int = 2, width: int = 600):
    """A small frame strip from the render's grid (``cols`` square cells per row: expression
    source | output | pose source): ``rows`` of its rows, ``width`` pixels wide."""
    import cv2
    import numpy as np

    from jeancore._io import save_image

    grid = cv2.imread(str(grid_png), cv2.IMREAD_COLOR)[..., ::-1]
    side = grid.shape[1] // cols
    n = grid.shape[0] // side
    pick = np.linspace(1, n - 2, rows).round().astype(int) if n > rows + 1 else range(rows)
    strip = np.concatenate([grid[k * side:(k + 1) * side] for k in pick], axis=0)
    scale = width / strip.shape[1]
    strip = cv2.resize(strip, (width, int(round(strip.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    save_image(out, np.ascontiguousarray(strip))
    return out


def main(argv=None) -> int:
    media = Path(os.environ.get("JEAN_MEDIA", REPO.parent / "shared" / "media"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=str(media / "video/obama_20s_450.mp4"))
    ap.add_argument("--audio", default=str(media / "audio/radio31_8s_en.wav"))
    ap.add_argument("--expression", default=str(media / "video/sad_woman_20s_640x360.mp4"))
    ap.add_argument("--out", default=None, help="output folder (default runs/demo/<video name>)")
    ap.add_argument("--preset", default=None,
                    help="cpu | cpu-long | fast | full (default: cpu without a GPU, full with)")
    ap.add_argument("--iters", type=int, default=None, help="NeRF iterations (preset's)")
    ap.add_argument("--train-audio", action="store_true",
                    help="train the audio encoder on this video instead of the shipped one")
    ap.add_argument("--eval-frames", type=int, default=None,
                    help="self-driven validation frames to evaluate (default: all)")
    args = ap.parse_args(argv)

    from jeancore.data import PreprocessConfig, preprocess
    from jeancore.errors import JeanError
    from jeancore.train import preset_config, train_nerf
    from jeancore.render.evaluate import format_table
    from jeancore.render.pipeline import render
    from jeancore.render.run_eval import evaluate_run

    out = Path(args.out) if args.out else REPO / "runs" / "demo" / Path(args.video).stem
    t0 = time.perf_counter()
    times = {}

    def step(name):
        times[name] = time.perf_counter()
        print(f"\n== {name}", flush=True)

    try:
        step("preprocess")
        data = out / "data"
        preprocess(args.video, data, PreprocessConfig())
        audio_encoder = None  # shipped generic weights
        if args.train_audio:
            step("audio encoder")
            from jeancore.train.audio import AudioTrainConfig, load_audio_datasets, train_audio

            train_audio(load_audio_datasets([data]), out / "audio", AudioTrainConfig(),
                        resume=(out / "audio").exists())
            audio_encoder = out / "audio"
        step("NeRF")
        overrides = {} if args.iters is None else {"iters": args.iters}
        cfg = preset_config(args.preset, **overrides)
        nerf = out / "nerf"
        res = train_nerf(data, nerf, cfg, audio_encoder=audio_encoder,
                         resume=(nerf / "checkpoint.pt").exists())
        if res.get("val"):
            first, last = res["val"][0], res["val"][-1]
            print(f"validation PSNR (head region) {first['psnr']:.2f} dB at step "
                  f"{first['step']} -> {last['psnr']:.2f} dB at step {last['step']}")
        step("render")
        video = out / "demo.mp4"
        r = render(nerf, args.audio, args.expression, "dataset", video)
        step("evaluate")
        metrics = evaluate_run(nerf, audio=args.audio, expression=args.expression,
                               out=out / "evaluation.json", max_frames=args.eval_frames,
                               compare=out / "compare.mp4", rendered=r.video)
        step("still")
        still = write_still(r.grid, out / "still.png")
    except JeanError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print()
    print(format_table({k: v for k, v in metrics.items() if k in ("self", "cross")}))
    print(f"\nvideo ({r.n_frames} frames, {r.size}x{r.size}, with the speech): {r.video}")
    if r.pasted is not None:
        print(f"pasted back into the source video: {r.pasted}")
    print(f"ground truth | render (validation frames): {metrics.get('compare')}")
    print(f"frame grid (expression source | output | pose source): {r.grid}")
    print(f"still for a README: {still}")
    print(f"metrics: {out / 'evaluation.json'}")
    print(f"NeRF run (TensorBoard: tensorboard --logdir {nerf / 'tb'}): {nerf}")
    names = list(times)
    spans = [times[b] - times[a] for a, b in zip(names, names[1:])]
    spans.append(time.perf_counter() - times[names[-1]])
    print("time: " + ", ".join(f"{n} {s:.0f} s" for n, s in zip(names, spans))
          + f"; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
