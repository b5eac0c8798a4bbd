"""Rendering a trained NeRF from three real sources to an mp4 with sound (``jean render``), and
its evaluation (``jean evaluate``), at smoke scale on the CPU.

The NeRF is the session's small run on 8 s of the Obama clip (conftest ``trained_nerf``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from jeancore.cli import main as jean_main
from jeancore.errors import BadInputError
from jeancore.nerf import load_nerf_run
from jeancore.render.pipeline import grid_indices, render, render_grid


@pytest.fixture(scope="module")
def run(trained_nerf):
    return load_nerf_run(trained_nerf[0], "cpu")


def _decode(path):
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        dur_v = float(v.duration * v.time_base) if v.duration else len(frames) / 25
        a = c.streams.audio[0] if c.streams.audio else None
        dur_a = float(a.duration * a.time_base) if a is not None and a.duration else None
    return np.stack(frames), dur_v, dur_a


def test_render_mp4_with_sound_and_grid(run, media, tmp_path):
    """The default output: full frames at the dataset's size (head over torso over the
    background), the grid with the pose column, and the video pasted back into the source
    at its size and frame rate, with the speech."""
    from jeancore.data.video import probe_video

    out = tmp_path / "dub.mp4"
    res = render(None, media / "audio/radio31_8s_en.wav",
                 media / "video/sad_woman_20s_640x360.mp4", "dataset", out, run=run,
                 max_seconds=2.0, progress=False)
    assert res.n_frames == 50 and res.video == out and res.size == 128
    frames, dur_v, dur_a = _decode(out)
    assert frames.shape == (50, 128, 128, 3)
    assert abs(dur_v - 2.0) <= 1 / 25 and dur_a is not None and abs(dur_a - 2.0) <= 1 / 25 + 0.03
    grid = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(res.grid))
    assert grid.shape == (6 * 128, 3 * 128, 3)          # expression | output | pose source
    assert frames.std() > 1.0  # not a blank video
    assert res.torso_frames.tolist() == list(range(50))  # pose 'dataset': frame for frame
    # pasted back: the source's size and rate, as many frames, the speech within one frame
    src = probe_video(media / "video/obama_20s_450.mp4")
    assert res.pasted == tmp_path / "dub_pasted.mp4"
    pasted, dur_pv, dur_pa = _decode(res.pasted)
    assert pasted.shape[1:3] == (src.height + src.height % 2, src.width + src.width % 2)
    assert len(pasted) == round(2.0 * src.fps)
    assert abs(dur_pa - 2.0) <= 1 / src.fps + 0.03
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_head_composite_on_a_background_image(run, media, tmp_path):
    import cv2

    img = np.zeros((40, 40, 3), np.uint8)
    img[..., 2] = 255                                    # blue (RGB order after reading)
    cv2.imwrite(str(tmp_path / "bg.png"), img[..., ::-1])
    out = tmp_path / "head.mp4"
    res = render(None, media / "audio/radio31_8s_en.wav", media / "video/aoc_8s_512.mp4",
                 "frozen", out, run=run, max_seconds=0.4, size=64, composite="head",
                 background=str(tmp_path / "bg.png"), grid=False, progress=False)
    frames = _decode(out)[0].astype(np.float32)
    assert res.pasted is None and res.torso_frames is None and frames.shape[1:3] == (64, 64)
    white = tmp_path / "white.mp4"                       # the same head on white
    render(None, media / "audio/radio31_8s_en.wav", media / "video/aoc_8s_512.mp4", "frozen",
           white, run=run, max_seconds=0.4, size=64, composite="head", background="white",
           grid=False, progress=False)
    on_white = _decode(white)[0].astype(np.float32)
    # out = head + (1 - opacity) * background: white - blue = (1 - opacity) * (255, 255, 0)
    d = on_white - frames
    assert float(np.abs(d[..., 2]).mean()) < 3.0, float(np.abs(d[..., 2]).mean())
    assert float(np.abs(d[..., 0] - d[..., 1]).mean()) < 4.0
    assert float(d[..., 0].min()) > -12 and float(d[..., 0].mean()) > 20   # the image shows


def test_full_composite_of_a_real_render_is_head_over_torso_over_background(
        run, preprocessed):
    """render_frames' opacity is the one of its colour (over black = premultiplied, over white =
    that + 1 - opacity), and the full frame is that head over the dataset's torso layer and
    background (compose_full's formula)."""
    from jeancore.data.dataset import TalkingHeadDataset
    from jeancore.render.fullframe import DatasetTorso

    root = preprocessed("obama_8s_128").root
    ds = TalkingHeadDataset(root, "all", images=False)
    torso = DatasetTorso(root)
    j = 30
    codes = run.expression_codes_from_features(ds.emotion)[j:j + 1]

    def head(bg):
        return next(run.render_frames(ds.camera_to_head[j:j + 1], ds.audio[j:j + 1], codes,
                                      background=bg, as_float=True, with_opacity=True))

    rgb, opacity = head((0.0, 0.0, 0.0))
    on_white, opacity_w = head((1.0, 1.0, 1.0))
    assert opacity.shape == rgb.shape[:2] and float(opacity.max() - opacity.min()) > 0.3
    np.testing.assert_allclose(opacity_w, opacity, atol=1e-5)
    assert float((rgb - opacity[..., None]).max()) < 1e-4            # premultiplied
    np.testing.assert_allclose(on_white, rgb + (1 - opacity[..., None]), atol=1e-4)
    full = torso.compose(rgb, opacity, j)
    layer = torso.layer(j)
    a = layer.alpha.reshape(*opacity.shape, 1)
    under = layer.rgb * a + torso.background / 255.0 * (1 - a)      # background: uint8
    np.testing.assert_allclose(full, rgb + (1 - opacity[..., None]) * under, atol=1e-5)
    assert float(np.abs(full - under).max()) > 0.1                  # the head shows


def test_torso_frame_of_each_pose(run, preprocessed):
    from jeancore.render.fullframe import DatasetTorso
    from jeancore.render.pipeline import torso_frames
    from jeancore.render.sources import head_poses

    root = preprocessed("obama_8s_128").root
    torso = DatasetTorso(root)
    n = torso.n_frames
    # pose 'dataset' longer than the clip: ping-pong, as the poses
    idx = torso_frames("dataset", n + 10, torso, None)
    assert idx[:n].tolist() == list(range(n)) and idx[n:].tolist() == list(range(n - 2, n - 12, -1))
    # a retargeted pose sequence (here: the dataset's poses shuffled, slightly moved) picks
    # the nearest-pose frame
    perm = np.random.default_rng(0).permutation(n)[:40]
    poses = torso.camera_to_head[perm].copy()
    poses[:, :3, 3] += 1e-4
    assert torso_frames(np.asarray(poses), 40, torso, poses).tolist() == perm.tolist()
    frozen = head_poses("frozen", 5, dataset=root)
    f = torso_frames("frozen", 5, torso, frozen)
    assert len(set(f.tolist())) == 1
    np.testing.assert_allclose(torso.camera_to_head[f[0]], frozen[0], atol=1e-6)


def test_full_frame_bad_input_one_line_error_no_mp4(run, media, preprocessed, tmp_path):
    import json
    import shutil

    root = preprocessed("obama_8s_128").root
    audio, expr = media / "audio/radio31_8s_en.wav", media / "video/aoc_8s_512.mp4"
    kw = dict(run=run, max_seconds=0.4, progress=False)
    # a dataset without torso labels
    no_torso = tmp_path / "no_torso"
    shutil.copytree(root, no_torso, ignore=shutil.ignore_patterns("parsing"))
    out = tmp_path / "a.mp4"
    with pytest.raises(BadInputError) as e:
        render(None, audio, expr, "dataset", out, dataset=no_torso, **kw)
    assert "torso" in str(e.value) and "\n" not in str(e.value)
    # paste-back asked for, but the dataset records no source video
    no_src = tmp_path / "no_src"
    shutil.copytree(root, no_src)
    meta = json.loads((no_src / "meta.json").read_text())
    meta["source"] = {}
    (no_src / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError) as e:
        render(None, audio, expr, "dataset", out, dataset=no_src, paste_back=True, **kw)
    assert "source video" in str(e.value) and "\n" not in str(e.value)
    # without paste_back=True the same dataset still gives the full-frame video
    res = render(None, audio, expr, "dataset", out, dataset=no_src, grid=False, **kw)
    assert res.pasted is None and out.exists()
    out.unlink()
    # a crop outside the source frame
    bad_crop = tmp_path / "bad_crop"
    shutil.copytree(root, bad_crop)
    meta = json.loads((bad_crop / "meta.json").read_text())
    meta["crop"] = [400, 400, 450]
    (bad_crop / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError) as e:
        render(None, audio, expr, "dataset", out, dataset=bad_crop, paste_back=True, **kw)
    assert "crop" in str(e.value) and "\n" not in str(e.value)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*"))


def mouth_eye_change(run, root, windows_a, windows_b, codes, poses, size):
    """Mean |difference| (grey levels of 255, float renders) inside the mouth box (iBUG 48-67)
    and the eye box (36-47) of each frame between two renders that differ only in the speech.
    Also used by benchmarks/bench_render.py on trained models."""
    from jeancore.data.dataset import TalkingHeadDataset

    kw = dict(size=size, background="dataset", as_float=True)
    a = np.stack(list(run.render_frames(poses, windows_a, codes, **kw)))
    b = np.stack(list(run.render_frames(poses, windows_b, codes, **kw)))
    ds = TalkingHeadDataset(root, "all", images=False)
    marks = ds.landmarks[: len(poses)] * (size / ds.size)
    diff = np.abs(a.astype(np.float64) - b).mean(-1) * 255

    def region(points):
        vals = []
        for t, m in enumerate(marks):
            x0, y0 = np.floor(m[points].min(0)).astype(int)
            x1, y1 = np.ceil(m[points].max(0)).astype(int) + 1
            vals.append(diff[t, max(y0, 0):y1, max(x0, 0):x1].mean())
        return float(np.mean(vals))

    return region(np.arange(48, 68)), region(np.arange(36, 48))


def test_audio_drives_the_output(run, preprocessed):
    """Other speech over the same poses and expression changes the rendered frames, and the
    same speech gives the same frames again. (Whether the change sits at the mouth needs a
    trained model, not this 100-step one: measured on the GPU-trained model, see
    docs/benchmarks.md.)"""
    from jeancore.data.dataset import TalkingHeadDataset

    root = preprocessed("obama_8s_128").root
    ds = TalkingHeadDataset(root, "all", images=False)
    n = 20
    codes = run.expression_codes_from_features(ds.emotion[:n])
    poses = ds.camera_to_head[:n]
    mouth, eyes = mouth_eye_change(run, root, ds.audio[:n], ds.audio[n:2 * n][::-1], codes,
                                   poses, 32)
    same = mouth_eye_change(run, root, ds.audio[:n], ds.audio[:n], codes, poses, 32)
    print(f"\nmean |difference| when the audio changes: mouth {mouth:.4f}, eyes {eyes:.4f} "
          f"(of 255)")
    assert mouth > 0 and eyes > 0 and same == (0.0, 0.0)


def test_expression_source_changes_the_output(run, media, tmp_path):
    paths = []
    for name in ("video/sad_woman_20s_640x360.mp4", "video/aoc_8s_512.mp4"):
        out = tmp_path / f"{name.split('/')[1][:3]}.mp4"
        render(None, media / "audio/radio31_8s_en.wav", media / name, "frozen", out, run=run,
               max_seconds=1.0, size=64, grid=False, progress=False)
        paths.append(out)
    a, b = (_decode(p)[0].astype(float) for p in paths)
    face = np.s_[:, 16:56, 16:48]
    change = np.abs(a[face] - b[face]).mean()
    print(f"\nmean |difference| of the face region between two expression sources: "
          f"{change:.2f} (of 255)")
    assert change > 0.5


def test_bad_input_leaves_no_mp4(run, media, tmp_path):
    import soundfile as sf

    out = tmp_path / "bad.mp4"
    audio, expr = media / "audio/radio31_8s_en.wav", media / "video/aoc_8s_512.mp4"
    with pytest.raises(BadInputError, match="no face"):
        render(None, audio, media / "edge/no_face_4s.mp4", "dataset", out, run=run,
               max_seconds=1.0, progress=False)
    sf.write(tmp_path / "silent.wav", np.zeros(16000 * 2, np.float32), 16000)
    with pytest.raises(BadInputError, match="silent"):
        render(None, tmp_path / "silent.wav", expr, "dataset", out, run=run, progress=False)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(BadInputError):
        render(None, tmp_path / "empty.wav", expr, "dataset", out, run=run, progress=False)
    with pytest.raises(BadInputError, match="no such file"):
        render(None, tmp_path / "missing.wav", expr, "dataset", out, run=run, progress=False)
    assert not out.exists() and not list(tmp_path.glob("*.mp4")) + list(tmp_path.glob(".*"))


def test_incompatible_run_directory(tmp_path, media, capsys):
    import torch

    (tmp_path / "run").mkdir()
    torch.save({"format": "jeancore.nerf", "version": 999}, tmp_path / "run" / "checkpoint.pt")
    rc = jean_main(["render", str(tmp_path / "run"), "--audio",
                    str(media / "audio/radio31_8s_en.wav"), "--expression",
                    str(media / "video/aoc_8s_512.mp4"), "--out", str(tmp_path / "x.mp4"),
                    "--quiet"])
    assert rc == 2 and "jean: error:" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_grid_helpers():
    assert grid_indices(100, 6).tolist() == [0, 20, 40, 59, 79, 99]
    assert grid_indices(3, 6).tolist() == [0, 1, 2]
    src = np.zeros((2, 10, 10, 3), np.uint8)
    out = np.full((2, 4, 6, 3), 255, np.uint8)
    g = render_grid(src, out)
    assert g.shape == (8, 12, 3) and g[:, :6].max() == 0 and g[:, 6:].min() == 255
    g = render_grid(src, out, np.full((2, 5, 5, 3), 7, np.uint8))
    assert g.shape == (8, 18, 3) and (g[:, 12:] == 7).all()
    with pytest.raises(ValueError):
        render_grid(src[:1], out)


def test_evaluate_self_and_cross(trained_nerf, media, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = jean_main(["evaluate", str(trained_nerf[0]), "--audio",
                    str(media / "audio/radio31_8s_en.wav"), "--expression",
                    str(media / "video/aoc_8s_512.mp4"), "--max-frames", "12", "--out",
                    str(out), "--device", "cpu", "--size", "64", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    res = json.loads(out.read_text())
    s, c = res["self"], res["cross"]
    assert s["frames"] == 12 and 5 < s["psnr"] < 60 and 0 < s["ssim"] <= 1
    assert s["lpips"] is None and "unavailable" in printed
    assert c["frames"] == 12 and c["lse_c"] is None and c["lse_d"] is None
    # the full frame (head over the same frame's torso) against the recorded frame
    assert 5 < s["psnr_full"] < 60 and 0 < s["ssim_full"] <= 1
    # 12 of the 20 validation frames, 12 cross-driven frames: too short for the sync z-score
    assert s["lip_sync_z"] is None and c["lip_sync_z"] is None
    compare = tmp_path / "compare.mp4"
    assert res["compare"] == str(compare)
    frames, _, dur_a = _decode(compare)
    assert frames.shape[0] == 12 and frames.shape[2] >= 2 * 128 and dur_a is None
    # the 100-step model at 64 px rarely shows a face dlib finds: then n/a, never 0
    assert (c["identity_distance"] >= 0) if c["frames_with_face"] else \
        np.isnan(c["identity_distance"])
    assert s["audio_lip_ground_truth"]["top1"] is not None
    assert res["info"]["frames_rendered"] == 24
