"""The example scripts run and produce what they claim."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
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


@pytest.fixture(scope="module")
def short_speech(media, tmp_path_factory):
    """The first 1.2 s of a real radio speech clip."""
    import soundfile as sf

    wav, sr = sf.read(media / "audio" / "radio31_8s_en.wav", dtype="float32")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    sf.write(path, wav[: int(1.2 * sr)], sr)
    return path


def _decoded_frames(path):
    import av

    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1
        return sum(1 for _ in c.decode(c.streams.video[0]))


@pytest.mark.parametrize("example,extra", [
    ("dub_new_audio", []),
    ("transfer_expression", ["EXPR", "--audio", "SPEECH"]),
    ("interpolate_expression", ["EXPR", "EXPR2", "--audio", "SPEECH"]),
])
def test_rendering_examples(example, extra, trained_nerf, short_speech, media, tmp_path):
    """Each rendering example makes a 1.2 s mp4 with sound from the session's trained NeRF."""
    out = tmp_path / f"{example}.mp4"
    subst = {"EXPR": str(media / "video/aoc_8s_512.mp4"),
             "EXPR2": str(media / "video/sad_woman_20s_640x360.mp4"),
             "SPEECH": str(short_speech)}
    args = [str(trained_nerf[0])] + ([str(short_speech)] if example == "dub_new_audio" else [])
    args += [subst.get(a, a) for a in extra] + ["--out", str(out), "--size", "32"]
    assert load_example(example).main(args) == 0
    assert _decoded_frames(out) == 30
