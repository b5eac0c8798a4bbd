"""`jean train-expression` end to end on the shared MEAD clips (tiny model, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jeancore.cli import main as jean_main
from jeancore.errors import BadInputError
from jeancore.train.expression import ExpressionTrainConfig, load_expression_model
from jeancore.train.run_expression import collect_pairs, run_train_expression

TINY = dict(hidden=64, d_model=32, n_layers=1, n_heads=4, ff_dim=64, lip_dim=16,
            batch_size=32, max_steps=25, checkpoint_every=10, device="cpu")


def test_leave_one_emotion_out_run(media, tmp_path):
    out = tmp_path / "run"
    metrics = run_train_expression(
        [media / "mead"], out, identity="W011",
        emotions=("neutral", "happy", "sad", "angry"), val_emotion="sad",
        config=ExpressionTrainConfig(**TINY), progress=False)
    assert metrics["pairs_train"] == 3 and metrics["pairs_val"] == 3  # 4 emotions: 6 pairs
    for k in ("val_l1", "val_l1_mean_feature", "val_l1_no_swap"):
        assert np.isfinite(metrics[k]) and metrics[k] > 0
    sep = metrics["separability_e_e"]
    assert 0 <= sep["accuracy"] <= 1 and sep["chance"] == pytest.approx(0.25)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["val_l1"] == pytest.approx(metrics["val_l1"])
    model = load_expression_model(out / "checkpoint.pt")
    assert model.d_model == 32
    assert (out / "no_swap" / "checkpoint.pt").is_file() and any((out / "tb").iterdir())
    # one cached emotion-feature sequence per clip
    assert len(list((out / "features").glob("*.npz"))) == 4


def test_pair_errors(media, tmp_path):
    with pytest.raises(BadInputError, match="no emotion pairs found for identity 'X999'"):
        collect_pairs([media / "mead"], identity="X999")
    with pytest.raises(BadInputError, match="val-emotion"):
        run_train_expression([media / "mead"], tmp_path / "r", identity="M030",
                             emotions=("neutral", "happy"), val_emotion="sad",
                             config=ExpressionTrainConfig(**TINY), progress=False)


def test_cli_reports_bad_pairs(media, tmp_path, capsys):
    rc = jean_main(["train-expression", str(media / "mead"), "--out", str(tmp_path / "o"),
                    "--identity", "X999", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "no emotion pairs found" in err and "M030" in err
