"""Metrics of rendered faces (jeancore.metrics.face) and the evaluation reports
(jeancore.render.evaluate): each metric against a value computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jeancore.errors import BadInputError
from jeancore.metrics import face as F
from jeancore.render import evaluate as E


# ------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------
def test_psnr_of_known_mse():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    b = a.copy()
    b[0] += 16          # frame 0: MSE (16/255)^2
    b[1, :8] += 32      # frame 1: half the pixels off by 32/255 -> MSE (32/255)^2 / 2
    expect0 = 10 * math.log10(1 / (16 / 255) ** 2)
    expect1 = 10 * math.log10(1 / ((32 / 255) ** 2 / 2))
    assert F.psnr(b[0], a[0]) == pytest.approx(expect0, abs=1e-4)
    assert F.psnr(b, a) == pytest.approx((expect0 + expect1) / 2, abs=1e-4)
    # float input in [0, 1] and torch tensors give the same
    assert F.psnr(torch.from_numpy(b / 255.0), a / 255.0) == pytest.approx(
        (expect0 + expect1) / 2, abs=1e-4)
    assert F.psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="differ"):
        F.psnr(a, a[:, :8])


def test_ssim_identical_and_constant_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert F.ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    # constant images a and b: no variance, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, 0.4, 0.01 ** 2
    ia = np.full((1, 24, 24, 3), a, np.float32)
    ib = np.full((1, 24, 24, 3), b, np.float32)
    assert F.ssim(ia, ib) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-5)
    assert F.ssim(x, 255 - x) < 0.2
    with pytest.raises(ValueError, match="11 x 11"):
        F.ssim(x[:, :8, :8], x[:, :8, :8])


def test_face_box_and_crop():
    lm = np.zeros((3, 68, 2))
    lm[..., 0] = np.linspace(40, 80, 68)   # landmark box 40..80 x 50..90: extent 40
    lm[..., 1] = np.linspace(50, 90, 68)
    lm[1] = np.nan                          # frames without a face are ignored
    x0, y0, s = F.face_box(lm, (200, 150))
    # crop_boxes: side 1.25 * 40 = 50, centre (60, 70 - 0.1 * 40) = (60, 66)
    assert (x0, y0, s) == (35, 41, 50)
    # too big for the frame: shrunk to the frame and kept inside
    assert F.face_box(lm * 3, (100, 120))[2] == 100
    frames = np.arange(2 * 150 * 200 * 3, dtype=np.int64).reshape(2, 150, 200, 3)
    crop = F.crop_frames(frames, (x0, y0, s))
    np.testing.assert_array_equal(crop, frames[:, 41:91, 35:85])
    with pytest.raises(BadInputError):
        F.face_box(np.full((2, 68, 2), np.nan), (100, 100))
    with pytest.raises(ValueError, match="inside"):
        F.crop_frames(frames, (190, 0, 20))


# ------------------------------------------------------------------------------------------
# landmarks
# ------------------------------------------------------------------------------------------
def _landmarks(t=5, seed=0):
    return np.random.default_rng(seed).uniform(0, 100, (t, 68, 2))


def test_lmd_of_shifted_landmarks():
    gt = _landmarks()
    pred = gt + [3.0, 4.0]                 # every point 5 px off
    assert F.lmd(pred, gt) == pytest.approx(5.0)
    assert F.m_lmd(pred, gt) == pytest.approx(5.0)
    assert F.f_lmd(pred, gt) == pytest.approx(5.0)
    mouth_only = gt.copy()
    mouth_only[:, 48:68] += [3.0, 4.0]     # only the 20 mouth points move
    assert F.m_lmd(mouth_only, gt) == pytest.approx(5.0)
    assert F.f_lmd(mouth_only, gt) == pytest.approx(0.0)
    assert F.lmd(mouth_only, gt) == pytest.approx(5.0 * 20 / 68)
    # frames without a face (NaN) on either side are left out
    pred[2] = np.nan
    pred[0] = gt[0] + [30.0, 40.0]         # 50 px in frame 0, 5 px in frames 1, 3, 4
    assert F.lmd(pred, gt) == pytest.approx((50 + 3 * 5) / 4)
    assert math.isnan(F.lmd(np.full_like(gt, np.nan), gt))
    with pytest.raises(ValueError):
        F.lmd(gt[:, :60], gt)


def test_lmdv_hand_computed():
    gt = _landmarks(6)
    assert F.lmdv(gt + [7.0, -2.0], gt) == pytest.approx(0.0)   # constant offset: no velocity error
    drift = gt + np.arange(6)[:, None, None] * np.array([3.0, 4.0])  # 5 px/frame extra motion
    assert F.lmdv(drift, gt) == pytest.approx(5.0)
    drift[3] = np.nan                                               # pairs (2,3), (3,4) dropped
    assert F.lmdv(drift, gt) == pytest.approx(5.0)
    mouth = gt.copy()
    mouth[1::2, 48:] += [0.0, 2.0]  # mouth jitters by 2 px every other frame
    assert F.lmdv(mouth, gt, F.MOUTH_POINTS) == pytest.approx(2.0)
    assert F.lmdv(mouth, gt) == pytest.approx(2.0 * 20 / 68)
    assert math.isnan(F.lmdv(gt[:1], gt[:1]))


def test_point_groups():
    assert F.MOUTH_POINTS.tolist() == list(range(48, 68))
    assert F.FACE_POINTS.tolist() == list(range(48))


# ------------------------------------------------------------------------------------------
# identity and expression (real media)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(media):
    from jeancore.data.video import iter_frames

    obama = np.stack(list(iter_frames(media / "video" / "obama_20s_450.mp4", max_frames=60)))
    aoc = np.stack(list(iter_frames(media / "video" / "aoc_8s_512.mp4", max_frames=12)))
    return obama, aoc


def test_cosine_distance_hand_computed():
    assert F.cosine_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert F.cosine_distance([1, 1], [1, 0]) == pytest.approx(1 - 1 / math.sqrt(2))
    assert F.cosine_distance([2, 0, 0], [5, 0, 0]) == pytest.approx(0.0)
    assert F.cosine_distance([1, 0], [-1, 0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        F.cosine_distance([0, 0], [1, 0])


def test_identity_distance_same_vs_other_person(clips):
    obama, aoc = clips
    same = F.identity_distance(obama[:1], obama[59:60])        # two frames 2.4 s apart
    other = F.identity_distance(obama[:1], aoc[:1])
    assert same < 0.02 < 0.08 < other
    assert other > 10 * same
    with pytest.raises(BadInputError, match="no face"):
        F.identity_distance(np.zeros((2, 64, 64, 3), np.uint8), obama[:1])


def test_landmarks_of_frames(clips):
    obama, _ = clips
    frames = np.concatenate([obama[:2], np.zeros((1, 450, 450, 3), np.uint8)])
    lm = F.landmarks_of_frames(frames)
    assert lm.shape == (3, 68, 2) and lm.dtype == np.float32
    assert np.isfinite(lm[:2]).all() and np.isnan(lm[2]).all()   # no interpolation, no face
    assert (lm[:2] > 0).all() and (lm[:2] < 450).all()


def test_exp_diff_hand_computed():
    a = np.zeros((4, 10))
    b = np.zeros((4, 10))
    b[:, 3] = 2.0             # one coefficient off by 2 in every frame: MSE 4 / 10
    assert F.exp_diff(a, b) == pytest.approx(0.4)
    assert F.exp_diff(b, b) == 0.0
    with pytest.raises(ValueError):
        F.exp_diff(a, b[:3])


def test_exp_diff_frames_real(clips):
    obama, aoc = clips
    # Obama's mouth and face vs AOC's: the fitted expressions differ
    other = F.exp_diff_frames(obama[:6], aoc[:6])
    assert other > 0.01
    with pytest.raises(ValueError, match="frames"):
        F.exp_diff_frames(obama[:8], aoc[:5])


# ------------------------------------------------------------------------------------------
# metrics that need user-supplied weights
# ------------------------------------------------------------------------------------------
def test_lpips_and_lse_c_unavailable_without_weights():
    x = np.zeros((1, 32, 32, 3), np.uint8)
    assert F.lpips_distance(x, x) is None
    assert F.lse_c(x, np.zeros(16000, np.float32)) is None


def test_lpips_with_weights_file(tmp_path):
    """The LPIPS network loads torchvision-AlexNet + lpips-head state dicts; with (random)
    weights it is 0 for identical images and positive otherwise; zero heads give 0."""
    g = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3),
              10: (256, 256, 3, 3)}
    state = {}
    for i, s in shapes.items():
        state[f"features.{i}.weight"] = torch.randn(s, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.zeros(s[0])
    heads = {f"lin{j}.model.1.weight": torch.rand(1, s[0], 1, 1, generator=g)
             for j, s in enumerate(shapes.values())}
    torch.save({**state, **heads}, tmp_path / "lpips_all.pth")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    y = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert F.lpips_distance(x, x, tmp_path / "lpips_all.pth") == pytest.approx(0.0, abs=1e-7)
    assert F.lpips_distance(x, y, tmp_path / "lpips_all.pth") > 0
    torch.save(state, tmp_path / "alexnet.pth")
    torch.save({k: torch.zeros_like(v) for k, v in heads.items()}, tmp_path / "zero_heads.pth")
    assert F.lpips_distance(x, y, tmp_path / "alexnet.pth",
                            heads=tmp_path / "zero_heads.pth") == 0.0
    (tmp_path / "junk.pth").write_text("junk")
    with pytest.raises(BadInputError):
        F.lpips_distance(x, y, tmp_path / "junk.pth")


# ------------------------------------------------------------------------------------------
# reports
# ------------------------------------------------------------------------------------------
def test_evaluate_self_real_frames(clips):
    obama, _ = clips
    gt = obama[:6]
    same = E.evaluate_self(gt, gt)
    assert same["psnr"] == math.inf and same["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert same["lmd"] == same["m_lmd"] == same["f_lmd"] == same["lmdv"] == 0.0
    assert same["lpips"] is None and same["frames_with_face"] == {"output": 6,
                                                                   "ground_truth": 6}
    # the output shifted 3 px to the right: the detector follows the face
    shifted = np.roll(gt, 3, axis=2)
    r = E.evaluate_self(shifted, gt)
    assert 2.0 < r["lmd"] < 4.0 and 2.0 < r["m_lmd"] < 4.5 and 2.0 < r["f_lmd"] < 4.0
    assert r["lmdv"] < 1.5        # a constant shift barely changes the motion
    assert r["psnr"] < 40 and r["ssim"] < 0.99
    x0, y0, s = r["face_box"]
    assert 0 <= x0 and x0 + s <= 450 and 100 < s < 400
    # a given box is used as is
    assert E.evaluate_self(shifted, gt, (0, 0, 64))["face_box"] == [0, 0, 64]


def test_evaluate_cross_and_table(clips):
    obama, aoc = clips
    r = E.evaluate_cross(obama[:4], obama[30:60], obama[:2])   # source extended to 4 frames
    assert r["identity_distance"] < 0.02
    assert r["exp_diff"] >= 0 and r["lse_c"] is None and r["frames"] == 4
    assert r["frames_with_face"] == 4
    # an output without any face (an untrained model): n/a, not an error
    blank = np.full((3, 64, 64, 3), 255, np.uint8)
    r0 = E.evaluate_cross(blank, obama[30:60], obama[:3])
    assert r0["frames_with_face"] == 0 and np.isnan(r0["identity_distance"])
    assert np.isnan(r0["exp_diff"])
    table = E.format_table({"self-driven": {"psnr": 30.0, "ssim": 0.9, "lpips": None,
                                            "lmd": float("nan")}, "cross-driven": r})
    assert "unavailable (pass --lpips-weights" in table
    assert "unavailable (pass --syncnet-weights" in table
    assert "30.0000 dB" in table and "n/a (no face found)" in table
    lines = [ln for ln in table.splitlines() if "LPIPS" in ln or "LSE-C" in ln]
    assert lines and not any(ln.rstrip().endswith("0.0000") for ln in lines)


def test_mean_mouth_baseline_known_answer():
    """Training mouths all at the same place relative to the nose tip: the baseline puts that
    mouth under each ground-truth nose, so a ground-truth mouth moved by (3, 4) px scores an
    M-LMD of exactly 5, an unmoved one 0; NaN training rows are ignored."""
    from jeancore.metrics.face import mean_mouth_baseline, m_lmd

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, (68, 2))
    train = np.stack([base + rng.uniform(-20, 20, 2) for _ in range(30)])  # head moves
    train[3] = np.nan
    gt = np.stack([base + rng.uniform(-20, 20, 2) for _ in range(5)])
    assert m_lmd(mean_mouth_baseline(gt, train), gt) == pytest.approx(0.0, abs=1e-9)
    moved = gt.copy()
    moved[:, 48:68] += (3.0, 4.0)
    assert m_lmd(mean_mouth_baseline(moved, train), moved) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        mean_mouth_baseline(gt[:, :60], train)
