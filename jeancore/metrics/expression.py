"""Evaluation of the expression transformer (JEAN Sec. 3.2; paper Figs. 5, 7, 8).

* :func:`linear_separability` -- how well a linear classifier tells emotions apart from a code
  (e_e should separate emotions clearly better than e_l, and better than chance).
* :func:`mean_feature_l1` -- the trivial baseline of reconstruction: predict every frame as the
  training set's mean emotion feature.
* :func:`copy_previous_l1` -- the baseline of a teacher-forced decoder: predict each frame of a
  window as the previous ground-truth frame (the first frame as the mean feature).
"""

from __future__ import annotations

import numpy as np

__all__ = ["copy_previous_l1", "linear_separability", "mean_feature_l1"]


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
