"""The ``jean`` command line.

``jean preprocess VIDEO --out DIR [--audio WAV] [--fps 25] [--size 450] [--landmarks dlib] ...``

Errors in the user's input print one clear line (``jean: error: ...``) and exit with status 2;
Ctrl-C exits with status 130 and leaves every cached step for the next run to resume from.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import JeanError

__all__ = ["main", "build_parser"]


def _add_preprocess(sub) -> None:
    from .data.pipeline import PreprocessConfig

    d = PreprocessConfig()
    p = sub.add_parser(
        "preprocess", help="turn a talking-head video into a training dataset",
        description="Decode, crop, track the face (68 landmarks, 3DMM pose), parse head / "
                    "torso / background, and compute audio and emotion features. Each step is "
                    "cached in OUT, so an interrupted run resumes where it stopped.")
    p.add_argument("video", help="the video (mp4, mov, mkv, ...): one person facing the camera")
    p.add_argument("--out", required=True, help="dataset directory to create (or resume)")
    p.add_argument("--audio", help="speech as a separate file (wav, mp3, m4a, or a video)")
    p.add_argument("--no-audio", action="store_true",
                   help="expression-only dataset: no audio features (e.g. MEAD clips)")
    p.add_argument("--fps", type=float, default=d.fps, help=f"frame rate (default {d.fps:g})")
    p.add_argument("--size", type=int, default=d.size, help=f"frame size in px (default {d.size})")
    p.add_argument("--landmarks", default=d.landmarks, choices=["dlib", "face-alignment"],
                   help="landmark backend (default dlib, offline)")
    p.add_argument("--audio-features", default=d.audio_features,
                   help="logmel (default), mfcc, or a .npy of precomputed features [steps, dim]")
    p.add_argument("--audio-feature-rate", type=float, default=d.audio_feature_rate,
                   help="steps per second of precomputed features (default 50)")
    p.add_argument("--n-mels", type=int, default=d.n_mels, help="mel bands (default 80)")
    p.add_argument("--av-sync", default=d.av_sync, metavar="auto|off|SECONDS",
                   help="audio-video offset of the clip: auto (default: estimated from the lips "
                        "and the speech envelope, corrected when significant and >= 1 frame), "
                        "off, or the offset in seconds (positive: the speech comes late)")
    p.add_argument("--crop-scale", type=float, default=d.crop_scale,
                   help=f"crop side / face box size (default {d.crop_scale})")
    p.add_argument("--missing-face", choices=["trim", "error"], default=d.missing_face,
                   help="frames without a face (beyond short gaps): keep the longest stretch "
                        "with a face (trim, default) or stop (error)")
    p.add_argument("--max-gap", type=int, default=d.max_gap,
                   help=f"interpolate gaps of up to this many frames (default {d.max_gap})")
    p.add_argument("--min-frames", type=int, default=d.min_frames,
                   help=f"fewest frames a dataset may have (default {d.min_frames})")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="use only the first seconds of the video")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="last fraction of frames used for validation (default 0.1)")
    p.add_argument("--device", default=d.device, help="torch device (default cpu)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset of another video in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_preprocess)


def _run_preprocess(args) -> int:
    from .data.pipeline import PreprocessConfig, preprocess

    cfg = PreprocessConfig(
        fps=args.fps, size=args.size, audio=args.audio, no_audio=args.no_audio,
        landmarks=args.landmarks, audio_features=args.audio_features,
        audio_feature_rate=args.audio_feature_rate, n_mels=args.n_mels,
        av_sync=args.av_sync, crop_scale=args.crop_scale, missing_face=args.missing_face,
        max_gap=args.max_gap,
        min_frames=args.min_frames, max_seconds=args.max_seconds,
        val_fraction=args.val_fraction, device=args.device)
    res = preprocess(args.video, args.out, cfg, overwrite=args.overwrite,
                     progress=not args.quiet)
    s = res.summary
    print(f"dataset: {s['dataset']}")
    print(f"  frames {s['frames']} at {s['fps']:g} fps ({s['duration_s']} s), {s['size']}x"
          f"{s['size']} px; faces found {s['faces_found']}, interpolated {s['interpolated']}, "
          f"dropped {s['dropped']} (no face: {s['no_face_frames']})")
    print(f"  3DMM reprojection error {s['reprojection_error_px']} px mean, "
          f"{s['reprojection_error_px_max']} px max")
    print(f"  audio features {s['audio_features']}{_sync_summary(s.get('av_sync'))}")
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in s["seconds"].items())
    print(f"  time {s['seconds_total']} s ({s['realtime_factor']}x real time): {steps}")
    print(f"  look at {res.root / 'contact_sheet.png'}")
    return 0


def _sync_summary(sync: dict | None) -> str:
    """The audio-video offset part of the preprocessing summary line (meta.json audio.av_sync)."""
    if not sync:
        return ""
    if sync.get("applied"):
        return f"; audio-video offset {sync['offset_s']:+.3f} s corrected ({sync['mode']})"
    detail = (f", lips-to-speech lag {sync['lag_s']:.3f} s, significance "
              f"z={sync['significance']:.1f}" if "lag_s" in sync else "")
    return f"; audio-video offset: none corrected ({sync['mode']}{detail})"


def _add_train_expression(sub) -> None:
    p = sub.add_parser(
        "train-expression", help="train the expression transformer on emotion pairs",
        description="Emotion pairs (one person, one sentence, two emotions) from MEAD folders "
                    "or pair lists -> per-frame emotion features -> DTW alignment -> the "
                    "expression transformer (JEAN Sec. 3.2). Writes checkpoint.pt, TensorBoard "
                    "logs and metrics.json to --out.")
    p.add_argument("pairs", nargs="+",
                   help="MEAD root / folder of MEAD-named clips, or a pair list (.csv/.json)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--identity", help="train on this identity's pairs (default: all: generic)")
    p.add_argument("--reference", help="pair every emotion only with this one (paper: neutral)")
    p.add_argument("--emotions", help="comma-separated emotions to use (default: all)")
    p.add_argument("--val-emotion", help="leave this emotion out of training; validate on it")
    p.add_argument("--init", default=None,
                   help="weights to start from: 'generic' (the shipped model), a run directory "
                        "or checkpoint, or 'none' (default: generic with --identity, "
                        "none without)")
    p.add_argument("--ff-dim", type=int, default=2048,
                   help="transformer feed-forward width (default 2048; ignored with --init)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baselines", action="store_true",
                   help="skip training the no-swap baseline")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_train_expression)


def _run_train_expression(args) -> int:
    import json

    from .train.expression import ExpressionTrainConfig
    from .train.run_expression import run_train_expression

    init = args.init if args.init is not None else ("generic" if args.identity else None)
    cfg = ExpressionTrainConfig(epochs=args.epochs, max_steps=args.max_steps,
                                batch_size=args.batch_size, lr=args.lr, device=args.device,
                                seed=args.seed, ff_dim=args.ff_dim,
                                init=None if init == "none" else init)
    emotions = tuple(e.strip() for e in args.emotions.split(",")) if args.emotions else None
    metrics = run_train_expression(
        args.pairs, args.out, identity=args.identity, reference=args.reference,
        emotions=emotions, val_emotion=args.val_emotion, config=cfg, resume=args.resume,
        baselines=not args.no_baselines, progress=not args.quiet)
    shown = {k: v for k, v in metrics.items() if k != "config"}
    print(json.dumps(shown, indent=1))
    print(f"model: {args.out}/checkpoint.pt; metrics: {args.out}/metrics.json")
    return 0


def _add_plot_expression(sub) -> None:
    p = sub.add_parser(
        "plot-expression", help="plots of a trained expression transformer's codes",
        description="A 2-D embedding (PCA or t-SNE) of the per-frame expression codes e_e (and "
                    "lip codes e_l) of MEAD clips coloured by emotion, and the emotion CNN's "
                    "reading of a linear interpolation between two emotions' mean e_e "
                    "(paper Figs. 5, 7, 8).")
    p.add_argument("run", help="run directory of `jean train-expression` (checkpoint.pt)")
    p.add_argument("clips", nargs="+", help="MEAD root / folder of MEAD-named clips")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--identity", help="only this identity's clips")
    p.add_argument("--method", choices=["pca", "tsne"], default="tsne")
    p.add_argument("--from-emotion", default="neutral")
    p.add_argument("--to-emotion", default="happy")
    p.set_defaults(func=_run_plot_expression)


def _run_plot_expression(args) -> int:
    from pathlib import Path

    import numpy as np

    from .data.emotion import EMOTION_LABELS, load_emotion_cnn
    from .data.pairs import find_mead_clips
    from .errors import BadInputError
    from .metrics.expression_plots import (interpolate_emotions, plot_code_embedding,
                                           plot_interpolation)
    from .checkpoints import load_expression_model
    from .metrics.expression import clip_codes

    model = load_expression_model(Path(args.run) / "checkpoint.pt")
    clips = [c for src in args.clips for c in find_mead_clips(src)
             if args.identity in (None, c.identity)]
    if not clips:
        raise BadInputError("no clips to plot" + (f" for identity {args.identity!r}"
                                                  if args.identity else ""))
    feats, e_e, e_l = {}, {}, {}
    for c, f, lip, expr in clip_codes(model, clips, Path(args.run) / "features"):
        key = f"{c.identity} {c.emotion}"
        feats.setdefault(c.emotion, f)
        e_e.setdefault(key, []).append(expr)
        e_l.setdefault(key, []).append(lip)
    out = Path(args.out)
    made = [plot_code_embedding({k: np.concatenate(v) for k, v in e_e.items()},
                                out / "expression_codes.png", method=args.method,
                                title=f"e_e ({args.method})"),
            plot_code_embedding({k: np.concatenate(v) for k, v in e_l.items()},
                                out / "lip_codes.png", method=args.method,
                                title=f"e_l ({args.method})")]
    a, b = args.from_emotion, args.to_emotion
    if a in feats and b in feats:
        probs = interpolate_emotions(model, load_emotion_cnn(), feats[a], feats[b])
        made.append(plot_interpolation(probs, EMOTION_LABELS, out / f"interpolation_{a}_{b}.png",
                                       title=f"{a} -> {b}: emotion CNN on decoded features"))
    for m in made:
        print(m)
    return 0


# Sub-commands defined beside the code they drive: each module has ``register(sub)``, which adds
# its parser(s) to the ``jean`` sub-parsers and imports nothing heavy until a command runs.
_COMMAND_MODULES: tuple[str, ...] = ("jeancore.train.run_audio", "jeancore.train.run_nerf",
                                      "jeancore.render.cli")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="jean", description="JEAN talking-face generation (jeancore)")
    parser.add_argument("--version", action="version", version=f"jeancore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_preprocess(sub)
    _add_train_expression(sub)
    _add_plot_expression(sub)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="jean: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except JeanError as e:
        print(f"jean: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jean: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
