"""Expression metrics against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from jeancore.metrics import copy_previous_l1, linear_separability, mean_feature_l1


def test_linear_separability_known_answers():
    rng = np.random.default_rng(0)
    labels = np.repeat(["angry", "happy", "sad"], 40)
    centres = {"angry": [5, 0], "happy": [0, 5], "sad": [-5, -5]}
    separable = np.array([centres[c] for c in labels]) + rng.normal(0, 0.3, (120, 2))
    r = linear_separability(separable, labels)
    assert r["accuracy"] == 1.0 and r["chance"] == pytest.approx(1 / 3)
    noise = rng.normal(0, 1, (120, 2))  # no information: about chance
    assert linear_separability(noise, labels)["accuracy"] < 0.6
    with pytest.raises(ValueError, match="2 classes"):
        linear_separability(noise, ["a"] * 120)


def test_mean_feature_l1_hand_computed():
    train = [np.array([[0.0, 2.0], [2.0, 4.0]])]          # mean (1, 3)
    val = [np.array([[1.0, 3.0]]), np.array([[3.0, 3.0]])]  # |0,0| and |2,0| -> mean 0.5
    assert mean_feature_l1(train, val) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="widths"):
        mean_feature_l1(train, [np.zeros((1, 3))])


def test_copy_previous_l1_hand_computed():
    # one sequence of 3 frames, 1 channel: 0, 2, 6; window 2 -> windows [0,2] and [2,6];
    # predictions [m, 0] and [m, 2] with m = 1: errors |0-1| + |2-0| + |2-1| + |6-2| = 8 / 4
    assert copy_previous_l1([np.array([[0.0], [2.0], [6.0]])], 2, [1.0]) == pytest.approx(2.0)
    # a sequence shorter than the window is one window
    assert copy_previous_l1([np.array([[3.0]])], 8, [1.0]) == pytest.approx(2.0)


def test_linear_separability_held_out_groups():
    rng = np.random.default_rng(1)
    # two speakers; the label is in dimension 0 for both
    labels = np.repeat(["a", "b"], 40)
    speakers = np.tile(np.repeat(["s1", "s2"], 20), 2)
    x = rng.normal(size=(80, 2)) * 0.1
    x[:, 0] += (labels == "a") * 2.0
    r = linear_separability(x, labels, groups=speakers)
    assert r["accuracy"] == pytest.approx(1.0) and r["folds"] == 2
    # a label that is only a speaker-specific direction does not transfer to a new speaker
    y = rng.normal(size=(80, 2)) * 0.1
    y[:, 0] += ((labels == "a") & (speakers == "s1")) * 2.0
    y[:, 1] += ((labels == "a") & (speakers == "s2")) * 2.0
    assert linear_separability(y, labels)["accuracy"] > 0.95
    assert linear_separability(y, labels, groups=speakers)["accuracy"] < 0.8
    with pytest.raises(ValueError, match="2 groups"):
        linear_separability(x, labels, groups=np.zeros(80))
