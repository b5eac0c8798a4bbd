"""Landmark normalisation, landmark autoencoder, audio encoder, InfoNCE, retrieval metric
(jeancore.models.audio, jeancore.metrics.audio; JEAN Sec. 3.1, Eqs. 1-2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jeancore.errors import BadInputError, ConfigError
from jeancore.metrics.audio import retrieval_accuracy, swap_errors
from jeancore.models.audio import (EYE_NOSE, LANDMARK_POINTS, MOUTH, AudioAttention,
                                   AudioEncoder, LandmarkAutoencoder, cosine_logits, info_nce,
                                   landmark_template, mouth_swap_loss, normalize_landmarks)


@pytest.fixture(scope="module")
def real_points(preprocessed):
    """iBUG-68 dlib landmarks of 8 s of Obama, float32 [200, 68, 2] pixels."""
    with np.load(preprocessed("obama_8s_128").root / "landmarks.npz") as z:
        return z["points"].astype(np.float32)


def test_point_sets():
    assert list(LANDMARK_POINTS) == list(range(17, 68))
    assert len(range(51)[EYE_NOSE]) == 31 and len(range(51)[MOUTH]) == 20
    assert LANDMARK_POINTS[MOUTH][0] == 48 and LANDMARK_POINTS[MOUTH][-1] == 67


def test_template_units():
    t = landmark_template().double()
    assert t.shape == (51, 2)
    assert torch.allclose(t[EYE_NOSE].mean(0), torch.zeros(2, dtype=t.dtype), atol=1e-6)
    iod = (t[36 - 17:42 - 17].mean(0) - t[42 - 17:48 - 17].mean(0)).norm()
    assert math.isclose(float(iod), 1.0, rel_tol=1e-5)
    # image convention: the mouth is below (larger y) the eyes, the left eye (36-41) is left
    assert t[MOUTH, 1].mean() > t[36 - 17:48 - 17, 1].mean()
    assert t[36 - 17:42 - 17, 0].mean() < t[42 - 17:48 - 17, 0].mean()


def test_normalize_removes_similarity_transform(real_points):
    n = normalize_landmarks(real_points)
    assert n.shape == (200, 51, 2) and n.dtype == torch.float32
    th = 0.4
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], np.float32)
    moved = real_points @ rot.T * 2.3 + np.array([40.0, -17.0], np.float32)
    assert torch.allclose(normalize_landmarks(moved), n, atol=2e-5)
    # tensor input, single frame, 51-point input give the same
    assert torch.allclose(normalize_landmarks(torch.from_numpy(real_points[3])), n[3], atol=1e-6)
    assert torch.allclose(normalize_landmarks(real_points[:, 17:]), n, atol=1e-6)
    # normalised eye-nose points sit on the template (units: inter-ocular distance)
    err = (n[:, EYE_NOSE] - landmark_template()[EYE_NOSE]).norm(dim=-1).mean()
    assert err < 0.1


def test_normalize_mouth_does_not_move_alignment(real_points):
    a = real_points[:5].copy()
    b = a.copy()
    b[:, 48:68, 1] += 15.0  # open the mouth by 15 px
    na, nb = normalize_landmarks(a), normalize_landmarks(b)
    assert torch.allclose(na[:, EYE_NOSE], nb[:, EYE_NOSE], atol=1e-5)
    iod_px = np.linalg.norm(a[:, 36:42].mean(1) - a[:, 42:48].mean(1), axis=1)
    shift = (nb[:, MOUTH, 1] - na[:, MOUTH, 1]).mean(1).numpy()
    # 15 px in inter-ocular units (the similarity fit scales by ~1 / iod)
    np.testing.assert_allclose(shift, 15.0 / iod_px, rtol=0.15)


def test_normalize_errors():
    with pytest.raises(BadInputError, match=r"\[T, 68, 2\]"):
        normalize_landmarks(np.zeros((3, 60, 2), np.float32))
    bad = np.zeros((2, 68, 2), np.float32)
    with pytest.raises(BadInputError, match="degenerate"):
        normalize_landmarks(bad)
    bad[0, 30, 0] = np.nan  # a nose point (jaw points 0-16 are dropped)
    with pytest.raises(BadInputError, match="NaN"):
        normalize_landmarks(bad)


def test_autoencoder_shapes_config_and_swap_targets(real_points):
    torch.manual_seed(0)
    ae = LandmarkAutoencoder()
    assert [m.out_features for m in ae.encoder if isinstance(m, torch.nn.Linear)] == \
        [256, 256, 128, 128]
    assert [m.out_features for m in ae.decoder if isinstance(m, torch.nn.Linear)] == \
        [128, 256, 256, 102]
    assert all(m.negative_slope == 0.02 for m in ae.encoder if isinstance(m, torch.nn.LeakyReLU))
    pts = normalize_landmarks(real_points)
    ae.set_normalization(pts)
    e_f, e_m = ae.encode(pts[:4])
    assert e_f.shape == e_m.shape == (4, 64)
    assert ae.decode(e_f, e_m).shape == (4, 51, 2)
    clone = LandmarkAutoencoder.from_config(ae.config())
    clone.load_state_dict(ae.state_dict())
    assert torch.equal(clone(pts[:4]), ae(pts[:4]))
    a, b = pts[:6], pts[100:106]
    swap = torch.tensor([True, False, True, False, True, True])
    ra, rb, ta, tb = ae.swap_forward(a, b, swap)
    # mixed ground truths of Eq. 1: eye-nose of A, mouth of the frame whose e_m was used
    assert torch.equal(ta[:, EYE_NOSE], a[:, EYE_NOSE]) and torch.equal(tb[:, EYE_NOSE],
                                                                       b[:, EYE_NOSE])
    assert torch.equal(ta[swap][:, MOUTH], b[swap][:, MOUTH])
    assert torch.equal(ta[~swap][:, MOUTH], a[~swap][:, MOUTH])
    assert torch.equal(tb[swap][:, MOUTH], a[swap][:, MOUTH])
    # swapped decodes equal LD(e_f^A, e_m^B)
    fa, ma = ae.encode(a)
    fb, mb = ae.encode(b)
    assert torch.allclose(ra[swap], ae.decode(fa, mb)[swap], atol=1e-6)
    assert torch.allclose(rb[~swap], ae.decode(fb, mb)[~swap], atol=1e-6)
    loss = mouth_swap_loss(ra, rb, ta, tb)
    assert math.isclose(float(loss.detach()), float(((ra - ta).abs().mean() + (rb - tb).abs().mean()).detach()),
                        rel_tol=1e-6)


def test_center_codes_is_exact(real_points):
    torch.manual_seed(1)
    ae = LandmarkAutoencoder()
    pts = normalize_landmarks(real_points)
    ae.set_normalization(pts)
    before = ae.decode(ae.encode(pts[:8])[0], ae.encode(pts[8:16])[1]).detach()
    ae.center_codes(pts)
    e_f, e_m = ae.encode(pts)
    assert e_m.mean(0).abs().max() < 1e-4 and torch.allclose(e_m.std(0), torch.ones(64),
                                                             atol=1e-3)
    after = ae.decode(ae.encode(pts[:8])[0], ae.encode(pts[8:16])[1]).detach()
    assert torch.allclose(before, after, atol=1e-5)


def test_autoencoder_errors():
    with pytest.raises(ConfigError):
        LandmarkAutoencoder(n_mouth=51)
    with pytest.raises(ConfigError):
        LandmarkAutoencoder.from_config({"n_points": 51, "bogus": 1})
    ae = LandmarkAutoencoder()
    with pytest.raises(BadInputError, match=r"\[B, 51, 2\]"):
        ae.encode(torch.zeros(2, 68, 2))
    with pytest.raises(BadInputError):
        ae.decode(torch.zeros(2, 64), torch.zeros(3, 64))


def test_audio_encoder_is_adnerf_audionet():
    torch.manual_seed(0)
    enc = AudioEncoder(80)
    convs = [m for m in enc.conv if isinstance(m, torch.nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == \
        [(80, 32, 2), (32, 32, 2), (32, 64, 2), (64, 64, 2)]
    x = torch.randn(5, 16, 80)
    out = enc(x)
    assert out.shape == (5, 64)
    # each window is encoded on its own (no mixing across the batch)
    assert torch.allclose(enc(x[2:3]), out[2:3], atol=1e-6)
    clone = AudioEncoder.from_config(enc.config())
    clone.load_state_dict(enc.state_dict())
    assert torch.equal(clone(x), out)
    assert (enc.in_dim, enc.window, enc.out_dim) == (80, 16, 64)
    with pytest.raises(BadInputError, match="D=80"):
        enc(torch.randn(2, 16, 29))
    assert AudioEncoder(29, window=8, out_dim=32)(torch.randn(3, 8, 29)).shape == (3, 32)


def test_audio_attention_is_a_convex_combination():
    torch.manual_seed(0)
    att = AudioAttention(64, 8)
    codes = torch.randn(4, 8, 64)
    out = att(codes)
    assert out.shape == (4, 64)
    lo, hi = codes.min(1).values, codes.max(1).values
    assert bool(((out >= lo - 1e-5) & (out <= hi + 1e-5)).all())
    const = torch.randn(1, 64).expand(8, 64)
    assert torch.allclose(att.smooth(const.contiguous()), const, atol=1e-5)


def test_info_nce_known_values():
    # orthogonal unit codes: d = cos / tau
    e_m = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[2.0, 0.0], [0.0, 3.0]])          # cos 1
    neg = torch.tensor([[[0.0, 1.0]], [[1.0, 1.0]]])      # cos 0 and 1/sqrt(2)
    tau = 0.1
    expect = np.mean([-math.log(math.exp(10) / (math.exp(10) + math.exp(0))),
                      -math.log(math.exp(10) / (math.exp(10) + math.exp(10 / math.sqrt(2))))])
    assert math.isclose(float(info_nce(e_m, pos, neg, tau=tau)), expect, rel_tol=1e-5)
    # in-batch: the other anchor's positive joins the negatives (cos 0 for both)
    expect_ib = np.mean([-math.log(math.exp(10) / (math.exp(10) + 1 + 1)),
                         -math.log(math.exp(10) / (math.exp(10) + math.exp(10 / math.sqrt(2))
                                                   + 1))])
    assert math.isclose(float(info_nce(e_m, pos, neg, tau=tau, in_batch=True)), expect_ib,
                        rel_tol=1e-5)
    assert cosine_logits(e_m, pos).shape == (2, 2)
    with pytest.raises(BadInputError, match="negatives"):
        info_nce(e_m, pos)


def test_retrieval_accuracy_known_answers():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(100, 16))
    perfect = retrieval_accuracy(codes, codes, n_candidates=32, trials=5)
    assert perfect["top1"] == 1.0 and perfect["top5"] == 1.0
    assert perfect["chance_top1"] == 1 / 32 and perfect["queries"] == 160
    # each query's own frame ranked last -> never in the top 5
    worst = retrieval_accuracy(codes, -codes, n_candidates=32, trials=5)
    assert worst["top1"] == 0.0 and worst["top5"] == 0.0
    rand = retrieval_accuracy(rng.normal(size=(3200, 16)), rng.normal(size=(3200, 16)),
                              n_candidates=32, trials=200)
    assert abs(rand["top1"] - 1 / 32) < 0.015 and abs(rand["top5"] - 5 / 32) < 0.03
    few = retrieval_accuracy(codes[:20], codes[:20])
    assert few["n_candidates"] == 20 and few["chance_top1"] == 1 / 20
    # per-query detail: the candidate sets (sorted, distinct) and each query's rank, set by set
    q = retrieval_accuracy(codes, -codes, n_candidates=32, trials=5, return_queries=True)
    assert len(q["candidate_sets"]) == 5 and q["query_ranks"].shape == (160,)
    assert all(len(set(c)) == 32 and (np.diff(c) > 0).all() for c in q["candidate_sets"])
    assert (q["query_ranks"] == 31).all()      # own frame ranked last among 32
    assert {k: q[k] for k in worst} == worst    # same draws, same summary
    with pytest.raises(BadInputError):
        retrieval_accuracy(codes[:5], codes[:4])


def test_swap_errors_of_an_ideal_decoder(real_points):
    """An autoencoder whose codes are the points themselves (e_f = eye-nose coordinates,
    e_m = mouth coordinates, padded) swaps perfectly: zero errors."""
    pts = normalize_landmarks(real_points)

    class Ideal(LandmarkAutoencoder):
        def encode(self, p):
            flat = p.flatten(1)
            f = torch.nn.functional.pad(flat[:, :62], (0, 2))
            m = torch.nn.functional.pad(flat[:, 62:], (0, 24))
            return f, m

        def decode(self, f, m):
            return torch.cat([f[:, :62], m[:, :40]], 1).view(-1, 51, 2)

    r = swap_errors(Ideal(), pts[:50], pts[50:100])
    assert r["mouth_error"] < 1e-6 and r["eye_error"] < 1e-6 and r["recon_error"] < 1e-6
    assert r["mouth_distance_ab"] > 0.005
