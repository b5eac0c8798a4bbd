"""Training JEAN's NeRF on a few seconds of the real Obama clip (CPU): it learns, checkpoints
load with weights_only, a run renders through NerfRun, resume after Ctrl-C or a kill is
exact, and checkpoints of other datasets / widths are refused clearly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from jeancore.errors import BadInputError, ConfigError
from jeancore.models import AudioEncoder, ExpressionTransformer
from jeancore.nerf import load_nerf_run
from jeancore.train import preset_config, train_nerf

from conftest import NERF_LEARN

LEARN = NERF_LEARN  # the settings of the session fixture trained_nerf (conftest)
TINY = dict(iters=6, resolution=32, n_rays=64, n_coarse=8, n_fine=8, width=32, depth=4,
            skips=(1,), val_every=0, val_frames=1, val_at_start=False, checkpoint_every=2,
            log_every=1, device="cpu")


def _encoders(seed=0):
    torch.manual_seed(seed)  # fresh encoders: the NeRF fine-tunes the audio one anyway
    return AudioEncoder(in_dim=80), ExpressionTransformer(n_layers=1, ff_dim=256)


@pytest.fixture(scope="module")
def dataset(preprocessed):
    return preprocessed("obama_8s_128").root


@pytest.fixture(scope="module")
def learned(trained_nerf):
    return trained_nerf


def test_training_learns_the_face(learned):
    out, res = learned
    losses = np.array([h[1] for h in res["history"]])
    assert res["step"] == 100 and len(losses) == 100
    first, last = losses[:20].mean(), losses[-20:].mean()
    v0, v1 = res["val"][0], res["val"][-1]
    print(f"\nNeRF 100 steps on obama_8s_128 @64px: train loss {first:.4f} -> {last:.4f}; "
          f"validation (head region) PSNR {v0['psnr']:.2f} -> {v1['psnr']:.2f} dB, SSIM "
          f"{v0['ssim']:.3f} -> {v1['ssim']:.3f}; {res['it_per_s']:.2f} it/s")
    assert last < 0.75 * first
    assert (v0["step"], v1["step"]) == (0, 100)
    assert v1["psnr"] > v0["psnr"] + 2.0          # a clear margin (measured: about +4 dB)
    assert v1["ssim"] > v0["ssim"]
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.json").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    import cv2
    png = cv2.imread(str(out / "val" / "step_0000100.png"))
    assert png.shape == (2 * 64, 2 * 64, 3)        # 2 frames: prediction | ground truth


def test_checkpoint_loads_weights_only_and_renders(learned, dataset):
    out, res = learned
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 100 and ckpt["backbone_config"]["width"] == 64
    assert ckpt["backbone"] == "adnerf" and ckpt["version"] == 2
    run = load_nerf_run(out)
    assert run.size == 128 and run.backbone.config.n_coarse == 16
    # render a validation frame with its own pose, audio and expression through NerfRun
    from jeancore.data import TalkingHeadDataset
    from jeancore.nerf.data import face_rects

    val = TalkingHeadDataset(dataset, "val")
    j = len(val) - 1          # the last validation frame is among the validated ones
    emo_all = TalkingHeadDataset(dataset, "all", images=False).emotion
    codes = run.expression_codes_from_features(emo_all)[val.indices[j]:val.indices[j] + 1]
    assert codes.shape == (1, 64)
    torch.testing.assert_close(codes, ckpt["expression_codes"][val.indices[j]:][:1])
    frames = list(run.render_frames(val.camera_to_head[j:j + 1], val.audio[j:j + 1], codes,
                                    size=64, background="dataset"))
    assert len(frames) == 1 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    import cv2
    gt = cv2.resize(val.head_image(j), (64, 64), interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = face_rects(val.landmarks[j:j + 1], 64, 64 / 128)[0]
    err = (frames[0][y0:y1, x0:x1].astype(float) - gt[y0:y1, x0:x1]) / 255
    psnr = -10 * np.log10((err ** 2).mean())
    # the audio window of a lone frame is smoothed over itself only, so not exactly the value
    # of training's validation; it must still be far above the untrained model
    assert psnr > res["val"][0]["psnr"] + 1.0
    white = next(run.render_frames(val.camera_to_head[:1], val.audio[:1], codes, size=24,
                                   background="white"))
    assert white.shape == (24, 24, 3)


def test_other_widths_or_dataset_are_refused(learned, dataset, preprocessed, tmp_path):
    out, _ = learned
    with pytest.raises(ConfigError, match="width"):
        load_nerf_run(out, width=128)
    run2 = tmp_path / "copy"
    shutil.copytree(out, run2)
    cfg = preset_config("cpu-smoke", **dict(LEARN, width=32, iters=101))
    with pytest.raises(ConfigError, match="other network widths"):
        train_nerf(dataset, run2, cfg, resume=True, progress=False)
    other = preprocessed("lieu_2s_64").root
    with pytest.raises(BadInputError, match="another dataset"):
        train_nerf(other, run2, preset_config("cpu-smoke", **dict(LEARN, iters=101)),
                   resume=True, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train_nerf(other, run2, preset_config("cpu-smoke", **LEARN), progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError):
        load_nerf_run(tmp_path / "bad")


def _run(dataset, out, resume=False, callback=None):
    enc, expr = _encoders(1)
    return train_nerf(dataset, out, preset_config("cpu-smoke", **TINY), audio_encoder=enc,
                      expression_model=expr, resume=resume, progress=False, callback=callback)


def test_resume_after_ctrl_c_or_kill_is_exact(dataset, tmp_path):
    full = {s: loss for s, loss, _ in _run(dataset, tmp_path / "a")["history"]}
    assert len(full) == 6

    def ctrl_c(step, info):  # a real SIGINT: the handler finishes the step and saves
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        _run(dataset, tmp_path / "b", callback=ctrl_c)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 3
    res = _run(dataset, tmp_path / "b", resume=True)
    assert [h[0] for h in res["history"]] == [4, 5, 6]
    for s, loss, _ in res["history"]:
        assert loss == full[s], (s, loss, full[s])

    def kill(step, info):  # a crash / SIGKILL: nothing is saved, the step-4 checkpoint stays
        if step == 5:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _run(dataset, tmp_path / "c", callback=kill)
    assert torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)["step"] == 4
    res = _run(dataset, tmp_path / "c", resume=True)
    assert [h[0] for h in res["history"]] == [5, 6]
    for s, loss, _ in res["history"]:
        assert loss == full[s], (s, loss, full[s])


def test_training_path_needs_no_media_libraries(dataset):
    """The GPU benchmark machine has no av / librosa / dlib / mediapipe / soundfile."""
    code = (
        "import sys\n"
        "for m in ('av', 'librosa', 'dlib', 'mediapipe', 'soundfile'): sys.modules[m] = None\n"
        "from jeancore.train import train_nerf\n"
        "from jeancore.nerf import load_nerf_run\n"
        "import jeancore.cli\n"
        "jeancore.cli.parse_command('train', ['d', '--out', 'o', '--device', 'cpu'])\n"
        "from jeancore.nerf.data import load_nerf_data\n"
        f"d = load_nerf_data({str(dataset)!r}, 16)\n"
        "assert d.images.shape[1:] == (16, 16, 3), d.images.shape\n")
    # the same jeancore as this test process (installed, or PYTHONPATH in a source checkout)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(__file__), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("random_background", [True, False])
def test_random_background_targets(dataset, tmp_path, monkeypatch, random_background):
    """With random_background every ray outside the head (parsing) gets one random colour as
    its target and as its background sample; head rays keep their pixel; without it, the
    dataset's background and pixels are used (AD-NeRF)."""
    import jeancore.train.nerf as T
    from jeancore.models import AdNerfBackbone
    from jeancore.nerf.data import load_nerf_data

    seen = []
    real = AdNerfBackbone.render_rays

    def spy(model, rays_o, rays_d, near, far, cond, bg, **kw):
        seen.append(bg.clone())
        return real(model, rays_o, rays_d, near, far, cond, bg, **kw)

    losses = []
    real_losses = AdNerfBackbone.losses
    monkeypatch.setattr(AdNerfBackbone, "render_rays", spy)
    monkeypatch.setattr(AdNerfBackbone, "losses", lambda self, result, target: (
        losses.append(target.clone()), real_losses(self, result, target))[1])
    enc, expr = _encoders()
    data = load_nerf_data(dataset, 32)
    cfg = preset_config("cpu-smoke", **dict(TINY, random_background=random_background))
    tr = T.NerfTrainer(data, cfg, torch.device("cpu"), enc, expr, None)
    gen = tr.gen.get_state()
    k = int(torch.randint(len(tr.train_idx), (1,), generator=tr.gen))
    j = int(data.train_idx[k])
    rows, cols = tr.sample_pixels(j)
    tr.gen.set_state(gen)
    tr.train_step()
    bg, target = seen[0], losses[0]
    head = data.head_mask[j, rows, cols]
    pixels = data.images[j, rows, cols].float() / 255
    assert 0 < int(head.sum()) < len(head)
    torch.testing.assert_close(target[head], pixels[head])
    if random_background:
        torch.testing.assert_close(target[~head], bg[~head])
        assert bg.std() > 0.2  # random colours, not the dataset's background
    else:
        torch.testing.assert_close(bg, data.background[rows, cols].float() / 255)
        torch.testing.assert_close(target, pixels)


