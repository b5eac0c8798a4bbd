"""Paste-back into the source video (jeancore.render.paste_back, SyncTalk --portrait) and the
side-by-side writer, on real videos: the 25 fps Obama clip (through the preprocessed dataset
``obama_8s_128`` and with crops strictly inside the frame) and a 30 fps Obama recording.

"Renders" here are the dataset's own frames (the decode step's crop of the source, resized):
pasting them back must give the source frames again, up to resize / JPEG loss inside the crop
and exactly outside it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jeancore._io import read_image
from jeancore.data.video import iter_frames, probe_video
from jeancore.errors import BadInputError
from jeancore.metrics.face import psnr
from jeancore.render.paste_back import (PasteBackSource, check_crop, feather_mask,
                                        iter_paste_back, iter_source_frames, paste_back_plan,
                                        paste_back_source, source_timeline, write_paste_back)
from jeancore.render.side_by_side import side_by_side, write_side_by_side
from jeancore.render.sources import fit_length

OBAMA = "video/obama_20s_450.mp4"
OBAMA_30FPS = "video_separate_audio/obama_b_30s_256.mp4"


def _decode(path):
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        rate = float(v.average_rate)
        a = c.streams.audio[0] if c.streams.audio else None
        dur_a = float(a.duration * a.time_base) if a is not None and a.duration else None
    return np.stack(frames), rate, dur_a


def _all_frames(path, n):
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(n), c.decode(video=0))]


# ------------------------------------------------------------------------------------------
# which frame goes where
# ------------------------------------------------------------------------------------------
def test_plan_frame_for_frame_at_25_fps_and_ping_pong():
    times = np.arange(300) / 25.0
    d = np.arange(40)
    src, ren = paste_back_plan(d, 7, times, out_fps=25.0)
    assert np.array_equal(ren, d) and np.array_equal(src, 7 + d)
    # audio longer than the clip: the poses ping-pong (render pipeline's rule), and so do
    # the source frames, frame for frame
    pp = fit_length(np.arange(40), 100, "pingpong")
    src, ren = paste_back_plan(pp, 7, times, out_fps=25.0)
    assert np.array_equal(ren, np.arange(100)) and np.array_equal(src, 7 + pp)
    # frozen: one source frame throughout
    src, _ = paste_back_plan(np.full(30, 12), 0, times, out_fps=25.0)
    assert np.all(src == 12)


@pytest.mark.parametrize("fps", [30.0, 23.976, 50.0])
def test_plan_at_other_source_rates(fps):
    times = np.arange(int(30 * fps)) / fps
    first, n_ds = 5, 60
    pp = fit_length(np.arange(n_ds), 150, "pingpong")
    src, ren = paste_back_plan(pp, first, times, out_fps=fps)
    assert len(src) == round(150 / 25 * fps)
    # the render shown at output time t is the one nearest in time
    t = np.arange(len(src)) / fps
    assert np.abs(ren / 25.0 - t).max() <= 0.5 / 25 + 1e-9
    # the backdrop: within one source frame of the source frame of the render's pose frame
    # (the decode step's nearest-timestamp rule), and moving by at most one frame per frame
    pose_src = np.searchsorted(0.5 * (times[:-1] + times[1:]), (first + pp[ren]) / 25.0,
                               side="right")
    assert np.abs(src - pose_src).max() <= 1
    assert np.abs(np.diff(src)).max() <= 1 + int(fps < 25)
    # only source frames of the dataset's span
    lo, hi = pose_src.min(), pose_src.max()
    assert src.min() >= lo - 1 and src.max() <= hi + 1
    if fps > 25:  # forward, every source frame appears (no judder from dropped frames)
        fwd = src[: int(n_ds / 25 * fps) - 2]
        assert np.array_equal(np.unique(fwd), np.arange(fwd.min(), fwd.max() + 1))


def test_feather_mask_and_crop_check():
    m = feather_mask(64, 8)
    assert m.shape == (64, 64) and m.dtype == np.float32
    assert np.all(m[8:-8, 8:-8] == 1.0) and m[0, 0] < 0.01 and 0 < m[0, 32] < 0.1
    assert np.allclose(m, m[::-1]) and np.allclose(m, m.T)
    assert np.all(feather_mask(5, 0) == 1)
    assert check_crop((0, 0, 450), 450, 450) == (0, 0, 450)
    for crop in [(-1, 0, 100), (0, 0, 451), (400, 10, 60), (10, 300, 160)]:
        with pytest.raises(BadInputError, match="not inside") as e:
            check_crop(crop, 450, 450)
        assert "\n" not in str(e.value)


def test_source_frames_streamed_in_any_order(media):
    """Forward, backward (ping-pong) and repeated indices give the same frames as a plain
    decode; backward blocks of a few frames force several seeks."""
    path = media / OBAMA_30FPS
    tl = source_timeline(path)
    assert len(tl) == 902 and tl.fps == 30.0 and (tl.width, tl.height) == (256, 256)
    ref = _all_frames(path, 120)
    idx = np.r_[np.arange(0, 60), np.arange(58, 20, -1), np.arange(21, 40), [39, 39, 110, 3]]
    got = list(iter_source_frames(path, idx, timeline=tl, block_bytes=7 * 256 * 256 * 3))
    assert len(got) == len(idx)
    assert all(np.array_equal(g, ref[i]) for g, i in zip(got, idx))
    with pytest.raises(BadInputError, match="902 frames"):
        list(iter_source_frames(path, [902], timeline=tl))


# ------------------------------------------------------------------------------------------
# pixels
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("video,crop,size,n", [(OBAMA, (60, 30, 320), 256, 10),
                                               (OBAMA_30FPS, (40, 20, 180), 128, 10)])
def test_own_frames_pasted_back_give_the_source(media, video, crop, size, n):
    path = media / video
    tl = source_timeline(path)
    renders = list(iter_frames(path, 25.0, crop=crop, size=size, max_frames=n))
    src = PasteBackSource(video=path, crop=crop, first_frame=0, n_frames=n, fps=25.0,
                          size=size, timeline=tl)
    out = list(iter_paste_back(iter(renders), np.arange(n), src))
    sidx, ridx = paste_back_plan(np.arange(n), 0, tl)
    assert len(out) == len(sidx) == round(n / 25 * tl.fps)
    ref = _all_frames(path, int(sidx.max()) + 1)
    x0, y0, side = crop
    outside = np.ones((tl.height, tl.width), bool)
    outside[y0:y0 + side, x0:x0 + side] = False
    f = int(np.ceil(0.04 * side))
    inner = (slice(y0 + f, y0 + side - f), slice(x0 + f, x0 + side - f))
    for o, s, r in zip(out, sidx, ridx):
        assert o.shape == (tl.height, tl.width, 3)
        assert np.array_equal(o[outside], ref[s][outside])          # exactly the source
    matched = [psnr(o[inner], ref[s][inner]) for o, s in zip(out, sidx)]
    # the same pasted frames over source frames 5 later: what a wrong frame would score
    shifted = [psnr(o[inner], ref[min(s + 5, len(ref) - 1)][inner])
               for o, s in zip(out[:-5], sidx[:-5])]
    if tl.fps == 25.0:
        assert min(matched) > 40.0 and min(matched) > max(shifted) + 5.0, (matched, shifted)
    else:  # the render shows the 25 fps frame nearest in time: up to one source frame off
        assert min(matched) > 32.0 and np.mean(matched) > 38.0, matched
    assert np.mean(matched) > np.mean(shifted) + 8.0, (matched, shifted)


def test_write_paste_back_from_the_dataset(preprocessed, tmp_path):
    """The dataset records its source (the 25 fps Obama clip, crop = the whole frame); a
    dataset frame pasted back has the source's size and rate, the speech is muxed in."""
    from jeancore.data.video import load_audio

    res = preprocessed("obama_8s_128")
    src = paste_back_source(res.root)
    assert src.crop == tuple(res.meta["crop"]) and (src.width, src.height) == (450, 450)
    n = 12
    d = np.arange(20, 20 + n)
    frames = [read_image(res.root / "frames" / f"{res.meta['first_frame'] + j:06d}.jpg")
              for j in d]
    wav = load_audio(res.root / "audio.wav")
    out = tmp_path / "pasted.mp4"
    r = write_paste_back(out, iter(frames), d, res.root, wav[8000:])
    info = probe_video(out)
    video, rate, dur_a = _decode(out)
    assert (r.n_frames, r.fps, r.width, r.height) == (n, 25.0, 450, 450)
    assert video.shape == (n, 450, 450, 3) and rate == 25.0
    assert (info.width, info.height) == (450, 450)
    assert dur_a is not None and abs(dur_a - n / 25) <= 1 / 25
    # frame for frame: each output frame is its source frame (128 px crop upscaled, H.264)
    ref = _all_frames(res.meta["source"]["video"], 20 + n + res.meta["first_frame"])
    scores = [psnr(v, ref[res.meta["first_frame"] + j]) for v, j in zip(video, d)]
    wrong = [psnr(v, ref[res.meta["first_frame"] + j + 6]) for v, j in zip(video[:-6], d[:-6])]
    assert min(scores) > 28.0 and min(scores) > max(wrong) + 3.0, (scores, wrong)
    assert not list(tmp_path.glob(".*"))


