"""The grid backbone of JEAN's NeRF (jeancore.models.grid): its field against a plain
concatenation, the view-direction basis, the trainer's ray choice (mouth / head rays, several
frames, the mouth's expression swap), and training on a few seconds of the real Obama clip: it
learns, the occupancy grid prunes and does not change the render, checkpoints load with
weights_only, resume is exact, and a checkpoint of one backbone is refused as the other."""

from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jeancore.errors import ConfigError
from jeancore.models import AudioEncoder, ExpressionTransformer
from jeancore.models.grid import GridConfig, GridField, spherical_harmonics
from jeancore.nerf import load_nerf_run
from jeancore.train import preset_config, train_nerf

# a small grid backbone on 8 s of Obama at 64 px (CPU, CI); the cpu preset's sizes are larger
GRID_SMALL = dict(n_levels=8, features_per_level=2, log2_table_size=12, base_resolution=8,
                  max_resolution=128, hidden=32, color_hidden=32, occupancy_resolution=32,
                  occupancy_alpha=0.002, occupancy_start=32, n_steps=64)
GRID_LEARN = dict(backbone="grid", iters=150, resolution=64, n_rays=1024, lr=5e-3,
                  lr_final=1e-3, val_every=0, val_frames=2, log_every=10, checkpoint_every=50,
                  face_fraction=0.8, head_fraction=0.15, device="cpu", grid=GRID_SMALL)
GRID_TINY = dict(GRID_LEARN, iters=6, n_rays=128, checkpoint_every=2, val_at_start=False,
                 val_frames=1, log_every=1, frames_per_step=2, mouth_fraction=0.05,
                 mouth_expression_swap=0.5, grid=dict(GRID_SMALL, occupancy_start=2,
                                                      occupancy_every=2))


def _encoders(seed=0):
    torch.manual_seed(seed)
    return AudioEncoder(in_dim=80), ExpressionTransformer(n_layers=1, ff_dim=256)


@pytest.fixture(scope="module")
def dataset(preprocessed):
    return preprocessed("obama_8s_128").root


@pytest.fixture(scope="module")
def grid_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "run"
    enc, expr = _encoders(0)
    res = train_nerf(dataset, out, preset_config("cpu-smoke", **GRID_LEARN), audio_encoder=enc,
                     expression_model=expr, progress=False)
    return out, res


# --------------------------------------------------------------------------------- the field

def _naive_geometry(field: GridField, u, cond):
    """The first density layer as Linear(cat(h(x), a(x) * e_a, e_e)) on per-sample inputs."""
    h_x = field.encoding(u)
    a, e = cond[:, :field.audio_dim], cond[:, field.audio_dim:]
    if field.attention is not None:
        a = a * torch.sigmoid(field.attention(h_x))
    h = F.relu(field.density_in(torch.cat([h_x, a, e], -1)))
    for layer in field.density_hidden:
        h = F.relu(layer(h))
    out = field.density_out(h)
    return F.softplus(out[:, 0] - field.density_offset), out[:, 1:]


