"""``jean render`` and ``jean evaluate`` (registered in :mod:`jeancore.cli`)."""

from __future__ import annotations

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser(
        "render", help="render a trained model from audio, expression and pose to an mp4",
        description="Drive a trained JEAN NeRF with speech (lip sync), an expression video "
                    "(facial expression) and a head-pose source. The audio's length sets the "
                    "video's; writes OUT.mp4 (with the audio) and OUT_grid.png "
                    "(expression source | output).")
    p.add_argument("run", help="run directory of `jean train`")
    p.add_argument("--audio", required=True, help="speech: an audio file or a video with sound")
    p.add_argument("--expression", required=True, help="a face video giving the expression")
    p.add_argument("--pose", default="dataset",
                   help="'dataset' (training poses, default), 'frozen', a dataset folder, or a "
                        "video whose head motion is retargeted")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--dataset", help="the training dataset folder (default: the run's)")
    p.add_argument("--background", choices=["white", "dataset"], default="white",
                   help="white (JEAN's inference setting, default) or the training background")
    p.add_argument("--size", type=int, help="output side in pixels (even; default: dataset's)")
    p.add_argument("--fit", choices=["pingpong", "loop", "hold"], default="pingpong",
                   help="how a shorter expression / pose sequence is extended (default "
                        "pingpong)")
    p.add_argument("--max-seconds", type=float, help="use only the first seconds of the audio")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--no-grid", action="store_true", help="do not write the frame grid")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_render)

    e = sub.add_parser(
        "evaluate", help="measure a trained model (self- and cross-driven)",
        description="Self-driven: render the validation frames with their own audio, "
                    "expression and pose; PSNR/SSIM on the face crop, LMD, M-LMD, F-LMD, LMDV. "
                    "Cross-driven (--audio and --expression from other clips): identity "
                    "distance, Exp-Diff. Both: audio-lip agreement from jeancore's own audio "
                    "and landmark encoders (not SyncNet). Writes JSON and prints a table.")
    e.add_argument("run", help="run directory of `jean train`")
    e.add_argument("--dataset", help="the training dataset folder (default: the run's)")
    e.add_argument("--audio", help="speech of the cross-driven test")
    e.add_argument("--expression", help="face video of the cross-driven test")
    e.add_argument("--out", help="JSON file (default: RUN/evaluation.json)")
    e.add_argument("--size", type=int, help="rendering side in pixels (default: dataset's)")
    e.add_argument("--max-frames", type=int, help="at most this many frames per setting")
    e.add_argument("--audio-model", help="encoders of the audio-lip score (default: generic)")
    e.add_argument("--lpips-weights", help="LPIPS weights (see docs/evaluation.md)")
    e.add_argument("--syncnet-weights", help="SyncNet weights for LSE-C")
    e.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_run_evaluate)


def _run_render(args) -> int:
    from .pipeline import render

    res = render(args.run, args.audio, args.expression, args.pose, args.out,
                 dataset=args.dataset, background=args.background, size=args.size,
                 fit=args.fit, device=args.device, grid=not args.no_grid,
                 max_seconds=args.max_seconds, progress=not args.quiet)
    print(f"video: {res.video} ({res.n_frames} frames, {res.n_frames / res.fps:.2f} s, "
          f"{res.size}x{res.size}, with audio)")
    if res.grid is not None:
        print(f"grid:  {res.grid}")
    print(f"rendering {res.render_fps:.2f} frames/s; total {res.seconds:.1f} s")
    return 0


def _run_evaluate(args) -> int:
    from pathlib import Path

    from .evaluate import format_table
    from .run_eval import evaluate_run

    out = Path(args.out) if args.out else Path(args.run) / "evaluation.json"
    res = evaluate_run(args.run, dataset=args.dataset, audio=args.audio,
                       expression=args.expression, out=out, size=args.size,
                       max_frames=args.max_frames, device=args.device,
                       audio_model=args.audio_model, lpips_weights=args.lpips_weights,
                       syncnet_weights=args.syncnet_weights, progress=not args.quiet)
    print(format_table({k: v for k, v in res.items() if k != "info"}))
    for name, key in (("self", "audio_lip"), ("self", "audio_lip_ground_truth"),
                      ("cross", "audio_lip")):
        r = res.get(name, {}).get(key)
        if r and r.get("top1") is not None:
            print(f"{name}: {key} (jeancore's audio/landmark encoders, not SyncNet): top-1 "
                  f"{r['top1']:.3f}, top-5 {r['top5']:.3f} among {r['n_candidates']} frames "
                  f"(chance {r['chance_top1']:.3f})")
    print(f"metrics: {out}")
    return 0
