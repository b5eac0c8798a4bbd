"""Evaluation of the expression transformer (JEAN Sec. 3.2; paper Figs. 5, 7, 8).

* :func:`linear_separability` -- how well a linear classifier tells emotions apart from a code
  (e_e should separate emotions clearly better than e_l, and better than chance).
* :func:`mean_feature_l1` -- the trivial baseline of reconstruction: predict every frame as the
  training set's mean emotion feature.
* :func:`copy_previous_l1` -- the baseline of a teacher-forced decoder: predict each frame of a
  window as the previous ground-truth frame (the first frame as the mean feature).
* :func:`separability` -- :func:`linear_separability` of e_e, e_l and the input features of
  clips labelled by emotion, three ways (frames, time split, held-out speaker), on the codes
  of :func:`clip_codes`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clip_codes", "copy_previous_l1", "linear_separability", "mean_feature_l1",
           "separability"]


def linear_separability(codes: np.ndarray, labels, *, folds: int = 5, seed: int = 0,
                        groups=None) -> dict:
    """Cross-validated accuracy of a linear classifier (logistic regression) on codes.

    Args:
        codes: float [N, d] one code per frame.
        labels: [N] class labels (e.g. emotion names).
        folds: stratified cross-validation folds (reduced to the smallest class size if
            needed, at least 2).
        seed: shuffling seed.
        groups: optional [N] group of each frame (e.g. the speaker): then every fold tests
            on whole groups never seen in training (leave-one-group-out), so frames of one
            clip cannot be in both training and test. Needs at least 2 groups.

    Returns:
        dict with ``accuracy`` (mean over folds), ``chance`` (1 / number of classes),
        ``majority`` (the most frequent class's share) and ``folds``.

    Raises:
        ValueError: shapes disagree, fewer than 2 classes, a class with a single sample, or
            fewer than 2 groups.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    codes = np.asarray(codes, np.float64)
    labels = np.asarray(labels)
    if codes.ndim != 2 or len(codes) != len(labels):
        raise ValueError(f"codes must be [N, d] with N labels; got {codes.shape} and "
                         f"{labels.shape}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < 2:
        raise ValueError("linear_separability needs at least 2 classes with 2+ samples each")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != labels.shape:
            raise ValueError(f"groups must have one entry per code, got {groups.shape}")
        k = len(np.unique(groups))
        if k < 2:
            raise ValueError("linear_separability with groups needs at least 2 groups")
        acc = cross_val_score(clf, codes, labels, groups=groups, cv=LeaveOneGroupOut(),
                              scoring="accuracy")
    else:
        k = int(max(2, min(folds, counts.min())))
        cv = StratifiedKFold(k, shuffle=True, random_state=seed)
        acc = cross_val_score(clf, codes, labels, cv=cv, scoring="accuracy")
    return {"accuracy": float(acc.mean()), "chance": 1.0 / len(classes),
            "majority": float(counts.max() / counts.sum()), "folds": k}


def mean_feature_l1(train_sequences, val_sequences) -> float:
    """L1 reconstruction error (mean absolute difference per element) of predicting every
    validation frame as the mean training feature.

    Args:
        train_sequences, val_sequences: iterables of float [N_i, D] arrays.
    """
    train = np.concatenate([np.asarray(s, np.float64) for s in train_sequences])
    val = np.concatenate([np.asarray(s, np.float64) for s in val_sequences])
    if train.shape[1] != val.shape[1]:
        raise ValueError(f"feature widths differ: {train.shape[1]} and {val.shape[1]}")
    return float(np.abs(val - train.mean(0)).mean())


def copy_previous_l1(sequences, window: int, mean) -> float:
    """L1 error of predicting frame t of each window as ground-truth frame t-1 (the window's
    first frame as ``mean``): what a teacher-forced autoregressive decoder (Eq. 4 as
    trained and evaluated) gets by copying its input, so a model should beat it.

    Windows as in training: start at every frame (stride 1), the last one ending at the last
    frame; a sequence shorter than ``window`` is one window.

    Args:
        sequences: iterable of float [N_i, D] arrays.
        window: omega, frames per window.
        mean: float [D], prediction of each window's first frame.

    Returns:
        mean absolute difference per element over all frames of all windows.
    """
    mean = np.asarray(mean, np.float64)
    total, count = 0.0, 0
    for seq in sequences:
        x = np.asarray(seq, np.float64)
        n = len(x)
        starts = list(range(0, max(n - window, 0) + 1))
        for s0 in starts:
            w = x[s0:s0 + window]
            pred = np.concatenate([mean[None], w[:-1]])
            total += float(np.abs(w - pred).sum())
            count += w.size
    return total / count


def clip_codes(model, clips, cache_dir) -> list[tuple]:
    """Per-frame codes of each clip: ``[(clip, features [T, D], e_l [T, lip_dim],
    e_e [T, expr_dim])]``, emotion features from :func:`jeancore.data.pairs.emotion_sequence`
    (cached in ``cache_dir``), codes from ``model.frame_codes`` (inference windows, no DTW)."""
    from ..data.pairs import emotion_sequence

    out = []
    for clip in clips:
        feats = emotion_sequence(clip.path, cache_dir=cache_dir)["features"]
        e_l, e_e = model.frame_codes(feats)
        out.append((clip, feats, e_l, e_e))
    return out


def separability(model, clips, cache_dir) -> dict:
    """How well a linear classifier tells the clips' emotions apart from e_e, from e_l and
    from the input emotion features (every frame labelled by its clip's emotion), three ways:

    * ``separability_e_*``: 5-fold cross-validation over frames (frames of one clip can be
      on both sides, so it is optimistic);
    * ``separability_e_*_time_split``: trained on the first half of every clip, tested on
      the second halves;
    * ``separability_e_*_heldout_identity`` (with 2+ identities): trained on the other
      speakers' clips, tested on each speaker's own (leave-one-speaker-out).
    """
    codes = clip_codes(model, clips, cache_dir)
    labels = np.array([c.emotion for c, feats, _, _ in codes for _ in range(len(feats))])
    out = {}
    if len(set(labels)) < 2:
        return out
    halves = np.concatenate([np.arange(len(f)) >= len(f) // 2 for _, f, _, _ in codes])
    speakers = np.array([c.identity for c, feats, _, _ in codes for _ in range(len(feats))])
    for name, k in (("input", 1), ("e_l", 2), ("e_e", 3)):
        x = np.concatenate([c[k] for c in codes])
        out[f"separability_{name}"] = linear_separability(x, labels)
        out[f"separability_{name}_time_split"] = linear_separability(x, labels, groups=halves)
        if len(set(speakers)) >= 2:
            out[f"separability_{name}_heldout_identity"] = linear_separability(
                x, labels, groups=speakers)
    return out
