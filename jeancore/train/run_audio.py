"""``jean train-audio``, ``jean evaluate-audio`` and ``jean preprocess-mead`` (JEAN Sec. 3.1).

``jean preprocess-mead MEAD_ROOT --out DIR [--ids M030 W011] [--emotions ...] [--levels ...]``
    every frontal MEAD take with its m4a speech -> one dataset per take + ``mead_index.json``.
``jean train-audio DATASET_DIR... --out RUN_DIR [--resume]``
    landmark autoencoder (Eq. 1) then contrastive audio encoder (Eq. 2); also under
    ``torchrun --nproc_per_node=K -m jeancore.cli train-audio ...`` (DDP). A dataset argument
    may be ``IDENTITY=DIR`` (datasets sharing an identity are its videos) or a MEAD output root.
``jean evaluate-audio RUN_DIR|generic DATASET_DIR...``
    audio-to-mouth retrieval (top-1/top-5 among 32 frames of a clip's validation split, vs
    chance) and the landmark-autoencoder swap test, printed as JSON.
"""

from __future__ import annotations

__all__ = ["register"]


def register(sub) -> None:
    """Adds the ``train-audio``, ``evaluate-audio`` and ``preprocess-mead`` sub-commands."""
    from .audio import AudioTrainConfig

    d = AudioTrainConfig()
    p = sub.add_parser(
        "train-audio", help="train the landmark autoencoder and the contrastive audio encoder",
        description="Stage 1: landmark autoencoder with mouth swapping (JEAN Eq. 1). Stage 2: "
                    "audio encoder trained with InfoNCE against the frozen mouth codes (Eq. 2). "
                    "Trains on the training splits of the datasets, evaluates on their "
                    "validation splits; writes model.pt, checkpoints, TensorBoard logs (tb/) "
                    "and metrics.json to --out. Runs under torchrun (DDP) too.")
    p.add_argument("datasets", nargs="+", metavar="DATASET_DIR",
                   help="preprocessed datasets with audio; IDENTITY=DIR names the speaker "
                        "(default: the folder name; datasets of one identity are its videos); "
                        "a `jean preprocess-mead` output folder stands for all its takes")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--ae-epochs", type=int, default=d.ae_epochs,
                   help=f"landmark-autoencoder epochs (default {d.ae_epochs})")
    p.add_argument("--audio-epochs", type=int, default=d.audio_epochs,
                   help=f"audio-encoder epochs (default {d.audio_epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"global batch size (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help="audio-encoder start lr (1e-3)")
    p.add_argument("--lr-end", type=float, default=d.lr_end, help="audio-encoder end lr (5e-6)")
    p.add_argument("--negatives", type=int, default=d.negatives,
                   help=f"InfoNCE negatives per anchor (default {d.negatives}, as Eq. 2)")
    p.add_argument("--in-batch", action="store_true",
                   help="also use the other anchors' positives as negatives")
    p.add_argument("--min-negative-gap", type=float, default=d.min_negative_gap_s,
                   metavar="SECONDS",
                   help=f"same-video negatives are at least this far from the anchor "
                        f"(default {d.min_negative_gap_s:g} s)")
    p.add_argument("--tau", type=float, default=d.tau, help="InfoNCE temperature (0.1)")
    p.add_argument("--center-codes", action="store_true",
                   help="centre the autoencoder's codes over the training frames before "
                        "stage 2 (an exact re-parametrisation; not in the paper)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each stage after N steps")
    p.add_argument("--device", default=d.device, help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_train)

    p = sub.add_parser(
        "evaluate-audio", help="retrieval accuracy and swap test of an audio model",
        description="Audio-to-mouth retrieval (top-1 / top-5 among 32 candidate frames of the "
                    "same clip, validation split) against chance, and the landmark "
                    "autoencoder's mouth-swap test. Prints JSON.")
    p.add_argument("run", help="run directory of `jean train-audio`, a model file, or "
                               "`generic` (the shipped model)")
    p.add_argument("datasets", nargs="+", metavar="DATASET_DIR")
    p.add_argument("--split", choices=["val", "train", "all"], default="val")
    p.add_argument("--candidates", type=int, default=32)
    p.add_argument("--trials", type=int, default=10, help="candidate sets per dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_run_evaluate)

    from ..data.pipeline import PreprocessConfig

    pc = PreprocessConfig()
    p = sub.add_parser(
        "preprocess-mead", help="preprocess MEAD frontal takes with their speech",
        description="Finds <ID>/video/front/<emotion>/level_<k>/<nnn>.mp4 and its "
                    "<ID>/audio/<emotion>/level_<k>/<nnn>.m4a under MEAD_ROOT and runs "
                    "`jean preprocess` on each take with the m4a as --audio (cached: a rerun "
                    "resumes); writes mead_index.json in --out for `jean train-audio OUT`.")
    p.add_argument("root", metavar="MEAD_ROOT")
    p.add_argument("--out", required=True)
    p.add_argument("--ids", nargs="+", help="speakers to use (default: all)")
    p.add_argument("--emotions", nargs="+", help="emotions to use (default: all)")
    p.add_argument("--levels", nargs="+", type=int, help="intensity levels (default: all)")
    p.add_argument("--size", type=int, default=256, help="frame size (default 256)")
    p.add_argument("--fps", type=float, default=pc.fps)
    p.add_argument("--audio-features", default=pc.audio_features)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--skip-failed", action="store_true",
                   help="skip takes that fail (listed in the index) instead of stopping")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run_preprocess_mead)


def _run_train(args) -> int:
    import json
    import os

    from .audio import AudioTrainConfig, train_audio

    cfg = AudioTrainConfig(
        ae_epochs=args.ae_epochs, audio_epochs=args.audio_epochs, batch_size=args.batch_size,
        lr=args.lr, lr_end=args.lr_end, negatives=args.negatives, in_batch=args.in_batch,
        min_negative_gap_s=args.min_negative_gap, tau=args.tau,
        center_codes=args.center_codes, max_steps=args.max_steps,
        device=args.device, seed=args.seed)
    res = train_audio(args.datasets, args.out, cfg, resume=args.resume,
                      progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        m = res.get("metrics", {})
        print(json.dumps({"overall": m.get("overall"), "swap": m.get("swap"),
                          "negatives": res["audio"].get("negative_kinds"),
                          "seconds": {s: round(res[s]["seconds"], 1)
                                      for s in ("landmark", "audio")}}, indent=1))
        print(f"model: {res['model']}; metrics: {args.out}/metrics.json")
    return 0


def _run_evaluate(args) -> int:
    import json

    from .audio import evaluate_audio, load_audio_datasets, load_audio_model

    model = load_audio_model(args.run, device=args.device)
    res = evaluate_audio(model, load_audio_datasets(args.datasets), split=args.split,
                         n_candidates=args.candidates, trials=args.trials, seed=args.seed)
    print(json.dumps(res, indent=1))
    return 0


def _run_preprocess_mead(args) -> int:
    from ..data.mead import preprocess_mead
    from ..data.pipeline import PreprocessConfig

    cfg = PreprocessConfig(size=args.size, fps=args.fps, audio_features=args.audio_features,
                           max_seconds=args.max_seconds)
    entries = preprocess_mead(args.root, args.out, cfg, ids=args.ids, emotions=args.emotions,
                              levels=args.levels, overwrite=args.overwrite,
                              progress=not args.quiet, skip_failed=args.skip_failed)
    print(f"{len(entries)} MEAD takes preprocessed into {args.out} (index: "
          f"{args.out}/mead_index.json); next: jean train-audio {args.out} --out RUN_DIR")
    return 0
