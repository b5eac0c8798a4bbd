"""Shared test fixtures: real media location, CUDA marker, random-input helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import jeancore.ops as ops

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("JEAN_MEDIA", REPO.parent / "shared" / "media"))

requires_cuda = pytest.mark.skipif(
    not ops.cuda_available(),
    reason="needs an NVIDIA GPU and jeancore built with CUDA (JEANCORE_CUDA=ON/AUTO)")


@pytest.fixture(scope="session")
def media() -> Path:
    """The real-media folder (JEAN_MEDIA, default ../shared/media). Missing media is an error,
    not a skip: CI always has it."""
    if not MEDIA.is_dir():
        pytest.fail(f"media folder {MEDIA} not found: set JEAN_MEDIA to the shared media folder")
    return MEDIA


# Real clips preprocessed once per test session and shared by every test module:
# name -> (video relative to the media folder, PreprocessConfig fields).
DATASETS = {
    "obama_4s_450": ("video/obama_20s_450.mp4", dict(max_seconds=4.0)),
    "obama_8s_128": ("video/obama_20s_450.mp4", dict(max_seconds=8.0, size=128)),
    "lieu_6s_128": ("video/lieu_60s_256.mp4", dict(max_seconds=6.0, size=128)),
    "m030_neutral": ("mead/M030_neutral_level1_001.mp4", dict(no_audio=True, size=128)),
    # a second, tiny speaker dataset: "a NeRF checkpoint of another dataset" (test_nerf_train)
    "lieu_2s_64": ("video/lieu_60s_256.mp4", dict(max_seconds=2.0, size=64)),
    # Obama driven by a separate speech file (8 s of radio speech): audio_windows must
    # reproduce its audio_features.npy; also the pose / frozen-pose source of the render tests
    "obama_radio31_128": ("video/obama_20s_450.mp4",
                          dict(audio=str(MEDIA / "audio" / "radio31_8s_en.wav"), size=128)),
}


@pytest.fixture(scope="session")
def preprocessed(media, tmp_path_factory):
    """``preprocessed(name)`` -> PreprocessResult of the real clip ``DATASETS[name]``, made once
    per session (the first call preprocesses, later calls reuse the folder)."""
    from jeancore.data import PreprocessConfig, preprocess

    root = tmp_path_factory.mktemp("datasets")
    cache = {}

    def get(name: str):
        if name not in cache:
            video, cfg = DATASETS[name]
            cache[name] = preprocess(media / video, root / name, PreprocessConfig(**cfg),
                                     progress=False)
        return cache[name]

    return get


# A small NeRF trained on 8 s of the real Obama clip (CPU, about a minute): shared by the NeRF
# training tests and the rendering tests. A small network and few rays so that the run fits in
# CI (2 cores); the paper's settings are the "full" preset. lr 1e-3 -> 1e-4 over the 100 steps.
NERF_LEARN = dict(iters=100, resolution=64, n_rays=192, n_coarse=16, n_fine=16, width=64,
                  lr=1e-3, lr_final=1e-4, val_every=0, val_frames=2, log_every=10,
                  checkpoint_every=50, device="cpu")


@pytest.fixture(scope="session")
def trained_nerf(preprocessed, tmp_path_factory):
    """(run directory, train_nerf's result) of NERF_LEARN on ``obama_8s_128`` with fresh
    encoders (seed 0): a fresh audio encoder and a one-layer expression transformer."""
    import torch

    from jeancore.models import AudioEncoder, ExpressionTransformer
    from jeancore.train import preset_config, train_nerf

    out = tmp_path_factory.mktemp("nerf") / "run"
    torch.manual_seed(0)  # fresh encoders: the NeRF fine-tunes the audio one anyway
    enc, expr = AudioEncoder(in_dim=80), ExpressionTransformer(n_layers=1, ff_dim=256)
    res = train_nerf(preprocessed("obama_8s_128").root, out,
                     preset_config("cpu-smoke", **NERF_LEARN), audio_encoder=enc,
                     expression_model=expr, progress=False)
    return out, res


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "cuda" in item.keywords and not ops.cuda_available():
            item.add_marker(pytest.mark.skip(reason="no CUDA device / CUDA build"))
