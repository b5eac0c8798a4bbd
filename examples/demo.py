#!/usr/bin/env python
"""The whole method on a real video, end to end (``make demo``).

    python examples/demo.py [--video VIDEO] [--audio SPEECH] [--expression VIDEO] [--out DIR]
                            [--preset cpu-smoke|full] [--iters N] [--train-audio]

1. preprocess the video (``jean preprocess``; cached: a rerun skips finished steps);
2. audio encoder: the shipped generic one (``--train-audio`` trains one on this video);
3. expression encoder: the shipped generic one (the video has no emotion pairs);
4. NeRF (``jean train``): the cpu-smoke preset on a CPU, the paper's on a GPU; resumes;
5. render the identity saying SPEECH with the expression of the expression video
   (``jean render``): an mp4 with the speech, and a frame grid;
6. evaluate (``jean evaluate``): self-driven on the validation frames, cross-driven with the
   novel speech and expression; JSON + a table.

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


def main(argv=None) -> int:
    media = Path(os.environ.get("JEAN_MEDIA", REPO.parent / "shared" / "media"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=str(media / "video/obama_20s_450.mp4"))
    ap.add_argument("--audio", default=str(media / "audio/radio31_8s_en.wav"))
    ap.add_argument("--expression", default=str(media / "video/sad_woman_20s_640x360.mp4"))
    ap.add_argument("--out", default=None, help="output folder (default runs/demo/<video name>)")
    ap.add_argument("--preset", default=None, help="cpu-smoke | full (default: by device)")
    ap.add_argument("--iters", type=int, default=None, help="NeRF iterations (preset's)")
    ap.add_argument("--train-audio", action="store_true",
                    help="train the audio encoder on this video instead of the shipped one")
    ap.add_argument("--eval-frames", type=int, default=None,
                    help="frames per evaluation setting (default: 25 on a CPU, all on a GPU)")
    args = ap.parse_args(argv)

    import torch

    from jeancore.data import PreprocessConfig, preprocess
    from jeancore.errors import JeanError
    from jeancore.train import preset_config, train_nerf
    from jeancore.render.evaluate import format_table
    from jeancore.render.pipeline import render
    from jeancore.render.run_eval import evaluate_run

    out = Path(args.out) if args.out else REPO / "runs" / "demo" / Path(args.video).stem
    gpu = torch.cuda.is_available()
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
        size = None if gpu else cfg.resolution
        video = out / "demo.mp4"
        r = render(nerf, args.audio, args.expression, "dataset", video, size=size)
        step("evaluate")
        frames = args.eval_frames if args.eval_frames is not None else (None if gpu else 25)
        metrics = evaluate_run(nerf, audio=args.audio, expression=args.expression,
                               out=out / "evaluation.json", size=size, max_frames=frames)
    except JeanError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print()
    print(format_table({k: v for k, v in metrics.items() if k != "info"}))
    print(f"\nvideo ({r.n_frames} frames, {r.size}x{r.size}, with the speech): {r.video}")
    print(f"frame grid (expression source | output): {r.grid}")
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
