"""Tests of the expression transformer (``jeancore.models.expression``, JEAN Sec. 3.2) and its
training loop (``jeancore.train.expression``).

Unit tests run a small random model in eval mode (no dropout) and check shapes, the padding
and causal masks, the START/END tokens, the swap logic and per-frame inference codes. The
training tests use real per-frame emotion features of two MEAD clips of M030 saying the same
sentence neutral and sad (shared media), DTW-aligned like the paper's training pairs, and check
that Eq. 4's L1 drops clearly, and that a run killed after a checkpoint and resumed takes
exactly the steps of an uninterrupted run.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from jeancore.errors import BadInputError, ConfigError
from jeancore.models import ExpressionTransformer, expression_loss
from jeancore.models.expression import ExpressionOutput
from jeancore.train import (ExpressionTrainConfig, evaluate_expression, load_expression_model,
                            train_expression)
from jeancore.train import expression as train_mod

D = 24  # feature width of the unit-test model
SMALL = {"in_dim": D, "hidden": 32, "d_model": 32, "n_layers": 2, "n_heads": 4, "ff_dim": 48,
         "dropout": 0.2, "window": 8, "lip_dim": 16}
TINY_TRAIN = {"hidden": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "ff_dim": 16,
              "lip_dim": 8, "window": 4, "stride": 2, "batch_size": 8, "lr": 3e-3,
              "device": "cpu", "log_every": 2}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return ExpressionTransformer(**SMALL).eval()


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _pairs(lengths, dim=D, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        a = rng.standard_normal((n, dim)).astype(np.float32)
        out.append({"a": a, "b": (a + 0.3 * rng.standard_normal((n, dim))).astype(np.float32),
                    "emotion_a": "neutral", "emotion_b": "sad", "identity": "X"})
    return out


# ---------------------------------------------------------------------------------------------
# shapes, masks, tokens
# ---------------------------------------------------------------------------------------------

def test_shapes(model):
    x = _x(3, 8, D)
    e_l, e_e = model.encode(x)
    assert e_l.shape == (3, 8, 16) and e_e.shape == (3, 8, 16)
    recon, end = model.decode(model.memory(e_l, e_e), x)
    assert recon.shape == (3, 8, D) and end.shape == (3, 9)
    out = model(x, _x(3, 8, D, seed=1), swap=torch.tensor([True, False, True]))
    assert isinstance(out, ExpressionOutput)
    assert out.recon_a.shape == out.recon_b.shape == out.target_a.shape == (3, 8, D)
    assert out.end_a.shape == (3, 9) and out.lip_b.shape == (3, 8, 16)
    # windows of another length work too (sinusoidal positions)
    assert model.encode(_x(2, 5, D))[1].shape == (2, 5, 16)
    # paper defaults: 128 -> 128 = 64 lip + 64 expression, omega 8
    m = ExpressionTransformer()
    assert (m.in_dim, m.d_model, m.lip_dim, m.expr_dim, m.window, m.n_layers, m.n_heads) == \
        (128, 128, 64, 64, 8, 3, 8)


def test_encoder_padding_mask(model):
    x = _x(2, 8, D)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[0, :3] = True   # padding at the start (edge windows of frame_codes)
    pad[1, 5:] = True   # and at the end
    x2 = x.clone()
    x2[pad] = 100.0 * _x(int(pad.sum()), D, seed=5)
    with torch.no_grad():
        (l1, e1), (l2, e2) = model.encode(x, pad), model.encode(x2, pad)
        torch.testing.assert_close(e1[~pad], e2[~pad], rtol=0, atol=1e-5)
        torch.testing.assert_close(l1[~pad], l2[~pad], rtol=0, atol=1e-5)
        # without the mask the padded values do matter
        assert not torch.allclose(model.encode(x)[1][~pad], model.encode(x2)[1][~pad],
                                  atol=1e-3)


def test_forward_padding_mask(model):
    xa, xb = _x(2, 8, D), _x(2, 8, D, seed=1)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[1, 6:] = True
    xa2, xb2 = xa.clone(), xb.clone()
    xa2[pad], xb2[pad] = 50.0, -50.0
    with torch.no_grad():
        o1 = model(xa, xb, pad, swap=torch.tensor([False, True]))
        o2 = model(xa2, xb2, pad, swap=torch.tensor([False, True]))
    for r1, r2 in ((o1.recon_a, o2.recon_a), (o1.recon_b, o2.recon_b)):
        torch.testing.assert_close(r1[~pad], r2[~pad], rtol=0, atol=1e-5)
    # END logits up to position n (= valid frames) are unaffected as well
    torch.testing.assert_close(o1.end_a[1, :7], o2.end_a[1, :7], rtol=0, atol=1e-5)
    # the loss ignores padded frames
    l1, l2 = expression_loss(o1, pad), expression_loss(o2, pad)
    torch.testing.assert_close(l1["total"], l2["total"], rtol=0, atol=1e-5)


def test_causal_decoder_and_start_token(model):
    x = _x(2, 8, D)
    with torch.no_grad():
        mem = model.memory(*model.encode(x))
        r1, end1 = model.decode(mem, x)
        j = 4
        x2 = x.clone()
        x2[:, j] += 3.0                     # change frame x_{j+1}
        r2, end2 = model.decode(mem, x2)
        # output i predicts x_{i+1} from START, x_1..x_i: outputs 0..j do not see frame j
        torch.testing.assert_close(r1[:, : j + 1], r2[:, : j + 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(end1[:, : j + 1], end2[:, : j + 1], rtol=0, atol=1e-5)
        assert (r1[:, j + 1:] - r2[:, j + 1:]).abs().max() > 1e-3
        # START: the first output depends on the memory only
        r3, _ = model.decode(mem, _x(2, 8, D, seed=9))
        torch.testing.assert_close(r1[:, 0], r3[:, 0], rtol=0, atol=1e-5)
        # greedy generation = teacher forcing on its own outputs (eval mode)
        frames, ends = model.generate(mem)
        assert frames.shape == (2, 8, D) and ends.shape == (2, 9)
        torch.testing.assert_close(frames[:, 0], r1[:, 0], rtol=0, atol=1e-5)
        r4, end4 = model.decode(mem, frames)
        torch.testing.assert_close(r4, frames, rtol=0, atol=1e-4)
        torch.testing.assert_close(end4, ends, rtol=0, atol=1e-4)
        assert model.generate(mem, length=3)[0].shape == (2, 3, D)


def test_end_token_loss():
    """END is a stop logit: target 1 at position n (after the last valid frame), 0 before,
    ignored after."""
    b, w = 2, 5
    z = torch.zeros(b, w, D)
    pad = torch.zeros(b, w, dtype=torch.bool)
    pad[1, 3:] = True                       # n = 5 and n = 3
    big = 30.0
    good = torch.full((b, w + 1), -big)
    good[0, 5] = good[1, 3] = big
    good[1, 4:] = 123.0                     # after END: ignored
    codes = torch.zeros(b, w, 1)
    out = ExpressionOutput(z, z, z, z, good, good, codes, codes, codes, codes,
                           torch.zeros(b, dtype=torch.bool))
    assert float(expression_loss(out, pad)["end"]) < 1e-6
    bad = good.clone()
    bad[0, 4], bad[0, 5] = big, -big        # stops one frame early
    out = out._replace(end_a=bad, end_b=bad)
    assert float(expression_loss(out, pad)["end"]) > 1.0
    parts = expression_loss(out, pad, end_weight=0.5)
    torch.testing.assert_close(parts["total"], parts["l1"] + 0.5 * parts["end"])


# ---------------------------------------------------------------------------------------------
# swap
# ---------------------------------------------------------------------------------------------

def test_swap_logic(model):
    xa, xb = _x(3, 8, D), _x(3, 8, D, seed=1)
    with torch.no_grad():
        la, ea = model.encode(xa)
        lb, eb = model.encode(xb)
        out = model(xa, xb, swap=torch.ones(3, dtype=torch.bool))
        torch.testing.assert_close(out.lip_a, la, rtol=0, atol=1e-5)
        torch.testing.assert_close(out.expr_b, eb, rtol=0, atol=1e-5)
        # swapped: LD(e_l^A, e_e^B) reconstructs B (same speech content, B's expression)
        ra, enda = model.decode(model.memory(la, eb), xb)
        rb, _ = model.decode(model.memory(lb, ea), xa)
        torch.testing.assert_close(out.recon_a, ra, rtol=0, atol=1e-5)
        torch.testing.assert_close(out.recon_b, rb, rtol=0, atol=1e-5)
        torch.testing.assert_close(out.end_a, enda, rtol=0, atol=1e-5)
        assert torch.equal(out.target_a, xb) and torch.equal(out.target_b, xa)

        out = model(xa, xb, swap=torch.zeros(3, dtype=torch.bool))
        ra, _ = model.decode(model.memory(la, ea), xa)
        rb, _ = model.decode(model.memory(lb, eb), xb)
        torch.testing.assert_close(out.recon_a, ra, rtol=0, atol=1e-5)
        torch.testing.assert_close(out.recon_b, rb, rtol=0, atol=1e-5)
        assert torch.equal(out.target_a, xa) and torch.equal(out.target_b, xb)
        torch.testing.assert_close(model(xa, xb).recon_a, out.recon_a, rtol=0, atol=1e-6)

        mixed = model(xa, xb, swap=torch.tensor([True, False, True]))
        swapped = model(xa, xb, swap=True)
        torch.testing.assert_close(mixed.recon_a[[0, 2]], swapped.recon_a[[0, 2]], rtol=0,
                                   atol=1e-5)
        torch.testing.assert_close(mixed.recon_a[1], out.recon_a[1], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# per-frame inference codes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t_len", [1, 3, 8, 50])
def test_expression_codes_shapes(model, t_len):
    feats = _x(t_len, D).numpy()
    codes = model.expression_codes(feats)
    assert isinstance(codes, np.ndarray) and codes.shape == (t_len, 16)
    assert codes.dtype == np.float32 and np.isfinite(codes).all()
    assert model.lip_codes(feats).shape == (t_len, 16)
    assert model.expression_codes(torch.from_numpy(feats)).shape == (t_len, 16)


def test_expression_codes_windows(model):
    model.train()                           # frame_codes switches to eval and back
    x = _x(50, D)
    codes = model.expression_codes(x)
    assert model.training
    model.eval()
    with torch.no_grad():
        # interior frame t: middle output (index w // 2 = 4) of frames t-4 .. t+3
        t = 20
        torch.testing.assert_close(codes[t], model.encode(x[None, t - 4:t + 4])[1][0, 4],
                                   rtol=0, atol=1e-5)
        # edge frame 1: frames -3 .. 4, the three outside the clip padded
        xw = torch.cat([torch.zeros(3, D), x[:5]])[None]
        pad = torch.tensor([[True] * 3 + [False] * 5])
        torch.testing.assert_close(codes[1], model.encode(xw, pad)[1][0, 4], rtol=0, atol=1e-5)
    # a change at frame 40 only moves the codes of frames whose window holds it (37 .. 44)
    x2 = x.clone()
    x2[40] += 5.0
    codes2 = model.expression_codes(x2)
    near = torch.zeros(50, dtype=torch.bool)
    near[37:45] = True
    torch.testing.assert_close(codes[~near], codes2[~near], rtol=0, atol=1e-6)
    assert ((codes[near] - codes2[near]).abs().amax(1) > 1e-4).all()
    # batching does not matter
    torch.testing.assert_close(model.expression_codes(x, batch_size=7), codes, rtol=0,
                               atol=1e-5)


# ---------------------------------------------------------------------------------------------
# training on real features
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mead_pair(media):
    """M030 saying sentence 001 neutral and sad: emotion features [N, 128] of both clips,
    DTW-aligned (Eq. 3)."""
    from jeancore.data.emotion import emotion_features
    from jeancore.data.landmarks import DlibLandmarkDetector
    from jeancore.data.video import iter_frames
    from jeancore.ops import align

    detector = DlibLandmarkDetector()
    feats = []
    for name in ("M030_neutral_level1_001.mp4", "M030_sad_level3_001.mp4"):
        frames = np.stack(list(iter_frames(media / "mead" / name, 25)))
        marks = [detector(f) for f in frames]
        keep = [i for i, m in enumerate(marks) if m is not None]
        assert len(keep) > 0.9 * len(frames), f"dlib missed faces in {name}"
        f, _ = emotion_features(frames[keep], np.stack([marks[i] for i in keep]))
        feats.append(torch.from_numpy(f))
    a, b, _ = align(feats[0], feats[1])
    assert a.shape == b.shape and a.shape[0] >= max(len(feats[0]), len(feats[1]))
    return {"a": a.numpy(), "b": b.numpy(), "emotion_a": "neutral", "emotion_b": "sad",
            "identity": "M030"}


def test_training_reduces_l1_on_mead(mead_pair, tmp_path):
    pairs = [mead_pair]
    cfg = ExpressionTrainConfig(epochs=50, max_steps=150, batch_size=16, lr=2e-3, d_model=64,
                                hidden=128, ff_dim=128, n_layers=1, n_heads=4, lip_dim=32,
                                device="cpu", log_every=25, checkpoint_every=1000, seed=0)
    init = train_expression(pairs, tmp_path / "init", ExpressionTrainConfig(
        **{**cfg.__dict__, "max_steps": 0}), progress=False)
    assert init["step"] == 0
    before = evaluate_expression(load_expression_model(tmp_path / "init"), pairs)
    res = train_expression(pairs, tmp_path / "run", cfg, val_pairs=pairs, progress=False)
    model = load_expression_model(tmp_path / "run", in_dim=128, d_model=64)
    after = evaluate_expression(model, pairs)
    a, b = mead_pair["a"], mead_pair["b"]
    mean_pred = float(np.abs(a - a.mean(0)).mean() + np.abs(b - b.mean(0)).mean())
    first = np.mean([h[1] for h in res["history"][:10]])
    last = np.mean([h[1] for h in res["history"][-10:]])
    print(f"\nMEAD M030 neutral/sad ({a.shape[0]} aligned frames, {res['n_windows']} windows): "
          f"eval L1 {before['l1']:.4f} -> {after['l1']:.4f} (swapped {after['l1_swap']:.4f}); "
          f"train L1 first 10 steps {first:.4f}, last 10 {last:.4f}; "
          f"per-channel-mean predictor {mean_pred:.4f}")
    assert res["step"] == 150
    assert after["l1"] < 0.5 * before["l1"] and last < 0.5 * first
    assert after["l1"] < mean_pred and after["l1_swap"] < mean_pred
    assert res["val_l1"] == pytest.approx(after["l1"], rel=1e-5)
    # END logits: stop after omega frames, not before
    with torch.no_grad():
        x = torch.from_numpy(a[:64]).unfold(0, 8, 8).transpose(1, 2)   # [8, 8, 128]
        out = model(x, torch.from_numpy(b[:64]).unfold(0, 8, 8).transpose(1, 2))
    assert (out.end_a[:, 8] > 0).all() and (out.end_a[:, :8] < 0).all()
    # inference codes for the whole clip, one per frame
    codes = model.expression_codes(a)
    assert codes.shape == (a.shape[0], 32) and np.isfinite(codes).all()


# ---------------------------------------------------------------------------------------------
# checkpoints and exact resume
# ---------------------------------------------------------------------------------------------

def test_resume_is_exact(tmp_path, monkeypatch):
    pairs = _pairs([21, 14, 3], dim=12)        # a pair shorter than omega: padded window
    val = _pairs([9], dim=12, seed=1)
    cfg = ExpressionTrainConfig(epochs=4, checkpoint_every=5, seed=3, **TINY_TRAIN)
    torch.manual_seed(123)
    caller = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    full = train_expression(pairs, tmp_path / "full", cfg, val_pairs=val, progress=False)
    assert torch.equal(torch.get_rng_state(), caller[0])          # caller's RNG untouched
    assert np.array_equal(np.random.get_state()[1], caller[1]) and random.getstate() == caller[2]
    spe = full["steps_per_epoch"]
    total = 4 * spe
    # 21 frames: starts 0, 2, .., 16 and 17 (the tail); 14: 0, 2, .., 10; 3: one padded window
    assert full["n_windows"] == 10 + 6 + 1 and spe == 3 and full["step"] == total
    assert "val_l1" in full and "train_l1" in full

    # "kill" the run during step 7 (last checkpoint: step 5, mid-epoch)
    real_loss = train_mod.expression_loss
    calls = {"n": 0}

    def dying_loss(*args, **kwargs):
        if len(args) == 3:                       # training steps (validation passes 2 args)
            calls["n"] += 1
            if calls["n"] == 7:
                raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_mod, "expression_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        train_expression(pairs, tmp_path / "resumed", cfg, val_pairs=val, progress=False)
    monkeypatch.setattr(train_mod, "expression_loss", real_loss)
    ckpt_path = tmp_path / "resumed" / "checkpoint.pt"
    assert sorted(p.name for p in ckpt_path.parent.iterdir()) == ["checkpoint.pt", "tb"]
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["step"] == 5 and ckpt["model_config"]["d_model"] == 16
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python"} and "optimizer" in ckpt

    res = train_expression(pairs, tmp_path / "resumed", cfg, val_pairs=val, resume=True,
                           progress=False)
    assert [h[0] for h in res["history"]] == list(range(6, total + 1))
    assert res["history"] == full["history"][5:]                  # identical losses
    m_full = load_expression_model(tmp_path / "full")
    m_res = load_expression_model(tmp_path / "resumed")
    for (k, p1), p2 in zip(m_full.state_dict().items(), m_res.state_dict().values(), strict=True):
        assert torch.equal(p1, p2), k
    for key in ("train_l1", "val_l1", "val_l1_swap", "loss"):
        assert res[key] == pytest.approx(full[key], rel=1e-6), key

    # more epochs on resume continue the same run; TensorBoard scalars are written
    more = train_expression(pairs, tmp_path / "resumed", ExpressionTrainConfig(
        epochs=5, checkpoint_every=5, seed=3, **TINY_TRAIN), resume=True, progress=False)
    assert more["history"][0][0] == total + 1 and more["step"] == 5 * spe
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(str(tmp_path / "full" / "tb")).Reload().Tags()["scalars"]
    assert {"train/l1", "train/end", "val/l1", "val/l1_swap"} <= set(tags)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_model_bad_input(model):
    with pytest.raises(BadInputError, match="in_dim=24"):
        model.encode(_x(2, 8, D + 1))
    with pytest.raises(BadInputError, match="same shape"):
        model(_x(2, 8, D), _x(2, 7, D))
    with pytest.raises(BadInputError, match="at least one valid"):
        model.encode(_x(1, 4, D), torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(BadInputError, match="end of each window"):
        model(_x(1, 4, D), _x(1, 4, D), torch.tensor([[True, False, False, False]]))
    with pytest.raises(BadInputError, match="features must be"):
        model.expression_codes(np.zeros((5, D + 1), np.float32))
    with pytest.raises(ConfigError, match="must divide"):
        ExpressionTransformer(d_model=30, n_heads=8)
    with pytest.raises(ConfigError, match="lip_dim"):
        ExpressionTransformer(d_model=32, n_heads=4, lip_dim=32)


def test_train_bad_input(tmp_path):
    cfg = ExpressionTrainConfig(epochs=1, **TINY_TRAIN)
    good = _pairs([10], dim=12)[0]
    cases = [
        ([], "empty"),
        ([{"a": good["a"], "b": good["b"][:, :8]}], "different feature widths"),
        ([{"a": good["a"], "b": good["b"][:7]}], "different lengths"),
        ([good, _pairs([10], dim=10)[0]], "different feature widths"),
        ([{"a": good["a"]}], "no 'b'"),
        ([{"a": np.full((5, 12), np.nan, np.float32), "b": np.zeros((5, 12), np.float32)}],
         "NaN"),
    ]
    for pairs, msg in cases:
        with pytest.raises(BadInputError, match=msg):
            train_expression(pairs, tmp_path / "bad", cfg, progress=False)
    with pytest.raises(BadInputError, match="24-d"):
        train_expression([good], tmp_path / "bad", ExpressionTrainConfig(
            epochs=1, in_dim=24, **TINY_TRAIN), progress=False)
    with pytest.raises(ConfigError, match="swap_prob"):
        train_expression([good], tmp_path / "bad", ExpressionTrainConfig(
            epochs=1, swap_prob=1.5, **TINY_TRAIN), progress=False)
    with pytest.raises(FileNotFoundError):
        train_expression([good], tmp_path / "none", cfg, resume=True, progress=False)


def test_checkpoint_errors(tmp_path):
    pairs = _pairs([10], dim=12)
    cfg = ExpressionTrainConfig(epochs=1, **TINY_TRAIN)
    train_expression(pairs, tmp_path / "run", cfg, progress=False)
    path = tmp_path / "run" / "checkpoint.pt"
    assert load_expression_model(path, in_dim=12, lip_dim=8).in_dim == 12
    with pytest.raises(FileNotFoundError):
        load_expression_model(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(BadInputError, match="not a readable"):
        load_expression_model(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(BadInputError, match="not an expression-transformer checkpoint"):
        load_expression_model(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="d_model=16 \\(expected 128\\)"):
        load_expression_model(path, d_model=128)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_config"]["d_model"] = 32
    torch.save(ckpt, tmp_path / "tampered.pt")
    with pytest.raises(BadInputError, match="do not fit"):
        load_expression_model(tmp_path / "tampered.pt")
    # resuming with other widths or another sample order is refused
    with pytest.raises(ConfigError, match="other model widths"):
        train_expression(pairs, tmp_path / "run", ExpressionTrainConfig(
            epochs=2, **{**TINY_TRAIN, "d_model": 32}), resume=True, progress=False)
    with pytest.raises(ConfigError, match="sample-order"):
        train_expression(pairs, tmp_path / "run", ExpressionTrainConfig(
            epochs=2, seed=7, **TINY_TRAIN), resume=True, progress=False)
    with pytest.raises(BadInputError, match="windows"):
        train_expression(_pairs([30], dim=12), tmp_path / "run", ExpressionTrainConfig(
            epochs=2, **TINY_TRAIN), resume=True, progress=False)


def test_export_and_fine_tune_from_init(tmp_path):
    """A slim float16 export loads with the same codes (to fp16 rounding); init= starts a new
    run from those weights (same widths, ignoring the config's), and checks the width."""
    from jeancore.train.expression import export_expression_model

    pairs = _pairs([20], dim=12)
    train_expression(pairs, tmp_path / "run", ExpressionTrainConfig(epochs=2, **TINY_TRAIN),
                     progress=False)
    src = load_expression_model(tmp_path / "run")
    dst = export_expression_model(tmp_path / "run", tmp_path / "slim.pt",
                                  provenance={"trained_on": "random pairs"})
    assert dst.stat().st_size < (tmp_path / "run" / "checkpoint.pt").stat().st_size / 2
    slim = load_expression_model(dst)
    assert torch.load(dst, weights_only=True)["provenance"] == {"trained_on": "random pairs"}
    a = pairs[0]["a"]
    ref, got = src.expression_codes(a), slim.expression_codes(a)
    assert np.abs(got - ref).max() < 1e-2 * np.abs(ref).max()
    # fine-tuning: step 0 of a run started from init= is exactly the init model (float16
    # weights converted back to float32), whatever widths the config names
    cfg = ExpressionTrainConfig(epochs=1, max_steps=0, init=str(dst),
                                **{**TINY_TRAIN, "d_model": 64})
    train_expression(pairs, tmp_path / "ft", cfg, progress=False)
    ft = load_expression_model(tmp_path / "ft")
    assert ft.d_model == 16
    for (k, v), w in zip(ft.state_dict().items(), slim.state_dict().values()):
        assert torch.equal(v, w), k
    with pytest.raises(BadInputError, match="takes 12-d features"):
        train_expression(_pairs([20], dim=10), tmp_path / "bad", cfg, progress=False)


def test_shipped_generic_model():
    """The generic model in the package loads by name, takes the 128-d emotion features of
    preprocessing and gives one 64-d expression code per frame."""
    model = load_expression_model("generic")
    assert (model.in_dim, model.expr_dim, model.window) == (128, 64, 8)
    assert load_expression_model(None).config() == model.config()
    codes = model.expression_codes(np.random.default_rng(0).standard_normal((30, 128)))
    assert codes.shape == (30, 64) and np.isfinite(codes).all()
