"""Expression metrics against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from jeancore.metrics import linear_separability, mean_feature_l1


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
