"""The example scripts run and produce what they claim."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import torch

from conftest import REPO


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_volume_render_example():
    render = load_example("volume_render").render
    color, opacity = render(48, 32, 32)
    assert color.shape == (48, 48, 3) and torch.isfinite(color).all()
    # corners see only the background (gradient from 0.2 to 0.9 down the image, tinted)
    assert opacity[0, 0] < 1e-3 and opacity[-1, -1] < 1e-3
    torch.testing.assert_close(color[0, 0], torch.tensor([0.6, 0.7, 1.0]) * 0.2, atol=1e-3, rtol=0)
    # the centre sees the opaque sphere's colour
    assert opacity[24, 24] > 0.99
    assert color[24, 24, 0] > color[24, 24, 2] + 0.2


def test_dtw_speech_example_runs(media):
    out = subprocess.run([sys.executable, str(REPO / "examples" / "dtw_align_speech.py"),
                          str(media / "audio" / "radio31_8s_en.wav"), "--rate", "0.8"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert "401 frames vs 501 frames" in out
    median = float(out.split("median ")[1].split(" frames")[0])
    assert median <= 1.5, out
