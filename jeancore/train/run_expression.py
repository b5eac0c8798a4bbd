"""``jean train-expression``: pairs -> emotion features -> DTW alignment -> training -> metrics.

JEAN Sec. 3.2 / suppl. 8.3. The evaluation follows issue 5: train on pairs that leave one
emotion out, validate on the pairs with it, and report Eq. 4's L1 on them against two
baselines (the mean training feature; the same encoder trained without swapping), and how
linearly separable the emotions are from e_e versus e_l (frames of every clip, labelled by
the clip's emotion).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .._io import save_json
from ..errors import BadInputError
from ..data.pairs import (EmotionPair, align_pair, emotion_sequence, find_mead_clips,
                          find_pairs, read_pair_list)

__all__ = ["collect_pairs", "run_train_expression"]


def collect_pairs(sources, *, identity: str | None = None, reference: str | None = None,
                  emotions=None, all_sentences: bool = False) -> list[EmotionPair]:
    """Pairs from MEAD folders/clips and pair lists (``.csv`` / ``.json``).

    Args:
        sources: paths: a MEAD root (either layout), a folder of flat MEAD-named clips, or a
            pair list.
        identity: keep only this identity's pairs (None: all).
        reference, emotions, all_sentences: see :func:`jeancore.data.pairs.find_pairs`.

    Raises:
        BadInputError: a source that is none of these, or no pair left.
    """
    clips, pairs = [], []
    for src in sources:
        src = Path(src)
        if src.suffix.lower() in (".csv", ".json"):
            pairs += read_pair_list(src)
        else:
            clips += find_mead_clips(src)
    pairs += find_pairs(clips, reference=reference, emotions=emotions,
                        all_sentences=all_sentences)
    if identity is not None:
        pairs = [p for p in pairs if p.identity == identity]
    if not pairs:
        ids = sorted({c.identity for c in clips})
        raise BadInputError(
            "no emotion pairs found" + (f" for identity {identity!r}" if identity else "")
            + (f" (identities present: {', '.join(ids)})" if ids else "")
            + ": a pair is one person saying the same sentence in two emotions")
    return pairs


def run_train_expression(sources, out, *, identity: str | None = None,
                         reference: str | None = None, emotions=None,
                         val_emotion: str | None = None, config=None, resume: bool = False,
                         baselines: bool = True, progress: bool = True) -> dict:
    """Train the expression transformer on emotion pairs and write ``metrics.json``.

    Args:
        sources: see :func:`collect_pairs`.
        out: run directory (``checkpoint.pt``, ``tb/``, ``features/`` cache, ``metrics.json``;
            with ``baselines``, ``no_swap/`` holds the no-swap baseline model).
        identity: the identity to train on (the paper trains one model per identity); None
            trains one model on all identities found (a generic model).
        val_emotion: leave this emotion out of training and validate on the pairs with it.
        config: :class:`~jeancore.train.expression.ExpressionTrainConfig`.
        resume: continue an interrupted run.
        baselines: also train the no-swap baseline (doubles the training time).

    Returns:
        the metrics dict written to ``metrics.json``.

    Raises:
        BadInputError: no pairs, unreadable clips, a validation emotion absent from the pairs.
    """
    from tqdm.auto import tqdm

    from ..checkpoints import load_expression_model
    from ..metrics import copy_previous_l1, mean_feature_l1, separability
    from .expression import ExpressionTrainConfig, evaluate_expression, train_expression

    out = Path(out)
    config = config or ExpressionTrainConfig()
    pairs = collect_pairs(sources, identity=identity, reference=reference, emotions=emotions)
    clips = {p.a.path: p.a for p in pairs} | {p.b.path: p.b for p in pairs}
    seqs = {}
    for path in tqdm(sorted(clips), desc="emotion features", unit="clip", disable=not progress,
                     leave=False):
        seqs[path] = emotion_sequence(path, cache_dir=out / "features")["features"]
    aligned = []
    for p in pairs:
        a, b, _ = align_pair(seqs[p.a.path], seqs[p.b.path])
        aligned.append({"a": a, "b": b, "emotion_a": p.a.emotion, "emotion_b": p.b.emotion,
                        "identity": p.identity})
    if val_emotion is not None:
        val = [d for d in aligned if val_emotion in (d["emotion_a"], d["emotion_b"])]
        train = [d for d in aligned if val_emotion not in (d["emotion_a"], d["emotion_b"])]
        if not val or not train:
            raise BadInputError(f"--val-emotion {val_emotion!r}: {len(val)} pairs with it and "
                                f"{len(train)} without; both must be non-empty")
    else:
        train, val = aligned, None
    result = train_expression(train, out, config, val_pairs=val, resume=resume,
                              progress=progress)
    model = load_expression_model(out / "checkpoint.pt")
    metrics = {
        "identity": identity or sorted({p.identity for p in pairs}),
        "pairs_train": len(train), "pairs_val": len(val or []),
        "val_emotion": val_emotion,
        "train": {k: result[k] for k in ("step", "epoch", "train_l1") if k in result},
        "config": dataclasses.asdict(config),
    }
    if val:
        metrics["val_l1"] = evaluate_expression(model, val)["l1"]
        # same units as evaluate_expression's l1: A's mean error + B's mean error
        tr = [d[k] for d in train for k in ("a", "b")]
        metrics["val_l1_mean_feature"] = (mean_feature_l1(tr, [d["a"] for d in val])
                                          + mean_feature_l1(tr, [d["b"] for d in val]))
        if baselines:
            no_swap_cfg = dataclasses.replace(config, swap_prob=0.0)
            train_expression(train, out / "no_swap", no_swap_cfg, resume=resume,
                             progress=progress)
            base = load_expression_model(out / "no_swap" / "checkpoint.pt")
            metrics["val_l1_no_swap"] = evaluate_expression(base, val)["l1"]
        mean = np.concatenate(tr).mean(0)
        metrics["val_l1_copy_previous"] = sum(
            copy_previous_l1([d[k] for d in val], model.window, mean) for k in ("a", "b"))
    metrics.update(separability(model, [clips[p] for p in sorted(clips)], out / "features"))
    save_json(out / "metrics.json", metrics)
    return metrics
