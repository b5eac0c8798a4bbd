"""JEAN's NeRF pieces without a dataset (jeancore.models, jeancore.nerf.volume_rendering):
positional encoding, F_theta's shapes and its per-ray condition shortcut, the audio
conditioner, and the AD-NeRF backbone rendering with the fused kernels against the pure-torch
reference ops (values and gradients, same random draws)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from jeancore.errors import BadInputError, ConfigError
from jeancore.models import (AdNerfBackbone, AdNerfConfig, AudioConditioner, AudioEncoder,
                             NerfMLP, encoded_dim, positional_encoding, smoothing_indices)
from jeancore.nerf import RayOps


def test_positional_encoding_layout_and_width():
    x = torch.tensor([[0.3, -0.7, 1.1]])
    pe = positional_encoding(x, 10)
    assert pe.shape == (1, 63) == (1, encoded_dim(3, 10))
    assert encoded_dim(3, 4) == 27
    assert torch.equal(pe[:, :3], x)
    for k in range(10):  # per frequency: the sines of the 3 coordinates, then the cosines
        blk = pe[0, 3 + 6 * k: 3 + 6 * (k + 1)]
        assert torch.allclose(blk[:3], torch.sin(2.0 ** k * x[0]), atol=1e-6)
        assert torch.allclose(blk[3:], torch.cos(2.0 ** k * x[0]), atol=1e-6)
    assert positional_encoding(torch.zeros(2, 5, 3), 4).shape == (2, 5, 27)
    assert positional_encoding(x, 2, include_input=False).shape == (1, 12)
    with pytest.raises(ValueError):
        positional_encoding(x, 0, include_input=False)


def test_mlp_shapes_and_layers():
    m = NerfMLP()  # paper: 8 layers of 128, e_in 96, PE 10 / 4 frequencies
    assert len(m.trunk) == 8 and all(layer.out_features == 128 for layer in m.trunk)
    assert m.trunk[0].in_features == 63 + 96
    assert m.trunk[5].in_features == 128 + 63 + 96          # NeRF skip after layer 4
    assert m.view.in_features == 128 + 27 and m.view.out_features == 64
    pts, dirs = torch.rand(7, 11, 3), F.normalize(torch.randn(7, 3), dim=-1)
    rgb, sigma = m(pts, dirs, torch.randn(96))
    assert rgb.shape == (7, 11, 3) and sigma.shape == (7, 11)
    assert bool(((rgb > 0) & (rgb < 1)).all())
    rgb2, sigma2 = m(pts, dirs, torch.randn(7, 96))           # one condition per ray
    assert rgb2.shape == (7, 11, 3)
    m2 = NerfMLP(cond_dim=40, depth=4, width=32, skips=(1,), pos_freqs=6, dir_freqs=2)
    assert m2.trunk[0].in_features == 3 * 13 + 40 and m2.trunk[2].in_features == 32 + 39 + 40
    assert NerfMLP.from_config(m2.config()).config() == m2.config()
    assert bool((sigma >= 0).all())                          # softplus(raw - 1) by default
    raw = NerfMLP(density_activation="relu")                 # AD-NeRF: raw, ReLU'd later
    raw.load_state_dict(m.state_dict())
    c = torch.randn(96)
    torch.testing.assert_close(m(pts, dirs, c)[1], F.softplus(raw(pts, dirs, c)[1] - 1.0))
    with pytest.raises(ConfigError):
        NerfMLP(density_activation="exp")
    with pytest.raises(BadInputError):
        m(pts, dirs, torch.randn(95))
    with pytest.raises(ConfigError):
        NerfMLP(depth=4, skips=(3,))
    with pytest.raises(ConfigError):
        NerfMLP(width=0)


def test_mlp_condition_shortcut_equals_concatenation():
    """W_x gamma(x) + (W_e e + b) per ray is AD-NeRF's Linear(cat(gamma(x), e)) per sample."""
    torch.manual_seed(0)
    m = NerfMLP(cond_dim=96, width=64)
    pts, dirs, cond = torch.rand(5, 9, 3) * 2 - 1, F.normalize(torch.randn(5, 3), dim=-1), \
        torch.randn(5, 96)
    rgb, sigma = m(pts, dirs, cond)
    inp = torch.cat([positional_encoding(pts, 10), cond[:, None].expand(5, 9, 96)], -1)
    h = inp
    for i, layer in enumerate(m.trunk):
        h = torch.relu(layer(h))
        if i in m.skips:
            h = torch.cat([inp, h], -1)
    sig_ref = F.softplus(m.density(h).squeeze(-1) - 1.0)   # the default density activation
    v = torch.cat([m.feature(h), positional_encoding(dirs, 4)[:, None].expand(5, 9, 27)], -1)
    rgb_ref = torch.sigmoid(m.rgb(torch.relu(m.view(v))))
    torch.testing.assert_close(sigma, sig_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rgb, rgb_ref, rtol=1e-5, atol=1e-5)


