"""Evaluation of the expression transformer (JEAN Sec. 3.2; paper Figs. 5, 7, 8).

* :func:`linear_separability` -- how well a linear classifier tells emotions apart from a code
  (e_e should separate emotions clearly better than e_l, and better than chance).
* :func:`mean_feature_l1` -- the trivial baseline of reconstruction: predict every frame as the
  training set's mean emotion feature.
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_separability", "mean_feature_l1"]


def linear_separability(codes: np.ndarray, labels, *, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated accuracy of a linear classifier (logistic regression) on codes.

    Args:
        codes: float [N, d] one code per frame.
        labels: [N] class labels (e.g. emotion names).
        folds: stratified cross-validation folds (reduced to the smallest class size if
            needed, at least 2).
        seed: shuffling seed.

    Returns:
        dict with ``accuracy`` (mean over folds), ``chance`` (1 / number of classes) and
        ``majority`` (the most frequent class's share).

    Raises:
        ValueError: shapes disagree, fewer than 2 classes, or a class with a single sample.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
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
    k = int(max(2, min(folds, counts.min())))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
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