def _as_version_1(ckpt: dict) -> dict:
    """A checkpoint in the layout `jean train` wrote before the backbone seam (format version
    1): AD-NeRF's settings flat in train_config, ``mlp_config``, one optimizer group for the
    NeRF and the conditioner's projection + attention, no NumPy / Python RNG state."""
    v1 = {k: v for k, v in ckpt.items() if k not in ("backbone", "backbone_config", "cond_dim")}
    tc = dict(ckpt["train_config"])
    ad = tc.pop("adnerf")
    tc.pop("backbone")
    tc.update(ad)
    opt = ckpt["optimizer"]
    g0, g1, enc = opt["param_groups"]
    v1.update(version=1, train_config=tc, mlp_config={"cond_dim": ckpt["cond_dim"], **{
        k: ad[k] for k in ("depth", "width", "skips", "pos_freqs", "dir_freqs",
                           "density_activation")}},
        optimizer=dict(opt, param_groups=[dict(g0, params=g0["params"] + g1["params"]), enc]),
        rng={k: v for k, v in ckpt["rng"].items() if k in ("generator", "torch", "cuda")})
    return v1


def test_version_1_checkpoints_load_and_resume(dataset, tmp_path):
    """Runs written before the backbone seam still render (as AD-NeRF) and resume exactly."""
    full = {s: loss for s, loss, _ in _run(dataset, tmp_path / "full")["history"]}

    def kill(step, info):
        if step == 5:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _run(dataset, tmp_path / "v2", callback=kill)
    shutil.copytree(tmp_path / "v2", tmp_path / "v1")
    ckpt = torch.load(tmp_path / "v2" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 4
    torch.save(_as_version_1(ckpt), tmp_path / "v1" / "checkpoint.pt")
    runs = [load_nerf_run(tmp_path / v) for v in ("v2", "v1")]
    assert runs[1].backbone.config == runs[0].backbone.config and runs[1].step == 4
    c2w = torch.eye(4)[None]
    c2w[0, 2, 3] = 10.0
    codes = torch.zeros(1, 64)
    audio = np.zeros((1, runs[0].audio_window, runs[0].audio_dim), np.float32)
    a, b = (next(r.render_frames(c2w, audio, codes, size=16, as_float=True)) for r in runs)
    np.testing.assert_array_equal(a, b)
    for v in ("v2", "v1"):
        res = _run(dataset, tmp_path / v, resume=True)
        assert [h[0] for h in res["history"]] == [5, 6]
        for s, loss, _ in res["history"]:
            assert loss == full[s], (v, s, loss, full[s])
    with pytest.raises(BadInputError, match="unsupported NeRF checkpoint version 3"):
        torch.save(dict(ckpt, version=3), tmp_path / "v1" / "checkpoint.pt")
        load_nerf_run(tmp_path / "v1")


def test_presets_keep_their_values():
    """The cpu-smoke preset (run settings + AD-NeRF's nested) gives the values it gave when
    they were one flat config; flat backbone overrides still work."""
    c = preset_config("cpu-smoke")
    assert (c.iters, c.n_rays, c.resolution, c.lr, c.lr_final, c.log_every,
            c.checkpoint_every, c.val_every, c.val_frames, c.chunk_rays) == (
        500, 256, 96, 1e-3, 1e-4, 10, 100, 100, 3, 4096)
    a = c.adnerf
    assert (a.n_coarse, a.n_fine, a.width, a.depth, a.skips, a.pos_freqs, a.dir_freqs) == (
        24, 24, 64, 8, (4,), 10, 4)
    f = preset_config("full")
    assert (f.iters, f.n_rays, f.adnerf.n_coarse, f.adnerf.n_fine, f.adnerf.width) == (
        400_000, 2048, 64, 128, 128)
    o = preset_config("cpu-smoke", width=32, n_fine=0, iters=7)
    assert (o.adnerf.width, o.adnerf.n_fine, o.adnerf.n_coarse, o.iters) == (32, 0, 24, 7)
    with pytest.raises(ConfigError, match="unknown NeRF training settings"):
        preset_config("cpu-smoke", widht=3)