def test_audio_conditioner_smoothing():
    assert smoothing_indices(torch.tensor([0, 5, 9]), 10).tolist() == [
        [0, 0, 0, 0, 0, 1, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8], [5, 6, 7, 8, 9, 9, 9, 9]]
    torch.manual_seed(0)
    cond = AudioConditioner(AudioEncoder(in_dim=80), code_dim=32, seq_len=8)
    audio = torch.randn(12, 16, 80)
    seq = cond.sequence(audio)
    assert seq.shape == (12, 32)
    idx = smoothing_indices(torch.tensor([3]), 12)
    torch.testing.assert_close(cond(audio[idx])[0], seq[3])
    # the smoothed code is a convex combination of the window's codes
    codes = cond.frame_codes(audio)
    lo, hi = codes[idx[0]].min(0).values, codes[idx[0]].max(0).values
    assert bool(((seq[3] >= lo - 1e-5) & (seq[3] <= hi + 1e-5)).all())
    with pytest.raises(BadInputError):
        cond(torch.randn(2, 7, 16, 80))
    with pytest.raises(BadInputError):
        cond(torch.randn(2, 8, 16, 29))   # features of another width than the encoder's


def _rays(n, g):
    # cameras about 10 dm in front of the head, looking at it (as the tracked cameras)
    o = torch.tensor([0.0, 0.0, 10.0]) + 0.3 * torch.randn(n, 3, generator=g)
    target = 0.5 * torch.randn(n, 3, generator=g)
    d = target - o
    d = d / (-d[:, 2:3])            # unit z-depth, as generate_rays
    return o.contiguous(), d.contiguous()


@pytest.mark.parametrize("stratified", [False, True])
def test_fused_ops_equal_reference_ops_values_and_grads(stratified):
    torch.manual_seed(0)
    # float64: in float32 the two sample_pdf paths round the CDF differently, which moves the
    # fine samples by ~1e-7 dm and the fine colours by ~1e-4
    model = AdNerfBackbone(AdNerfConfig(width=32, depth=4, skips=(1,), n_coarse=16,
                                        n_fine=24), 16, (0.0, 0.0, -0.5), 1.5).double()
    g = torch.Generator().manual_seed(1)
    o, d = (v.double() for v in _rays(64, g))
    bg = torch.rand(64, 3, generator=g, dtype=torch.float64)
    cond = torch.randn(16, generator=g, dtype=torch.float64)
    outs, grads = [], []
    for backend in ("fused", "reference"):
        model.zero_grad()
        gen = torch.Generator().manual_seed(7)
        bgr = bg.clone().requires_grad_(True)
        res = model.render_rays(o, d, 9.0, 12.4, cond, bgr, training=stratified,
                                generator=gen, ray_ops=RayOps(backend))
        out = {"rgb_fine": res.rgb, "depth_fine": res.depth, "opacity_fine": res.opacity,
               **res.extras}
        assert set(out) == {"rgb_coarse", "depth_coarse", "opacity_coarse", "rgb_fine",
                            "depth_fine", "opacity_fine"}
        loss = (out["rgb_coarse"] ** 2).sum() + (out["rgb_fine"] * torch.linspace(
            0, 1, 3, dtype=torch.float64)).sum() + out["opacity_fine"].sum() + 0.1 * out["depth_fine"].sum()
        loss.backward()
        outs.append(out)
        grads.append([p.grad.clone() for p in model.parameters()] + [bgr.grad.clone()])
    for k in outs[0]:
        torch.testing.assert_close(outs[0][k], outs[1][k], rtol=1e-9, atol=1e-9)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    # the coarse rays see the head: not everything is background
    assert float(outs[0]["opacity_fine"].detach().max()) > 0


def test_ray_ops_backend_checked():
    with pytest.raises(ConfigError):
        RayOps("cuda-magic")
    assert math.isclose(float(AdNerfBackbone(radius=2.0).normalize(
        torch.tensor([2.0, 0, 0]))[0]), 1.0)


