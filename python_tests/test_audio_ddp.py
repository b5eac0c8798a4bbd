"""`jean train-audio` under torchrun with 2 CPU processes (DistributedDataParallel, gloo) takes
the same steps as one process on the same global batch; and the MEAD index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jeancore.data.mead import find_mead_takes
from jeancore.errors import BadInputError

REPO = Path(__file__).resolve().parents[1]


def _train(args, nproc, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    if nproc == 1:
        cmd = [sys.executable, "-m", "jeancore.cli"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "jeancore.cli"]
    r = subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def test_ddp_two_processes_match_one(preprocessed, tmp_path):
    a, b = preprocessed("obama_8s_128").root, preprocessed("lieu_6s_128").root
    common = ["train-audio", f"spk={a}", f"spk={b}", "--ae-epochs", "2", "--audio-epochs", "1",
              "--batch-size", "100", "--negatives", "2", "--device", "cpu", "--quiet"]
    _train(common + ["--out", str(tmp_path / "one")], 1, tmp_path)
    _train(common + ["--out", str(tmp_path / "two")], 2, tmp_path)
    w1 = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    w2 = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    for part in ("landmark_ae", "audio_encoder"):
        for k, v in w1[part]["state"].items():
            torch.testing.assert_close(w2[part]["state"][k], v, atol=2e-5, rtol=1e-4)
    # both took the same steps with the same global-batch losses
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m1["world_size"] == 1
    for stage in ("landmark", "audio"):
        assert m1["training"][stage]["step"] == m2["training"][stage]["step"] > 0
        assert m2["training"][stage]["loss"] == pytest.approx(m1["training"][stage]["loss"],
                                                              rel=1e-4)
    assert m1["training"]["audio"]["negative_kinds"]["other_video"] == \
        m2["training"]["audio"]["negative_kinds"]["other_video"] > 0


def test_mead_index(media, tmp_path):
    """The full MEAD layout: each frontal take is paired with its m4a (real clips linked into a
    MEAD tree); a take without speech is an error naming it."""
    root = tmp_path / "MEAD"
    for ident, emo, lvl, src in (("M030", "neutral", 1, "M030_neutral_level1_001.mp4"),
                                 ("M030", "angry", 3, "M030_angry_level3_001.mp4"),
                                 ("W011", "happy", 3, "W011_happy_level3_001.mp4")):
        v = root / ident / "video" / "front" / emo / f"level_{lvl}" / "001.mp4"
        v.parent.mkdir(parents=True)
        v.symlink_to(media / "mead" / src)
        a = root / ident / "audio" / emo / f"level_{lvl}" / "001.m4a"
        a.parent.mkdir(parents=True)
        a.write_bytes(b"")  # existence is all the index checks
    takes = find_mead_takes(root)
    assert [t.name for t in takes] == ["M030_angry_level3_001", "M030_neutral_level1_001",
                                       "W011_happy_level3_001"]
    assert takes[0].audio == root / "M030" / "audio" / "angry" / "level_3" / "001.m4a"
    assert [t.name for t in find_mead_takes(root, ids=["W011"])] == ["W011_happy_level3_001"]
    (root / "W011" / "audio" / "happy" / "level_3" / "001.m4a").unlink()
    with pytest.raises(BadInputError, match="1 MEAD video.*no speech file.*W011"):
        find_mead_takes(root)
    with pytest.raises(BadInputError, match="no MEAD videos in the full layout"):
        find_mead_takes(media / "mead")  # flat names: the expression-side layout