def test_paste_back_bad_input_leaves_no_file(preprocessed, media, tmp_path):
    root = preprocessed("obama_8s_128").root
    out = tmp_path / "out.mp4"
    frame = np.zeros((128, 128, 3), np.uint8)

    def copy(edit):
        dst = tmp_path / f"ds{len(list(tmp_path.iterdir()))}"
        shutil.copytree(root, dst, ignore=shutil.ignore_patterns("frames", "head", "parsing"))
        meta = json.loads((dst / "meta.json").read_text())
        edit(meta)
        (dst / "meta.json").write_text(json.dumps(meta))
        return dst

    cases = [
        (copy(lambda m: m["source"].pop("video")), "records no source video"),
        (copy(lambda m: m.pop("crop")), "records no source video"),
        (copy(lambda m: m.update(crop=[100, 0, 400])), "not inside the 450x450"),
        (copy(lambda m: m["source"].update(video=str(tmp_path / "gone.mp4"))), "not there"),
    ]
    for ds, msg in cases:
        with pytest.raises(BadInputError, match=msg) as e:
            write_paste_back(out, iter([frame]), [0], ds)
        assert "\n" not in str(e.value)
        assert not out.exists()
    # another video than the dataset's
    with pytest.raises(BadInputError, match="SHA-256"):
        write_paste_back(out, iter([frame]), [0], root, video=media / OBAMA_30FPS)
    # a render of the wrong size, and too few renders: found while writing -> no partial mp4
    with pytest.raises(BadInputError, match="128x128"):
        write_paste_back(out, iter([np.zeros((64, 64, 3), np.uint8)]), [0], root)
    with pytest.raises(BadInputError, match="rendered frames for 3"):
        write_paste_back(out, iter([frame]), [0, 1, 2], root)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------
