"""Emotion pairs (JEAN Sec. 3.2): discovery in MEAD layouts and user lists, DTW alignment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jeancore.data.pairs import (align_pair, emotion_sequence, find_mead_clips, find_pairs,
                                 parse_clip_name, read_pair_list)
from jeancore.errors import BadInputError


def test_shared_mead_clips_give_21_pairs_per_speaker(media):
    clips = find_mead_clips(media / "mead")
    # the 1080p copy with audio follows no MEAD naming and is not a front-view clip
    assert len(clips) == 14
    assert {c.identity for c in clips} == {"M030", "W011"}
    pairs = find_pairs(clips)
    assert len(pairs) == 42  # 7 emotions -> 21 pairs per speaker
    for p in pairs:
        assert p.a.identity == p.b.identity and p.a.sentence == p.b.sentence == "001"
        assert p.a.emotion != p.b.emotion
    ref = find_pairs(clips, reference="neutral", emotions=("neutral", "angry", "happy", "sad"))
    assert len(ref) == 6 and all(p.a.emotion == "neutral" for p in ref)


def test_full_mead_layout(tmp_path):
    for ident in ("M003", "W009"):
        for emo, level in (("neutral", 1), ("sad", 3), ("happy", 3)):
            for sent in ("001", "002", "031"):
                f = tmp_path / ident / "video" / "front" / emo / f"level_{level}" / f"{sent}.mp4"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(b"")
    clips = find_mead_clips(tmp_path)
    assert len(clips) == 18
    c = parse_clip_name(tmp_path / "M003/video/front/sad/level_3/002.mp4")
    assert (c.identity, c.emotion, c.level, c.sentence) == ("M003", "sad", 3, "002")
    pairs = find_pairs(clips)
    # sentence 031 differs between emotions in MEAD: skipped unless asked
    assert len(pairs) == 2 * 2 * 3 and all(p.a.sentence in ("001", "002") for p in pairs)
    assert len(find_pairs(clips, all_sentences=True)) == 2 * 3 * 3
    with pytest.raises(BadInputError, match="no MEAD clips"):
        find_mead_clips(tmp_path / "M003" / "video" / "front" / "sad" / "level_3" / "..")


def test_pair_list_csv_json_and_identity_check(media, tmp_path):
    a = media / "mead/M030_neutral_level1_001.mp4"
    b = media / "mead/M030_sad_level3_001.mp4"
    w = media / "mead/W011_sad_level3_001.mp4"
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(f"video_a,video_b\n{a},{b}\n")
    pairs = read_pair_list(csv_path)
    assert len(pairs) == 1 and pairs[0].identity == "M030" and pairs[0].b.emotion == "sad"
    json_path = tmp_path / "pairs.json"
    json_path.write_text(json.dumps([{"video_a": str(a), "video_b": str(w)}]))
    with pytest.raises(BadInputError, match="different identities"):
        read_pair_list(json_path)
    json_path.write_text(json.dumps([{"video_a": str(a), "video_b": str(w), "identity": "x"}]))
    assert read_pair_list(json_path)[0].identity == "x"  # the user says they are one person
    csv_path.write_text("video_a\nfoo.mp4\n")
    with pytest.raises(BadInputError, match="needs 'video_a' and 'video_b'"):
        read_pair_list(csv_path)
    csv_path.write_text("video_a,video_b\nmissing.mp4,also.mp4\n")
    with pytest.raises(BadInputError, match="not found"):
        read_pair_list(csv_path)


def test_time_warped_copy_is_aligned_back_within_one_frame(media, tmp_path):
    """DTW alignment quality (issue 5's check): a real emotion-feature sequence against a
    time-warped copy of itself; the path maps every warped frame back to its source frame."""
    seq = emotion_sequence(media / "mead/W011_happy_level3_001.mp4", cache_dir=tmp_path)
    x = seq["features"]
    assert x.shape[1] == 128 and len(x) > 80
    # a smooth, monotone warp: slow at the start, fast at the end
    n = len(x)
    t = np.linspace(0, 1, int(n * 1.3))
    src = np.round((n - 1) * t ** 1.4).astype(int)
    y = x[src]
    xa, ya, path = align_pair(x, y)
    err = np.abs(path[:, 0] - src[path[:, 1]])
    print(f"warped-copy alignment: mean error {err.mean():.3f} frames, max {err.max()}")
    assert err.max() <= 1 and err.mean() < 0.2
    np.testing.assert_array_equal(xa, x[path[:, 0]])
    # the cache is reused
    again = emotion_sequence(media / "mead/W011_happy_level3_001.mp4", cache_dir=tmp_path)
    np.testing.assert_array_equal(again["features"], x)


def test_align_pair_errors():
    with pytest.raises(BadInputError, match="same D"):
        align_pair(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(BadInputError, match="empty"):
        align_pair(np.zeros((0, 3)), np.zeros((5, 3)))
    with pytest.raises(BadInputError):
        align_pair(np.full((4, 3), np.nan), np.zeros((5, 3)))


def test_emotion_sequence_without_a_face(media):
    from jeancore.data.landmarks import DlibLandmarkDetector

    with pytest.raises(BadInputError, match="face"):
        emotion_sequence(media / "edge/no_face_4s.mp4",
                         detector=DlibLandmarkDetector(upsample_retry=False))
