"""Preprocessing on real media: the pipeline, its outputs, caching/resume and bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from jeancore._io import read_image
from jeancore.cli import main as jean_main
from jeancore.data import PreprocessConfig, TalkingHeadDataset, preprocess
from jeancore.data import pipeline as pp
from jeancore.data.parsing import LABEL_HEAD
from jeancore.data.video import iter_frames, probe_video
from jeancore.errors import BadInputError, ConfigError

OBAMA_SECONDS = 4.0


@pytest.fixture(scope="session")
def obama_ds(preprocessed):
    """The first 4 s of the Obama clip at 450x450 (the shared session dataset)."""
    return preprocessed("obama_4s_450")


# ------------------------------------------------------------------------------------------
# the Obama dataset
# ------------------------------------------------------------------------------------------
def test_obama_shapes_and_counts(obama_ds, media):
    root, meta = obama_ds.root, obama_ds.meta
    n = round(OBAMA_SECONDS * 25)
    # frame count agrees with the decoded video (25 fps source: one output frame per frame)
    assert probe_video(media / "video/obama_20s_450.mp4").fps == 25
    assert meta["n_frames"] == n and meta["first_frame"] == 0 and meta["size"] == 450
    assert len(list((root / "frames").glob("*.jpg"))) == n
    assert len(list((root / "head").glob("*.jpg"))) == n
    assert len(list((root / "parsing").glob("*.png"))) == n
    with np.load(root / "landmarks.npz") as z:
        assert z["points"].shape == (n, 68, 2) and z["found"].all()
    with np.load(root / "tracking.npz") as z:
        assert z["camera_to_head"].shape == (n, 4, 4)
        assert z["expression"].shape == (n, 10) and z["identity"].shape == (40,)
    with np.load(root / "emotion.npz") as z:
        assert z["features"].shape == (n, 128) and z["probs"].shape == (n, 7)
        np.testing.assert_allclose(z["probs"].sum(1), 1, atol=1e-4)
    feats = np.load(root / "audio_features.npy")
    assert feats.shape == (n, 16, 80) and np.isfinite(feats).all()
    assert (root / "contact_sheet.png").stat().st_size > 10_000
    assert meta["source"]["video_sha256"] and meta["versions"]["torch"]
    assert set(meta["seconds"]) == set(pp.STEPS)


def test_obama_frames_match_decoded_video(obama_ds, media):
    """The dataset frames are the video's frames (Obama: already 450x450, crop = whole frame
    or close to it, so frames agree up to JPEG and resampling error)."""
    x0, y0, side = obama_ds.meta["crop"]
    assert 400 <= side <= 450
    src = list(iter_frames(media / "video/obama_20s_450.mp4", 25, crop=(x0, y0, side), size=450,
                           max_frames=5))
    for i, frame in enumerate(src):
        ds = read_image(obama_ds.root / "frames" / f"{i:06d}.jpg")
        assert np.abs(ds.astype(float) - frame).mean() < 3.0


def test_obama_audio_covers_every_frame(obama_ds):
    import soundfile as sf

    wav, sr = sf.read(obama_ds.root / "audio.wav")
    n = obama_ds.meta["n_frames"]
    assert sr == 16000 and abs(len(wav) - n / 25 * sr) <= 1
    feats = np.load(obama_ds.root / "audio_features.npy")
    # speech varies over time: windows of distinct frames differ, none is constant padding
    assert (feats.std(axis=(1, 2)) > 0.1).all()
    assert not np.allclose(feats[0], feats[-1])


def test_obama_reprojection_error(obama_ds):
    err = obama_ds.meta["tracking"]["reprojection_error_px_mean"]
    print(f"Obama 450x450 mean 3DMM reprojection error: {err:.3f} px")
    assert err < 3.0
    t = obama_ds.meta["tracking"]
    assert 0 < t["near"] < t["far"]


def test_obama_head_mask(obama_ds):
    root = obama_ds.root
    with np.load(root / "landmarks.npz") as z:
        pts = z["points"]
    for i in range(0, len(pts), 10):
        label = read_image(root / "parsing" / f"{i:06d}.png", grey=True)
        head = label == LABEL_HEAD
        # inner face landmarks (brows, nose, eyes, mouth) fall in the head mask
        inner = pts[i, 17:]
        rows = np.clip(inner[:, 1].astype(int), 0, 449)
        cols = np.clip(inner[:, 0].astype(int), 0, 449)
        assert head[rows, cols].mean() >= 0.95, f"frame {i}"
        # the head never touches the left, right or bottom border of the frame
        assert not head[:, :3].any() and not head[:, -3:].any() and not head[-3:].any()
        assert 0.1 < head.mean() < 0.6


def test_obama_background_agrees_with_frames(obama_ds):
    """Where the person never is, the background equals the frames (up to compression)."""
    import cv2

    root = obama_ds.root
    n = obama_ds.meta["n_frames"]
    labels = np.stack([read_image(root / "parsing" / f"{i:06d}.png", grey=True)
                       for i in range(n)])
    never = (labels == 0).all(0).astype(np.uint8)
    never = cv2.erode(never, np.ones((15, 15), np.uint8)).astype(bool)
    assert never.mean() > 0.2
    bg = read_image(root / "background.png").astype(float)
    for i in range(0, n, 20):
        frame = read_image(root / "frames" / f"{i:06d}.jpg").astype(float)
        assert np.abs(frame - bg)[never].mean() < 4.0
    # and the background differs from a frame where the person is
    frame = read_image(root / "frames" / "000000.jpg").astype(float)
    person = labels[0] > 0
    assert np.abs(frame - bg)[person].mean() > 15


def test_dataset_loader_split(obama_ds):
    n = obama_ds.meta["n_frames"]
    train = TalkingHeadDataset(obama_ds.root, "train")
    val = TalkingHeadDataset(obama_ds.root, "val")
    assert len(train) == n - 10 and len(val) == 10
    assert val.indices[0] == n - 10 and train.indices[-1] == n - 11
    item = val[0]
    assert item["image"].shape == (450, 450, 3) and 0 <= item["image"].min() <= item["image"].max() <= 1
    assert item["audio"].shape == (16, 80) and item["camera_to_head"].shape == (4, 4)
    assert item["parsing"].shape == (450, 450)
    assert int(item["index"]) == n - 10
    # the image is the head over the background: background pixels equal background.png
    bg = train.background
    far = (item["parsing"].numpy() != LABEL_HEAD)
    diff = np.abs(item["image"].numpy() * 255 - bg)[far].mean()
    assert diff < 3.0
    assert train.audio_dim == 80 and train.intrinsics[0] > 0
    with pytest.raises(IndexError):
        val[10]


def test_dataset_loader_errors(tmp_path, obama_ds):
    with pytest.raises(BadInputError, match="not a jeancore dataset"):
        TalkingHeadDataset(tmp_path)
    bad = tmp_path / "copy"
    shutil.copytree(obama_ds.root, bad)
    (bad / "emotion.npz").unlink()
    with pytest.raises(BadInputError, match="emotion.npz is missing"):
        TalkingHeadDataset(bad)
    with pytest.raises(BadInputError, match="split"):
        TalkingHeadDataset(obama_ds.root, "test")


def test_dataset_reader(tmp_path, obama_ds):
    """DatasetReader gives what TalkingHeadDataset, the NeRF data and the rendering sources
    read: the same arrays as the files, the head sphere (with the fallback of old
    tracking.npz files), the audio settings, a fingerprint that follows the cameras."""
    from jeancore.data import DatasetReader
    from jeancore.render.sources import audio_feature_config

    root, meta = obama_ds.root, obama_ds.meta
    ds = DatasetReader(root)
    assert ds.n_frames == meta["n_frames"] and ds.val_start == meta["split"]["val_start"]
    assert ds.split("val").tolist() == list(range(ds.val_start, ds.n_frames))
    allds = TalkingHeadDataset(root, "all", images=False)
    with np.load(root / "tracking.npz") as z:
        np.testing.assert_array_equal(ds.tracking().camera_to_head, z["camera_to_head"])
        np.testing.assert_array_equal(allds.camera_to_head, z["camera_to_head"])
        np.testing.assert_array_equal(ds.head_sphere[0], z["head_center"])
        assert ds.head_sphere[1] == float(z["head_radius"]) == allds.head_radius
        assert ds.near_far == (float(z["near"]), float(z["far"]))
        arrays = {k: z[k] for k in z.files}
    assert ds.audio_settings == (meta["audio"]["features"], 16)
    assert ds.audio_settings == audio_feature_config(root) == audio_feature_config(
        root / "meta.json")
    np.testing.assert_array_equal(ds.audio_features(mmap=True), allds.audio)
    # the fingerprint depends on meta.json and the cameras only
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(root / "meta.json", copy / "meta.json")
    shutil.copy(root / "tracking.npz", copy / "tracking.npz")
    assert DatasetReader(copy).fingerprint() == ds.fingerprint()
    old = {k: v for k, v in arrays.items() if k not in ("head_center", "head_radius")}
    old["camera_to_head"] = old["camera_to_head"] + np.float32(1e-3)
    np.savez(copy / "tracking.npz", **old)
    moved = DatasetReader(copy)
    assert moved.fingerprint() != ds.fingerprint()
    near, far = ds.near_far
    assert moved.head_sphere[0].tolist() == [0, 0, 0]
    assert moved.head_sphere[1] == pytest.approx(0.5 * (far - near))
    with pytest.raises(BadInputError, match="landmarks.npz is missing"):
        moved.landmarks()


# ------------------------------------------------------------------------------------------
# caching and resume
# ------------------------------------------------------------------------------------------
def test_rerun_uses_cache_and_resumes_after_interrupt(obama_ds, tmp_path, media, monkeypatch):
    root = tmp_path / "ds"
    shutil.copytree(obama_ds.root, root)
    video = media / "video/obama_20s_450.mp4"
    cfg = PreprocessConfig(max_seconds=OBAMA_SECONDS)
    res = preprocess(video, root, cfg, progress=False)
    assert all(v == 0 for v in res.meta["seconds"].values()), res.meta["seconds"]

    # a changed setting reruns only the steps that depend on it
    cfg2 = PreprocessConfig(max_seconds=OBAMA_SECONDS, n_mels=40)
    res = preprocess(video, root, cfg2, progress=False)
    ran = {k for k, v in res.meta["seconds"].items() if v > 0}
    assert ran == {"audio"}
    assert np.load(root / "audio_features.npy").shape[-1] == 40

    # an interruption (Ctrl-C) in the parsing step keeps the finished steps and meta.json is
    # gone until the run completes
    calls = []

    def interrupted(ctx):
        calls.append(1)
        raise KeyboardInterrupt

    (root / ".steps" / "parsing.json").unlink()
    monkeypatch.setitem(pp.STEPS, "parsing", dataclasses.replace(pp.STEPS["parsing"],
                                                                  run=interrupted))
    with pytest.raises(KeyboardInterrupt):
        preprocess(video, root, cfg2, progress=False)
    assert calls and not (root / "meta.json").exists()
    assert (root / "frames").is_dir() and (root / "tracking.npz").is_file()
    with pytest.raises(BadInputError, match="interrupted"):
        TalkingHeadDataset(root)
    monkeypatch.undo()
    res = preprocess(video, root, cfg2, progress=False)
    ran = {k for k, v in res.meta["seconds"].items() if v > 0}
    assert ran == {"parsing"}, res.meta["seconds"]
    assert len(TalkingHeadDataset(root, "all")) == res.meta["n_frames"]

    # a deleted output is made again
    (root / "contact_sheet.png").unlink()
    res = preprocess(video, root, cfg2, progress=False)
    assert {k for k, v in res.meta["seconds"].items() if v > 0} == {"contact_sheet"}
    assert (root / "contact_sheet.png").is_file()


def test_output_dir_of_another_video_is_refused(obama_ds, tmp_path, media):
    root = tmp_path / "ds"
    shutil.copytree(obama_ds.root, root)
    other = media / "video/lieu_60s_256.mp4"
    with pytest.raises(BadInputError, match="another video.*--overwrite"):
        preprocess(other, root, PreprocessConfig(max_seconds=1.2, size=256), progress=False)
    assert (root / "meta.json").is_file()  # untouched
    res = preprocess(other, root, PreprocessConfig(max_seconds=1.2, size=256),
                     overwrite=True, progress=False)
    assert res.meta["n_frames"] == 30 and res.meta["source"]["video"].endswith("lieu_60s_256.mp4")
    assert len(list((root / "frames").glob("*.jpg"))) == 30

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not a jeancore dataset"):
        preprocess(other, foreign, PreprocessConfig(max_seconds=1.2, size=256),
                   overwrite=True, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------
# other real clips
# ------------------------------------------------------------------------------------------
def test_separate_audio_clip_30fps(media, tmp_path):
    video = media / "video_separate_audio/noem_18s_256.mp4"
    res = preprocess(video, tmp_path / "noem",
                     PreprocessConfig(audio=str(video.with_suffix(".wav")), size=256,
                                      max_seconds=3.0), progress=False)
    assert probe_video(video).fps == 30 and not probe_video(video).has_audio
    assert res.meta["n_frames"] == 75  # 3 s resampled from 30 to 25 fps
    assert np.load(tmp_path / "noem/audio_features.npy").shape == (75, 16, 80)
    assert res.meta["tracking"]["reprojection_error_px_mean"] < 3.0 * 256 / 450 * 1.5
    assert res.meta["source"]["audio_sha256"]


def test_lieu_256(media, tmp_path):
    res = preprocess(media / "video/lieu_60s_256.mp4", tmp_path / "lieu",
                     PreprocessConfig(size=256, max_seconds=2.0), progress=False)
    assert res.meta["n_frames"] == 50 and res.meta["landmarks"]["found"] == 50
    print("Lieu 256 reprojection error", res.meta["tracking"]["reprojection_error_px_mean"])
    assert res.meta["tracking"]["reprojection_error_px_mean"] < 3.0


def test_mead_clip_expression_only(media, tmp_path):
    res = preprocess(media / "mead/M030_sad_level3_001.mp4", tmp_path / "mead",
                     PreprocessConfig(no_audio=True, size=256), progress=False)
    assert res.meta["audio"] is None and res.meta["n_frames"] == 95
    assert not (tmp_path / "mead/audio_features.npy").exists()
    ds = TalkingHeadDataset(tmp_path / "mead", "all", images=False)
    assert not ds.has_audio and "audio" not in ds[0]


# ------------------------------------------------------------------------------------------
# bad input: the real edge clips
# ------------------------------------------------------------------------------------------
def test_no_face_anywhere(media, tmp_path):
    out = tmp_path / "noface"
    with pytest.raises(BadInputError, match="no face found"):
        preprocess(media / "edge/no_face_4s.mp4", out, progress=False)
    assert not out.exists()  # nothing half-written


def test_face_that_leaves_the_frame(media, tmp_path):
    video = media / "edge/face_then_no_face_6s.mov"
    # default: keep the stretch with the face, report the dropped frames
    res = preprocess(video, tmp_path / "trim", PreprocessConfig(size=192), progress=False)
    lm = res.meta["landmarks"]
    assert lm["dropped"] > 0 and lm["no_face_frames"] != "none"
    assert res.meta["n_frames"] + lm["dropped"] == res.meta["n_decoded"]
    assert res.meta["n_frames"] >= 25 and lm["found"] == res.meta["n_frames"] - lm["interpolated"]
    ds = TalkingHeadDataset(tmp_path / "trim", "all")
    assert len(ds) == res.meta["n_frames"] and ds.audio.shape[0] == len(ds)
    # --missing-face error: a clear error naming the frames, nothing left behind
    out = tmp_path / "strict"
    with pytest.raises(BadInputError, match=r"frames have no face.*frames \d+-\d+"):
        preprocess(video, out, PreprocessConfig(size=192, missing_face="error", max_seconds=3),
                   progress=False)
    assert not out.exists()


def test_no_audio_track(media, tmp_path):
    video = media / "edge/carphone_4s_qcif_noaudio.mp4"
    with pytest.raises(BadInputError, match="no audio track.*--audio.*--no-audio"):
        preprocess(video, tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    # the documented fallback: expression-only, or a separate audio file
    res = preprocess(video, tmp_path / "b", PreprocessConfig(no_audio=True, size=128,
                                                             max_seconds=1.0), progress=False)
    assert res.meta["audio"] is None and res.meta["n_frames"] == 25
    res = preprocess(video, tmp_path / "c",
                     PreprocessConfig(audio=str(media / "audio/radio31_8s_en.wav"), size=128,
                                      max_seconds=1.0), progress=False)
    assert np.load(tmp_path / "c/audio_features.npy").shape == (25, 16, 80)


def test_not_a_video_and_truncated(media, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(BadInputError, match="could not be opened as a video"):
        preprocess(text, tmp_path / "x", progress=False)
    data = (media / "video/obama_20s_450.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInputError, match="truncated|corrupt"):
        preprocess(cut, tmp_path / "y", progress=False)
    with pytest.raises(BadInputError, match="no such file"):
        preprocess(tmp_path / "missing.mp4", tmp_path / "z", progress=False)
    assert not any((tmp_path / d).exists() for d in "xyz")


def test_bad_settings(media, tmp_path):
    with pytest.raises(ConfigError, match="size"):
        preprocess(media / "video/obama_20s_450.mp4", tmp_path / "s", PreprocessConfig(size=7))
    with pytest.raises(ConfigError, match="contradict"):
        PreprocessConfig(audio="a.wav", no_audio=True).validate()


def test_cli_reports_errors_clearly(media, tmp_path, capsys):
    rc = jean_main(["preprocess", str(media / "edge/no_face_4s.mp4"), "--out",
                    str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "jean: error:" in err and "no face found" in err
    assert "Traceback" not in err


def test_cli_preprocess_runs(media, tmp_path, capsys):
    rc = jean_main(["preprocess", str(media / "mead/W011_happy_level3_001.mp4"), "--out",
                    str(tmp_path / "w"), "--no-audio", "--size", "128", "--max-seconds", "1.2",
                    "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "frames 30 at 25 fps" in out and "reprojection error" in out
    meta = json.loads((tmp_path / "w/meta.json").read_text())
    assert meta["n_frames"] == 30 and meta["config"]["size"] == 128


def test_sad_woman_emotion(media, tmp_path):
    """A crying face (640x360, 23.976 fps): "sad" is the top emotion for most frames. The clip
    turns to laughter after about 9 s (see test_emotion.py), so its first 5 s are used."""
    res = preprocess(media / "video/sad_woman_20s_640x360.mp4", tmp_path / "sad",
                     PreprocessConfig(size=256, max_seconds=5.0), progress=False)
    top = res.meta["emotion"]["top_class_fraction"]
    print("sad_woman first 5 s, top-class fractions:", top)
    assert max(top, key=top.get) == "sad" and top["sad"] > 0.5
    assert res.meta["n_frames"] == 125 and res.meta["crop"][2] <= 360