# side by side
# ------------------------------------------------------------------------------------------
def test_side_by_side_video(media, tmp_path):
    from jeancore.data.video import load_audio

    gt = list(iter_frames(media / OBAMA, 25.0, size=128, max_frames=8))
    render = [f[::2, ::2] for f in gt]  # another size: resized to the left's height
    img = side_by_side(gt[0], render[0])
    assert img.shape == (128, 256, 3)
    assert np.array_equal(img[:, :128], gt[0])
    labelled = side_by_side(gt[0], render[0], labels=("ground truth", "render"))
    assert labelled.shape == img.shape and not np.array_equal(labelled, img)
    odd = side_by_side(gt[0][:, :127], gt[0])
    assert odd.shape == (128, 256, 3)
    wav = load_audio(media / OBAMA)
    out = tmp_path / "compare.mp4"
    n = write_side_by_side(out, gt, render, 25.0, audio=wav)
    video, rate, dur_a = _decode(out)
    assert n == 8 and video.shape == (8, 128, 256, 3) and rate == 25.0
    assert abs(dur_a - 8 / 25) <= 1 / 25
    assert psnr(video[:, :, :128], np.stack(gt)) > 35.0
    bad = tmp_path / "bad.mp4"
    with pytest.raises(ValueError):
        write_side_by_side(bad, iter(gt), iter(render[:5]))
    assert not bad.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