@pytest.mark.parametrize("encoding", ["triplane", "hash3d"])
@pytest.mark.parametrize("attention", [True, False])
def test_field_per_ray_terms_equal_concatenation(encoding, attention):
    torch.manual_seed(0)
    cfg = GridConfig(encoding=encoding, region_attention=attention, n_levels=4,
                     log2_table_size=10, base_resolution=4, max_resolution=64,
                     density_layers=2)
    field = GridField(cfg, cond_dim=12, audio_dim=5)
    with torch.no_grad():
        for p in field.parameters():
            p.uniform_(-0.5, 0.5)
    m, n = 200, 7
    u = torch.rand(m, 3)
    ray_indices = torch.sort(torch.randint(n, (m,))).values
    cond_rays = torch.randn(n, 12)
    ref_sigma, ref_geo = _naive_geometry(field, u, cond_rays[ray_indices])
    for args in ((cond_rays[ray_indices],), (cond_rays, ray_indices)):
        sigma, geo = field.geometry(u, *args)
        torch.testing.assert_close(sigma, ref_sigma, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(geo, ref_geo, rtol=1e-5, atol=1e-6)
    one = cond_rays[3]
    sigma, geo = field.geometry(u, one)
    ref = _naive_geometry(field, u, one.expand(m, -1))
    torch.testing.assert_close(sigma, ref[0], rtol=1e-5, atol=1e-6)
    rgb, sigma2 = field(u, torch.nn.functional.normalize(torch.randn(n, 3), dim=-1), cond_rays,
                        ray_indices)
    assert rgb.shape == (m, 3) and bool(((rgb > 0) & (rgb < 1)).all())
    torch.testing.assert_close(sigma2, ref_sigma, rtol=1e-5, atol=1e-6)


def test_spherical_harmonics_are_orthonormal():
    # a Fibonacci sphere: near-uniform directions; the mean of Y_i Y_j times 4 pi -> delta_ij
    k = torch.arange(40000, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / 40000
    phi = math.pi * (1 + 5 ** 0.5) * k
    r = (1 - z * z).sqrt()
    d = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)
    y = spherical_harmonics(d)
    gram = 4 * math.pi * (y.T @ y) / len(d)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)


def test_config_errors():
    for bad in (dict(encoding="planes"), dict(features_per_level=3), dict(n_steps=1),
                dict(min_weight=1.5), dict(max_resolution=4, base_resolution=8),
                dict(dir_encoding="fourier"), dict(lr_encoding=0.0)):
        with pytest.raises(ConfigError):
            GridConfig(**bad).validate()
    with pytest.raises(ConfigError, match="mouth_fraction"):
        preset_config("cpu-smoke", backbone="grid", face_fraction=0.9,
                      mouth_fraction=0.2).validate()


# ------------------------------------------------------------------------- the trainer's rays

def _trainer(dataset, **over):
    from jeancore.nerf.data import load_nerf_data
    from jeancore.train.nerf import NerfTrainer

    cfg = preset_config("cpu-smoke", **dict(GRID_TINY, **over))
    cfg.validate()
    enc, expr = _encoders(0)
    return NerfTrainer(load_nerf_data(dataset, cfg.resolution), cfg, torch.device("cpu"), enc,
                       expr)


def test_mouth_and_head_rays(dataset):
    tr = _trainer(dataset, n_rays=1000, face_fraction=0.5, mouth_fraction=0.3,
                  head_fraction=0.2)
    j = int(tr.data.train_idx[3])
    rows, cols = tr.sample_pixels(j)
    assert rows.shape == cols.shape == (1000,)
    x0, y0, x1, y1 = tr.mouth[j]
    in_mouth = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    assert int(in_mouth[500:800].sum()) == 300            # the mouth rays are in the mouth box
    assert bool(tr.head_mask[j, rows[800:], cols[800:]].all())   # the head rays on the head
    fx0, fy0, fx1, fy1 = tr.rects[j]
    assert bool(((rows[:500] >= fy0) & (rows[:500] < fy1) & (cols[:500] >= fx0)
                 & (cols[:500] < fx1)).all())
    # the mouth box holds the mouth landmarks
    lm = np.load(dataset / "landmarks.npz")["points"][j, 48:68] * 64 / 128
    assert (lm[:, 0] >= x0).all() and (lm[:, 0] <= x1).all()
    assert (lm[:, 1] >= y0).all() and (lm[:, 1] <= y1).all()


