"""``jean train``: train the dynamic NeRF of one preprocessed video (JEAN Sec. 3.3)."""

from __future__ import annotations

__all__ = ["register"]


def register(sub) -> None:
    """Add ``jean train`` to the ``jean`` sub-parsers (imports nothing heavy)."""
    p = sub.add_parser(
        "train", help="train the audio- and expression-conditioned NeRF of one video",
        description="Train JEAN's dynamic NeRF (Sec. 3.3) on a dataset made by `jean "
                    "preprocess`: 2048 rays per step from one frame (mostly in the face box), "
                    "coarse + fine networks conditioned on the fine-tuned audio encoder and "
                    "the frozen expression transformer, photometric MSE. Writes "
                    "checkpoint.pt (every K steps and on Ctrl-C), TensorBoard logs (tb/), "
                    "validation images (val/) and metrics.json to --out. Documentation: "
                    "docs/nerf.md.")
    p.add_argument("dataset", help="dataset directory (jean preprocess --out)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--audio-encoder", default=None,
                   help="audio-encoder run directory or checkpoint (default: shipped generic)")
    p.add_argument("--expression-encoder", default=None,
                   help="expression-transformer run directory or checkpoint (default: shipped "
                        "generic)")
    p.add_argument("--preset", choices=["cpu-smoke", "full"], default=None,
                   help="full (paper; default with a GPU) or cpu-smoke (minutes on a CPU; "
                        "default without a GPU)")
    p.add_argument("--iters", type=int, default=None, help="training iterations (the learning "
                   "rate decays to 5e-5 at the last one)")
    p.add_argument("--minutes", type=float, default=None,
                   help="stop after this many minutes of training")
    p.add_argument("--resolution", type=int, default=None, help="train at this image side (px)")
    p.add_argument("--ops", choices=["fused", "reference"], default="fused",
                   help="ray-sampling / compositing ops: fused kernels (default) or the "
                        "pure-PyTorch reference")
    p.add_argument("--device", default="auto", help="torch device (default: CUDA if present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fixed-background", action="store_true",
                   help="train against the dataset's background only (AD-NeRF); the default "
                        "gives the space around the head random colours so that it renders "
                        "transparent, e.g. on white")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .nerf import preset_config, train_nerf

    over = {"ops": args.ops, "seed": args.seed,
            "random_background": not args.fixed_background}
    if args.iters is not None:
        over["iters"] = args.iters
    if args.resolution is not None:
        over["resolution"] = args.resolution
    if args.minutes is not None:
        over["time_limit_s"] = 60.0 * args.minutes
    cfg = preset_config(args.preset, args.device, **over)
    res = train_nerf(args.dataset, args.out, cfg, audio_encoder=args.audio_encoder,
                     expression_model=args.expression_encoder, resume=args.resume,
                     progress=not args.quiet)
    first, last = res["val"][0], res["val"][-1]
    print(f"NeRF ({cfg.preset}, {res['device']}): {res['step']} steps, "
          f"{res['it_per_s']:.2f} it/s, {res['rays_per_s']:.0f} rays/s")
    print(f"  validation (head region): PSNR {first['psnr']:.2f} -> {last['psnr']:.2f} dB, "
          f"SSIM {first['ssim']:.3f} -> {last['ssim']:.3f} (steps {first['step']} -> "
          f"{last['step']})")
    print(f"  run: {args.out}/checkpoint.pt, images {args.out}/val/, logs {args.out}/tb")
    return 0