def test_fine_samples_reference_equals_the_kernel():
    """ops.reference.fine_samples_reference with the uniforms of
    ops.pdf.inverse_transform_uniforms reproduces ops.fine_samples draw for draw."""
    from jeancore import ops
    from jeancore.ops.pdf import inverse_transform_uniforms
    from jeancore.ops.reference import fine_samples_reference

    g = torch.Generator().manual_seed(3)
    t = torch.sort(torch.rand(32, 12, generator=g, dtype=torch.float64) * 4 + 8, -1).values
    w = torch.rand(32, 12, generator=g, dtype=torch.float64)
    for stratified in (False, True):
        fast = ops.fine_samples(t, w, 20, stratified=stratified,
                                generator=torch.Generator().manual_seed(5))
        u = inverse_transform_uniforms(32, 20, stratified, torch.Generator().manual_seed(5), w)
        torch.testing.assert_close(fine_samples_reference(t, w, u), fast, rtol=1e-12,
                                   atol=1e-12)
        assert fast.shape == (32, 32) and bool((fast[:, 1:] >= fast[:, :-1]).all())


def test_backbone_registry_and_configs():
    from jeancore.models import BACKBONES, Backbone, build_backbone, register_backbone
    from jeancore.models.backbone import backbone_class, config_from_dict

    assert backbone_class("adnerf") is AdNerfBackbone and BACKBONES["adnerf"] is AdNerfBackbone
    assert set(BACKBONES) == {"adnerf", "grid"}
    with pytest.raises(ConfigError, match="unknown NeRF backbone 'instant'.*adnerf.*grid"):
        build_backbone("instant")
    # a checkpoint stores the config as plain values (lists); they come back as tuples
    b = build_backbone("adnerf", {"width": 16, "depth": 3, "skips": [1]}, 8, (0.0, 0.0, 1.0),
                       2.0)
    assert b.config == AdNerfConfig(width=16, depth=3, skips=(1,)) and b.cond_dim == 8
    assert b.config_dict()["skips"] == [1]
    assert config_from_dict(AdNerfConfig, b.config_dict()) == b.config
    with pytest.raises(ConfigError, match="unknown AdNerfConfig settings"):
        config_from_dict(AdNerfConfig, {"widht": 3})
    with pytest.raises(ConfigError, match="n_coarse"):
        AdNerfBackbone(AdNerfConfig(n_coarse=2))
    with pytest.raises(ConfigError, match="AdNerfConfig"):
        AdNerfBackbone({"width": 16})
    with pytest.raises(ConfigError, match="already registered"):
        register_backbone(type("Other", (AdNerfBackbone,), {}))
    # the weights keep the names of the version-1 checkpoints (coarse.*, fine.*, center, radius)
    keys = set(b.state_dict())
    assert {"center", "radius"} <= keys and all(
        k.split(".")[0] in ("coarse", "fine", "center", "radius") for k in keys)
    groups = b.param_groups(1e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(b.parameters()))
    assert isinstance(b, Backbone)


def test_adnerf_result_and_losses():
    """RenderedRays of the AD-NeRF backbone: the fine pass, the coarse one in extras, sample
    counts; its losses are the two MSEs (the fine one 0 without a fine pass); n_coarse /
    n_fine override the config for one call."""
    torch.manual_seed(0)
    b = AdNerfBackbone(AdNerfConfig(width=16, depth=3, skips=(1,), n_coarse=8, n_fine=4), 8,
                       (0.0, 0.0, -0.5), 1.5)
    o, d = _rays(5, torch.Generator().manual_seed(2))
    bg, target = torch.rand(5, 3), torch.rand(5, 3)
    cond = torch.randn(8)
    r = b.render_rays(o, d, 9.0, 12.4, cond, bg)
    assert r.rgb.shape == (5, 3) and r.opacity.shape == r.depth.shape == (5,)
    assert r.samples_per_ray.tolist() == [8 + 12] * 5
    terms = b.losses(r, target)
    assert set(terms) == {"coarse", "fine"}
    torch.testing.assert_close(terms["fine"], F.mse_loss(r.rgb, target))
    torch.testing.assert_close(terms["coarse"], F.mse_loss(r.extras["rgb_coarse"], target))
    c = b.render_rays(o, d, 9.0, 12.4, cond, bg, n_fine=0)
    assert c.rgb is c.extras["rgb_coarse"] and c.samples_per_ray.tolist() == [8] * 5
    torch.testing.assert_close(c.rgb, r.extras["rgb_coarse"])
    assert float(b.losses(c, target)["fine"].detach()) == 0.0
    # training mode draws from the generator: the same seed gives the same rays
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a1 = b.render_rays(o, d, 9.0, 12.4, cond, bg, training=True, generator=g1)
    a2 = b.render_rays(o, d, 9.0, 12.4, cond, bg, training=True, generator=g2)
    torch.testing.assert_close(a1.rgb, a2.rgb, rtol=0, atol=0)
    assert not torch.equal(a1.rgb, r.rgb)