def test_several_frames_and_the_mouth_expression_swap(dataset):
    tr = _trainer(dataset, n_rays=600, frames_per_step=3, face_fraction=0.5,
                  mouth_fraction=0.4, head_fraction=0.1, mouth_expression_swap=1.0)
    rays = tr.step_rays()
    cond, mouth = rays.cond, rays.in_mouth
    assert len(rays.frames) == 3 and cond.shape == (600, tr.backbone.cond_dim)
    a = tr.conditioner.code_dim
    with torch.no_grad():
        own = tr.cond(torch.tensor(rays.frames)).float()
    owner = torch.arange(3).repeat_interleave(200)
    torch.testing.assert_close(cond[:, :a], own[owner, :a])        # the speech is the frame's
    expr_own = tr.expr_codes[torch.tensor(rays.frames)][owner]
    same = (cond[:, a:] == expr_own).all(-1)
    assert bool(same[~mouth].all())               # outside the mouth box: the frame's own
    assert int(mouth.sum()) >= 3 * 80             # 40% of each frame's rays, and face rays there
    assert float(same[mouth].float().mean()) < 0.1          # inside: another frame's code ...
    codes = tr.expr_codes[tr.train_idx]
    match = (cond[mouth, None, a:] == codes[None]).all(-1).any(-1)
    assert bool(match.all())                      # ... of a training frame
    tr0 = _trainer(dataset, n_rays=600, frames_per_step=3, face_fraction=0.5,
                   mouth_fraction=0.4, head_fraction=0.1, mouth_expression_swap=0.0)
    rays0 = tr0.step_rays()
    torch.testing.assert_close(rays0.cond[:, a:],
                               tr0.expr_codes[torch.tensor(rays0.frames)][owner])


# ---------------------------------------------------------------------------------- training

def test_grid_training_learns_the_face(grid_run):
    out, res = grid_run
    losses = np.array([h[1] for h in res["history"]])
    v0, v1 = res["val"][0], res["val"][-1]
    print(f"\ngrid backbone {res['step']} steps on obama_8s_128 @64px: loss "
          f"{losses[:15].mean():.4f} -> {losses[-15:].mean():.4f}; validation PSNR "
          f"{v0['psnr']:.2f} -> {v1['psnr']:.2f} dB; {res['it_per_s']:.2f} it/s")
    assert res["step"] == 150 and res["backbone"] == "grid"
    assert losses[-15:].mean() < 0.5 * losses[:15].mean()
    assert v1["psnr"] > v0["psnr"] + 4.0
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["backbone"] == "grid" and ckpt["step"] == 150
    assert "occupancy.occupied" in ckpt["model"]


def _val_condition(run, dataset):
    j = int(run.dataset["val_start"])
    c2w = torch.from_numpy(np.load(dataset / "tracking.npz")["camera_to_head"][j])
    audio = np.load(dataset / "audio_features.npy")
    emotion = np.load(dataset / "emotion.npz")["features"]
    with torch.no_grad():
        cond = torch.cat([run.audio_codes(audio)[j],
                          run.expression_codes_from_features(emotion)[j]])
    s = 64 / run.size
    return c2w, tuple(v * s for v in run.intrinsics), cond


def test_occupancy_grid_prunes_and_keeps_the_render(grid_run, dataset):
    """After training the head masks' visual hull has emptied a large part of the head box and
    the density EMA keeps at most the hull (this short run's low threshold prunes little more);
    rendering with the grid (and early termination) matches rendering every cell of the hull
    with every sample kept."""
    from jeancore.nerf.volume_rendering import render_image

    out, _ = grid_run
    run = load_nerf_run(out)
    occ = run.backbone.occupancy
    hull = float(occ.visible.float().mean())
    print(f"\noccupied cells after training: {occ.fraction_occupied:.3f} (visual hull {hull:.3f})")
    assert 0.05 < occ.fraction_occupied <= hull < 0.6
    c2w, intr, cond = _val_condition(run, dataset)
    kw = dict(chunk_rays=8192)
    fast = render_image(run.backbone, c2w, intr, 64, run.near, run.far, cond, torch.ones(3), **kw)
    occupied = occ.occupied.clone()
    occ.occupied.copy_(occ.visible)
    exact = render_image(run.backbone, c2w, intr, 64, run.near, run.far, cond, torch.ones(3),
                         min_weight=0.0, early_stop=0.0, **kw)
    occ.occupied.copy_(occupied)
    diff = (fast - exact).abs()
    print(f"render with / without the density pruning: mean |diff| {float(diff.mean()):.5f}, "
          f"max {float(diff.max()):.4f}")
    assert float(diff.mean()) < 3e-3 and float(diff.max()) < 0.1


