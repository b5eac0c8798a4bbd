"""Training, evaluation, checkpoints, CLI and bad input of the audio side (jeancore.train.audio;
JEAN Sec. 3.1, Eqs. 1-2) on real clips."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jeancore.cli import main
from jeancore.errors import BadInputError
from jeancore.train.audio import (GENERIC_MODEL, AudioTrainConfig, evaluate_audio,
                                  load_audio_datasets, load_audio_model, train_audio)

REPO = Path(__file__).resolve().parents[1]
FAST = dict(device="cpu", batch_size=64, log_every=2, eval_trials=3)


@pytest.fixture(scope="module")
def clips(preprocessed):
    return preprocessed("obama_8s_128").root, preprocessed("lieu_6s_128").root


def _weights(path):
    ckpt = torch.load(path, weights_only=True)
    return {f"{k}.{n}": v for k in ("audio_encoder", "landmark_ae")
            for n, v in ckpt[k]["state"].items()}


def test_losses_decrease_on_real_data(clips, tmp_path):
    cfg = AudioTrainConfig(ae_epochs=20, audio_epochs=20, negatives=4, **FAST)
    res = train_audio(list(clips), tmp_path / "run", cfg, progress=False, evaluate=False)
    for stage, drop in (("landmark", 0.6), ("audio", 0.97)):
        losses = np.array([l for _, l in res[stage]["history"]])
        assert len(losses) == 20 * res[stage]["steps_per_epoch"]
        first, last = losses[:5].mean(), losses[-5:].mean()  # first / last epoch
        assert last < drop * first, (stage, first, last)
    # InfoNCE with 4 negatives starts near log(5) (untrained codes carry no information)
    assert abs(res["audio"]["history"][0][1] - np.log(5)) < 0.5
    assert (tmp_path / "run" / "model.pt").is_file()
    assert (tmp_path / "run" / "tb" / "landmark").is_dir()
    # one video per identity: every negative comes from the same video, >= 1 s away
    kinds = res["audio"]["negative_kinds"]
    assert kinds["other_video"] == 0 and kinds["same_video_farthest"] == 0
    assert kinds["same_video_far"] == 20 * (180 + 135)  # anchors (each with 4 negatives)


def test_retrieval_beats_chance_and_swap_test(clips, tmp_path):
    """Train on the first 60% of each clip (14 s in all). Retrieval among 32 frames of the
    trained speech beats chance and the untrained encoder; the swap test holds on the last 40%
    (unseen). On the *unseen* 40% these 14 s reach only 1.1-1.7x chance at top-1 (eight
    seeds; mean rank 0.47-0.51 against 0.5): too thin a margin to assert. The shipped model
    (2.4 min of speech) reaches 2.2x on its validation splits (docs/audio.md)."""
    data = load_audio_datasets(list(clips))
    data = [dataclasses.replace(d, val_start=int(0.6 * len(d.landmarks))) for d in data]
    cfg = AudioTrainConfig(ae_epochs=30, audio_epochs=30, negatives=4, **FAST)
    train_audio(data, tmp_path / "run", cfg, progress=False, evaluate=False)
    model = load_audio_model(tmp_path / "run")
    ov = evaluate_audio(model, data, split="train", trials=20)["overall"]
    untrained = load_audio_model(tmp_path / "run")
    torch.manual_seed(123)
    for m in untrained.audio_encoder.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    base = evaluate_audio(untrained, data, split="train", trials=20)["overall"]
    assert ov["chance_top1"] == pytest.approx(1 / 32) and ov["queries"] == 20 * 2 * 32
    assert ov["top1"] > 1.4 * ov["chance_top1"], ov
    assert ov["top5"] > 1.4 * ov["chance_top5"], ov
    assert ov["top5"] > base["top5"] + 0.05, (ov, base)
    # swap test on unseen frames: LD(e_f^A, e_m^B) has B's mouth and A's eyes, far better
    # than a decoder that ignored e_m^B
    sw = evaluate_audio(model, data, split="val", trials=2)["swap"]
    assert sw["mouth_error"] < 0.75 * sw["mouth_distance_ab"], sw
    assert sw["eye_error"] < 0.04, sw  # 4% of the inter-ocular distance


def test_other_video_negatives_and_exact_resume(clips, tmp_path):
    """Two datasets of one identity: negatives come from the other video; a run stopped
    after 3 steps of each stage and resumed equals an uninterrupted run."""
    srcs = [f"spk={clips[0]}", f"spk={clips[1]}"]
    cfg = AudioTrainConfig(ae_epochs=2, audio_epochs=2, negatives=2, **FAST)
    full = train_audio(srcs, tmp_path / "full", cfg, progress=False, evaluate=False)
    kinds = full["audio"]["negative_kinds"]
    assert kinds["other_video"] == 2 * (180 + 135) and kinds["same_video_far"] == 0
    part = dataclasses.replace(cfg, max_steps=3)
    train_audio(srcs, tmp_path / "part", part, progress=False, evaluate=False)
    ck = torch.load(tmp_path / "part" / "audio_encoder.pt", weights_only=True)
    assert ck["step"] == 3 and ck["format"] == "jeancore.audio_training"
    train_audio(srcs, tmp_path / "part", cfg, progress=False, evaluate=False, resume=True)
    a, b = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "part" / "model.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_bad_input(clips, preprocessed, tmp_path):
    no_audio = preprocessed("m030_neutral").root
    with pytest.raises(BadInputError, match="no audio features"):
        train_audio([clips[0], no_audio], tmp_path / "x", AudioTrainConfig(**FAST),
                    progress=False)
    # a dataset with 40 log-mel bands next to one with 80
    narrow = tmp_path / "narrow"
    shutil.copytree(clips[1], narrow, ignore=shutil.ignore_patterns("frames", "head",
                                                                     "parsing"))
    feats = np.load(narrow / "audio_features.npy")[..., :40]
    np.save(narrow / "audio_features.npy", np.ascontiguousarray(feats))
    meta = json.loads((narrow / "meta.json").read_text())
    meta["audio"]["features"]["dim"] = meta["audio"]["features"]["n_mels"] = 40
    meta["audio"]["shape"][-1] = 40
    (narrow / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError, match="different audio features.*dim: 40 vs 80"):
        load_audio_datasets([clips[0], narrow])
    model = load_audio_model("generic")
    with pytest.raises(BadInputError, match="dim 40 .model: 80"):
        model.check_dataset(narrow)
    with pytest.raises(BadInputError, match="no audio features"):
        model.check_dataset(no_audio)
    model.check_dataset(clips[0])  # same kind: fine
    # the CLI turns it into one line and status 2
    assert main(["evaluate-audio", "generic", str(narrow)]) == 2
    with pytest.raises(BadInputError, match="not a jeancore dataset"):
        load_audio_datasets([tmp_path])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="not a readable"):
        load_audio_model(bad)


def test_generic_model_and_cli(clips, tmp_path, capsys):
    assert GENERIC_MODEL.is_file() and GENERIC_MODEL.stat().st_size < 5e6
    m = load_audio_model()
    assert m.features["kind"] == "logmel" and m.audio_encoder.in_dim == 80
    assert m.audio_encoder.window == 16 and m.audio_encoder.out_dim == 64
    assert not m.audio_encoder.training
    # the shipped model transfers to a clip it never saw (this 8 s Obama cut is part of the
    # obama training video, but the 2nd half of lieu's 6 s and the val split are unseen)
    assert main(["evaluate-audio", "generic", str(clips[0]), str(clips[1]),
                 "--trials", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["datasets"]) == {clips[0].name, clips[1].name}
    assert out["swap"]["mouth_error"] < out["swap"]["mouth_distance_ab"]
    run = tmp_path / "run"
    assert main(["train-audio", f"obama={clips[0]}", str(clips[1]), "--out", str(run),
                 "--ae-epochs", "1", "--audio-epochs", "1", "--batch-size", "128",
                 "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "model:" in printed
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["datasets"][0]["identity"] == "obama"
    assert "top1" in metrics["evaluation"]["overall"]
    assert load_audio_model(run).features == m.features
