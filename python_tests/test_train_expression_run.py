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


def test_plot_expression(media, tmp_path, capsys):
    """Train a tiny model, then `jean plot-expression`: embedding PNGs and the interpolation."""
    run = tmp_path / "run"
    run_train_expression([media / "mead"], run, identity="M030",
                         emotions=("neutral", "happy", "sad"), baselines=False,
                         config=ExpressionTrainConfig(**TINY), progress=False)
    rc = jean_main(["plot-expression", str(run), str(media / "mead"), "--out",
                    str(tmp_path / "plots"), "--identity", "M030", "--method", "pca"])
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["expression_codes.png", "interpolation_neutral_happy.png", "lip_codes.png"]
    assert all((tmp_path / "plots" / n).stat().st_size > 5000 for n in names)
    from jeancore.data.emotion import load_emotion_cnn
    from jeancore.data.pairs import emotion_sequence
    from jeancore.metrics.expression_plots import interpolate_emotions

    f = {e: emotion_sequence(media / f"mead/M030_{e}_001.mp4", cache_dir=run / "features")
         ["features"] for e in ("neutral_level1", "happy_level3")}
    probs = interpolate_emotions(load_expression_model(run / "checkpoint.pt"),
                                 load_emotion_cnn(), f["neutral_level1"], f["happy_level3"],
                                 steps=5)
    assert probs.shape == (5, 7)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


def test_classify_pooled_matches_the_network_mostly(media):
    """The pooled-feature head (exact for constant maps) agrees with the network's top class
    on most real frames."""
    import torch

    from jeancore.data.emotion import load_emotion_cnn
    from jeancore.data.pairs import emotion_sequence

    m = load_emotion_cnn()
    s = emotion_sequence(media / "mead/M030_sad_level3_001.mp4")
    p = m.classify_pooled(torch.from_numpy(s["features"])).detach().numpy()
    agree = (p.argmax(1) == s["probs"].argmax(1)).mean()
    print(f"classify_pooled top-class agreement on M030 sad: {agree:.3f}")
    assert agree > 0.8
    # exact on a spatially constant map: the head's own computation
    x = torch.randn(2, 128, 1, 1).expand(2, 128, 4, 4)
    ref = torch.softmax(m.classifier(x).mean(dim=(2, 3)), 1)
    torch.testing.assert_close(m.classify_pooled(x[:, :, 0, 0]), ref, atol=1e-5, rtol=1e-5)


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