def test_inference_windows_equal_the_full_composite(grid_run, dataset):
    """Inference marches each ray in windows and drops rays once opaque; with a tiny threshold
    that equals compositing all marched samples at once (the training path)."""
    from jeancore import ops

    out, _ = grid_run
    run = load_nerf_run(out)
    bb = run.backbone
    c2w, intr, cond = _val_condition(run, dataset)
    from jeancore.nerf.data import pixel_grid

    pix = pixel_grid(64, 64)
    rays_o, rays_d = ops.generate_rays(c2w[:3, :4].float(), *intr, pix)
    bg = torch.rand(len(pix), 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        win = bb.render_rays(rays_o, rays_d, run.near, run.far, cond, bg, early_stop=1e-7,
                             min_weight=0.0)
        with torch.enable_grad():
            full = bb.render_rays(rays_o, rays_d, run.near, run.far, cond, bg, min_weight=0.0,
                                  early_stop=0.0)
        fast = bb.render_rays(rays_o, rays_d, run.near, run.far, cond, bg)
    torch.testing.assert_close(win.rgb, full.rgb.detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(win.opacity, full.opacity.detach(), atol=1e-4, rtol=0)
    n_full, n_fast = int(full.samples_per_ray.sum()), int(fast.samples_per_ray.sum())
    print(f"\nsamples evaluated: all {n_full}, with early termination {n_fast}")
    assert n_fast < n_full
    assert float((fast.rgb - full.rgb.detach()).abs().max()) < 0.02


def _tiny(dataset, out, resume=False, callback=None):
    enc, expr = _encoders(1)
    return train_nerf(dataset, out, preset_config("cpu-smoke", **GRID_TINY), audio_encoder=enc,
                      expression_model=expr, resume=resume, progress=False, callback=callback)


def test_grid_resume_after_ctrl_c_or_kill_is_exact(dataset, tmp_path):
    full = {s: loss for s, loss, _ in _tiny(dataset, tmp_path / "a")["history"]}
    assert len(full) == 6

    def ctrl_c(step, info):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        _tiny(dataset, tmp_path / "b", callback=ctrl_c)
    res = _tiny(dataset, tmp_path / "b", resume=True)
    assert [h[0] for h in res["history"]] == [4, 5, 6]
    for s, loss, _ in res["history"]:
        assert loss == full[s], (s, loss, full[s])

    def kill(step, info):
        if step == 5:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _tiny(dataset, tmp_path / "c", callback=kill)
    res = _tiny(dataset, tmp_path / "c", resume=True)
    assert [h[0] for h in res["history"]] == [5, 6]
    for s, loss, _ in res["history"]:
        assert loss == full[s], (s, loss, full[s])


def test_a_checkpoint_of_one_backbone_is_refused_as_the_other(grid_run, trained_nerf, dataset,
                                                               tmp_path):
    import shutil

    grid_out, _ = grid_run
    adnerf_out, _ = trained_nerf
    for src, other in ((grid_out, "adnerf"), (adnerf_out, "grid")):
        run = tmp_path / f"copy_{other}"
        shutil.copytree(src, run)
        cfg = preset_config("cpu-smoke", **dict(GRID_LEARN, backbone=other, iters=151))
        with pytest.raises(ConfigError) as e:
            train_nerf(dataset, run, cfg, resume=True, progress=False)
        assert "backbone" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_nerf_run(grid_out, backbone="adnerf")
    assert "\n" not in str(e.value)


def test_grid_presets():
    """cpu (the default without a GPU), cpu-long and fast are the grid backbone; each
    validates; full stays the paper's AD-NeRF."""
    for name in ("cpu", "cpu-long", "fast"):
        c = preset_config(name, "cpu")
        c.validate()
        assert c.backbone == "grid" and c.resolution is None and c.mouth_fraction > 0
    assert preset_config("cpu", "cpu").iters < preset_config("cpu-long", "cpu").iters
    assert preset_config("full", "cpu").backbone == "adnerf"
    if not torch.cuda.is_available():
        assert preset_config(None).preset == "cpu"
