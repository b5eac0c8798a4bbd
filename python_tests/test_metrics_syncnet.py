"""SyncNet LSE-C / LSE-D (jeancore.metrics.syncnet) for user-supplied weights: the weight
layout of syncnet_python's syncnet_v2.model, the offset search against a reference, a
synthetic delay found through the whole pipeline, the crop rule, real face crops, bad
weight files; and metrics.face.lse_c wired to it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from jeancore.data.landmarks import DlibLandmarkDetector
from jeancore.data.video import iter_frames, load_audio
from jeancore.errors import BadInputError
from jeancore.metrics import face as F
from jeancore.metrics.syncnet import (UNAVAILABLE_REASON, SyncNet, load_syncnet, offset_search,
                                      syncnet_crops, syncnet_face_boxes, syncnet_mfcc,
                                      syncnet_scores)

# syncnet_python's SyncNetModel.S: conv layers (Sequential index -> weight shape), each
# followed by its batch norm at index + 1; the MLPs: Linear 0, BatchNorm1d 1, Linear 3
CONVS = {
    "netcnnaud": {0: (64, 1, 3, 3), 4: (192, 64, 3, 3), 8: (384, 192, 3, 3),
                  11: (256, 384, 3, 3), 14: (256, 256, 3, 3), 18: (512, 256, 5, 4)},
    "netcnnlip": {0: (96, 3, 5, 7, 7), 4: (256, 96, 1, 5, 5), 8: (256, 256, 1, 3, 3),
                  11: (256, 256, 1, 3, 3), 14: (256, 256, 1, 3, 3), 18: (512, 256, 1, 6, 6)},
}
MLPS = ("netfcaud", "netfclip")


def _syncnet_python_state(seed=0, dim=1024) -> dict:
    """A random state dict with the keys and shapes of syncnet_v2.model (which, saved by an
    old torch, has no num_batches_tracked entries)."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def bn(prefix, c):
        state[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        state[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)
        state[f"{prefix}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        state[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)

    for net, layers in CONVS.items():
        for i, shape in layers.items():
            fan_in = int(np.prod(shape[1:]))
            state[f"{net}.{i}.weight"] = torch.randn(shape, generator=g) / fan_in ** 0.5
            state[f"{net}.{i}.bias"] = 0.01 * torch.randn(shape[0], generator=g)
            bn(f"{net}.{i + 1}", shape[0])
    for net in MLPS:
        for i, (o, n) in ((0, (512, 512)), (3, (dim, 512))):
            state[f"{net}.{i}.weight"] = torch.randn(o, n, generator=g) / n ** 0.5
            state[f"{net}.{i}.bias"] = 0.01 * torch.randn(o, generator=g)
        bn(f"{net}.1", 512)
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    state = _syncnet_python_state()
    torch.save(state, path, _use_new_zipfile_serialization=False)   # legacy format, as 2017
    return path, state


def test_weights_in_syncnet_python_layout_load(weights):
    path, state = weights
    model = load_syncnet(path)
    assert not model.training and model.embedding_dim == 1024
    own = model.state_dict()
    assert len(state) == 88 and set(state) <= set(own)
    assert {k for k in own if not k.endswith("num_batches_tracked")} == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    g = torch.Generator().manual_seed(1)
    lips = 255 * torch.rand(3, 3, 5, 224, 224, generator=g)
    mfcc = torch.randn(3, 1, 13, 20, generator=g)
    with torch.no_grad():
        v, a = model.forward_lip(lips), model.forward_aud(mfcc)
        assert v.shape == (3, 1024) and a.shape == (3, 1024)
        assert torch.isfinite(v).all() and torch.isfinite(a).all()
        # eval mode: batch norm uses the loaded running statistics (no batch dependence)
        torch.testing.assert_close(model.forward_lip(lips[1:2]), v[1:2], rtol=1e-4, atol=1e-4)
    # a smaller embedding is read from the file
    small = path.with_name("small.model")
    torch.save(_syncnet_python_state(dim=256), small)
    assert load_syncnet(small).embedding_dim == 256


def _reference_mean_distances(v, a, vshift):
    """numpy: mean over windows i of |v_i - a_{i+j} + 1e-6| (zero vectors past the ends)."""
    n, d = v.shape
    out = []
    for j in range(-vshift, vshift + 1):
        dist = []
        for i in range(n):
            aj = a[i + j] if 0 <= i + j < n else np.zeros(d)
            dist.append(np.linalg.norm(v[i] - aj + 1e-6))
        out.append(np.mean(dist))
    return np.array(out)


@pytest.mark.parametrize("delay", [4, 0, -3])
def test_offset_search_against_a_reference(delay):
    """Audio embeddings = the video's delayed by ``delay`` windows (plus noise): the search
    finds offset -delay (syncnet_python's sign); distances match a numpy reference."""
    rng = np.random.default_rng(delay + 10)
    n, d, vshift = 40, 16, 15
    v = rng.normal(size=(n, d))
    a = rng.normal(size=(n, d))
    for k in range(n):
        if 0 <= k - delay < n:
            a[k] = v[k - delay] + 0.05 * rng.normal(size=d)
    offset, conf, dist, mdist = offset_search(v.astype(np.float32), a.astype(np.float32), vshift)
    ref = _reference_mean_distances(v, a, vshift)
    np.testing.assert_allclose(mdist, ref, rtol=1e-5)
    assert offset == -delay
    assert dist == pytest.approx(ref.min(), rel=1e-5)
    assert conf == pytest.approx(np.median(ref) - ref.min(), rel=1e-5) and conf > 0


class _EnergyModel(torch.nn.Module):
    """Stands in for SyncNet: the video embedding is the (centred, unit-norm) brightness of
    the 5 frames of a window, the audio embedding the log energy (MFCC 0) of its 5 frames'
    4 steps each; they agree where the audio loudness follows the brightness."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    @staticmethod
    def _norm(x):
        x = x - x.mean(1, keepdim=True)
        return x / x.norm(dim=1, keepdim=True)

    def forward_lip(self, x):                      # [N, 3, 5, 224, 224]
        assert x.shape[1:] == (3, 5, 224, 224)
        return self._norm(x.mean(dim=(1, 3, 4)))

    def forward_aud(self, x):                      # [N, 1, 13, 20]
        assert x.shape[1:] == (1, 13, 20)
        return self._norm(x[:, 0, 0].reshape(-1, 5, 4).mean(-1))


def _synthetic_clip(delay, n=60, seed=0):
    """Frames whose brightness is random per frame, and noise whose loudness follows the
    brightness ``delay`` frames later (the sound comes late by ``delay`` frames)."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(0, 1, n + abs(delay))
    frames = np.repeat((60 + 120 * b[:n])[:, None, None, None], 3, -1) * np.ones((1, 96, 96, 1))
    loud = np.array([b[k - delay] if 0 <= k - delay < len(b) else rng.uniform(0, 1)
                     for k in range(n)])
    wav = (0.01 * np.exp(2 * np.repeat(loud, 640)) * rng.normal(size=640 * n)).astype(np.float32)
    return frames.astype(np.uint8), wav


@pytest.mark.parametrize("delay", [3, 0, -2])
def test_pipeline_finds_a_synthetic_delay(delay):
    frames, wav = _synthetic_clip(delay)
    box = (24.0, 24.0, 72.0, 72.0)
    res = syncnet_scores(frames, wav, _EnergyModel(), boxes=box)
    assert res.available and res.n_windows == 60 - 5 and len(res.distances) == 31
    assert res.offset_frames == -delay
    assert res.lse_c > 0.3 and res.lse_d == pytest.approx(min(res.distances))
    # metrics.face.lse_c is the same number
    assert F.lse_c(frames, wav, _EnergyModel(), boxes=box) == pytest.approx(res.lse_c)
    # frames at 50 fps are brought to 25 first
    res50 = syncnet_scores(np.repeat(frames, 2, 0), wav, _EnergyModel(), fps=50.0, boxes=box)
    assert res50.offset_frames == -delay and res50.n_windows == res.n_windows


def test_unavailable_without_weights():
    frames, wav = _synthetic_clip(0, n=8)
    res = syncnet_scores(frames, wav)
    assert not res.available and res.lse_c is None and res.lse_d is None
    assert res.reason == UNAVAILABLE_REASON and "--syncnet-weights" in res.reason
    assert F.lse_c(frames, wav) is None


def test_crop_rule():
    """syncnet_python's crop: from s above the box centre to 1.8 s below, 1.4 s either side
    (s = half the box size), grey 110 outside the frame, resized to 224."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 200, 200, 3), dtype=np.uint8)
    crops = syncnet_crops(frames, (80, 60, 120, 100))        # s = 20, centre (100, 80)
    np.testing.assert_array_equal(crops[1], cv2.resize(frames[1, 60:116, 72:128], (224, 224)))
    corner = syncnet_crops(frames, (0, 0, 40, 40))            # columns -8 .. 48: 8 outside
    padded = np.full((56, 56, 3), 110, np.uint8)
    padded[:, 8:] = frames[0, 0:56, 0:48]
    np.testing.assert_array_equal(corner[0], cv2.resize(padded, (224, 224)))
    # frames without a box take interpolated boxes
    boxes = np.array([[80, 60, 120, 100], [np.nan] * 4, [80, 60, 120, 100]], float)
    np.testing.assert_array_equal(syncnet_crops(frames, boxes), crops)
    with pytest.raises(BadInputError, match="no face"):
        syncnet_crops(frames, np.full((3, 4), np.nan))


def test_real_face_crops_and_random_weights(media, weights):
    """12 real frames: dlib boxes, crops with the mouth in their lower middle, embeddings of
    the randomly initialised network through the whole search."""
    video = media / "video/obama_20s_450.mp4"
    frames = np.stack(list(iter_frames(video, 25.0, max_frames=12)))
    wav = load_audio(video)[: 12 * 640]
    det = DlibLandmarkDetector()
    boxes = syncnet_face_boxes(frames, det)
    assert boxes.shape == (12, 4) and np.isfinite(boxes).all()
    lips = det(frames[0])[48:68].mean(0)
    l, t, r, b = boxes[0]
    s = max(r - l, b - t) / 2
    u = (lips[0] - ((l + r) / 2 - 1.4 * s)) / (2.8 * s)     # mouth in crop coordinates
    v = (lips[1] - ((t + b) / 2 - s)) / (2.8 * s)
    assert 0.35 < u < 0.65 and 0.5 < v < 0.85
    assert syncnet_crops(frames, boxes).shape == (12, 224, 224, 3)
    assert syncnet_mfcc(wav).shape == (13, 4 * 12 - 1)
    res = syncnet_scores(frames, wav, load_syncnet(weights[0]), boxes=boxes)
    assert res.n_windows == 7 and res.frames_with_face == 12 and len(res.distances) == 31
    assert res.lse_d > 0 and np.isfinite(res.lse_c) and -15 <= res.offset_frames <= 15


def test_bad_weights_and_input(tmp_path, weights):
    def one_line(exc_info):
        assert "\n" not in str(exc_info.value)

    with pytest.raises(BadInputError, match="no such file") as e:
        load_syncnet(tmp_path / "missing.model")
    one_line(e)
    (tmp_path / "text.model").write_text("not weights")
    with pytest.raises(BadInputError, match="not a PyTorch weights file") as e:
        load_syncnet(tmp_path / "text.model")
    one_line(e)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.model")
    with pytest.raises(BadInputError, match="not a SyncNet weight file") as e:
        load_syncnet(tmp_path / "other.model")
    one_line(e)
    state = dict(weights[1])
    del state["netcnnlip.4.weight"]
    torch.save(state, tmp_path / "missing_key.model")
    with pytest.raises(BadInputError, match="missing 1 keys .*netcnnlip.4.weight") as e:
        load_syncnet(tmp_path / "missing_key.model")
    one_line(e)
    state = dict(weights[1], **{"netcnnaud.0.weight": torch.zeros(64, 1, 5, 5)})
    torch.save(state, tmp_path / "shape.model")
    with pytest.raises(BadInputError, match=r"netcnnaud.0.weight has shape \(64, 1, 5, 5\)") as e:
        load_syncnet(tmp_path / "shape.model")
    one_line(e)
    # a bad weights file fails before any face detection, also through lse_c
    frames, wav = _synthetic_clip(0, n=8)
    with pytest.raises(BadInputError, match="not a PyTorch weights file"):
        F.lse_c(frames, wav, tmp_path / "text.model")
    with pytest.raises(BadInputError, match="at least 6 frames"):
        syncnet_scores(frames[:5], wav, _EnergyModel(), boxes=(24, 24, 72, 72))
    with pytest.raises(BadInputError, match="needs the speech"):
        syncnet_scores(frames, None, _EnergyModel(), boxes=(24, 24, 72, 72))
    with pytest.raises(ValueError, match="16 kHz"):
        syncnet_scores(frames, wav, _EnergyModel(), sr=48000)
    assert isinstance(SyncNet(), torch.nn.Module)


@pytest.mark.cuda
def test_network_on_cuda_matches_cpu(weights):
    frames, wav = _synthetic_clip(2, n=12)
    box = (24.0, 24.0, 72.0, 72.0)
    cpu = syncnet_scores(frames, wav, weights[0], boxes=box)
    gpu = syncnet_scores(frames, wav, weights[0], boxes=box, device="cuda")
    assert gpu.offset_frames == cpu.offset_frames
    np.testing.assert_allclose(gpu.distances, cpu.distances, rtol=1e-3)
