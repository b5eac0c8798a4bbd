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


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "cuda" in item.keywords and not ops.cuda_available():
            item.add_marker(pytest.mark.skip(reason="no CUDA device / CUDA build"))
