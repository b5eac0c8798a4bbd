"""Emotion pairs for the expression transformer (JEAN Sec. 3.2, suppl. 8.3).

A pair is the same identity saying the same sentence in two emotions. Sources:

* the MEAD layout ``<ID>/video/front/<emotion>/level_<k>/<nnn>.mp4`` (pairs found
  automatically; MEAD's sentence numbers match across emotions only for 001-003, beyond that
  the sentences differ and must be matched by transcript, so they are skipped unless asked);
* flat clips named ``<ID>_<emotion>_level<k>_<nnn>.mp4`` (as the shared MEAD samples);
* a user list (CSV with columns ``video_a, video_b`` and optional ``identity, emotion_a,
  emotion_b``; or JSON: a list of objects with those keys).

Each pair's per-frame emotion-feature sequences are aligned with DTW
(:func:`jeancore.ops.align`, JEAN Eq. 3) before training; DTW is never used at inference.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError

__all__ = ["EmotionClip", "EmotionPair", "parse_clip_name", "find_mead_clips", "find_pairs",
           "read_pair_list", "align_pair", "emotion_sequence", "MEAD_EMOTIONS",
           "MEAD_SHARED_SENTENCES"]

MEAD_EMOTIONS = ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad",
                 "surprised")
MEAD_SHARED_SENTENCES = ("001", "002", "003")
"""MEAD sentence numbers that are the same sentence in every emotion (see the MANIFEST)."""

_FLAT = re.compile(r"^(?P<id>[A-Za-z]\d{3})_(?P<emotion>[a-z]+)_level_?(?P<level>\d)_"
                   r"(?P<sentence>\d{3})$")
_VIDEO_EXT = (".mp4", ".mov", ".mkv", ".avi", ".webm")


@dataclass(frozen=True)
class EmotionClip:
    """One clip of a speaker in one emotion.

    Attributes:
        path: the video file.
        identity: speaker id (MEAD: e.g. ``M030``).
        emotion: emotion label (MEAD's names).
        level: intensity level (MEAD 1-3; 0 when unknown).
        sentence: sentence id (MEAD: ``"001"``...; ``""`` when unknown).
    """

    path: Path
    identity: str
    emotion: str
    level: int = 0
    sentence: str = ""


@dataclass(frozen=True)
class EmotionPair:
    """Two clips of one identity saying the same sentence in two emotions."""

    a: EmotionClip
    b: EmotionClip

    @property
    def identity(self) -> str:
        return self.a.identity


def parse_clip_name(path) -> EmotionClip | None:
    """An :class:`EmotionClip` from a MEAD path (either layout), or None if the path does not
    follow one."""
    path = Path(path)
    m = _FLAT.match(path.stem)
    if m:
        return EmotionClip(path, m["id"], m["emotion"], int(m["level"]), m["sentence"])
    parts = path.parts
    # <ID>/video/front/<emotion>/level_<k>/<nnn>.mp4
    if (len(parts) >= 6 and parts[-5] == "video" and parts[-4] == "front"
            and re.fullmatch(r"level_\d", parts[-2]) and re.fullmatch(r"\d{3}", path.stem)):
        return EmotionClip(path, parts[-6], parts[-3], int(parts[-2][-1]), path.stem)
    return None


def find_mead_clips(root) -> list[EmotionClip]:
    """All MEAD-named front-view clips below ``root`` (both layouts), sorted.

    Raises:
        BadInputError: ``root`` does not exist or holds no MEAD-named clip.
    """
    root = Path(root)
    if not root.exists():
        raise BadInputError(f"{root}: no such folder")
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.suffix.lower() in _VIDEO_EXT)
    clips = [c for c in (parse_clip_name(p) for p in files) if c is not None]
    if not clips:
        raise BadInputError(
            f"{root}: no MEAD clips found (expected <ID>/video/front/<emotion>/level_<k>/<nnn>.mp4 "
            "or <ID>_<emotion>_level<k>_<nnn>.mp4); pass a pair list instead")
    return clips


def find_pairs(clips, *, emotions=None, reference: str | None = None,
               all_sentences: bool = False) -> list[EmotionPair]:
    """Same-identity, same-sentence pairs of clips in different emotions.

    Args:
        clips: :class:`EmotionClip` list (e.g. from :func:`find_mead_clips`).
        emotions: keep only these emotions (e.g. the paper's neutral, angry, happy, sad).
        reference: pair every clip only with this emotion (the paper: ``"neutral"``); None
            pairs every two emotions.
        all_sentences: also pair MEAD sentences beyond 001-003 (only correct when the
            sentence numbers are known to match).

    Returns:
        pairs sorted by identity, sentence, emotions; with several levels of one emotion, each
        level is its own clip.
    """
    groups: dict[tuple[str, str], list[EmotionClip]] = {}
    for c in clips:
        if emotions is not None and c.emotion not in emotions:
            continue
        if not all_sentences and c.sentence and c.sentence not in MEAD_SHARED_SENTENCES:
            continue
        groups.setdefault((c.identity, c.sentence), []).append(c)
    pairs = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda c: (c.emotion, c.level, str(c.path)))
        for a, b in itertools.combinations(group, 2):
            if a.emotion == b.emotion:
                continue
            if reference is not None:
                if b.emotion == reference:
                    a, b = b, a
                if a.emotion != reference:
                    continue
            pairs.append(EmotionPair(a, b))
    return pairs


def read_pair_list(path) -> list[EmotionPair]:
    """Pairs from a user's CSV or JSON list (see the module docstring). Relative video paths
    are relative to the list's folder.

    Raises:
        BadInputError: unreadable list, missing columns or files, or a pair whose two
            identities differ (a pair must be one person).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"pair list {path} not found")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as e:
        raise BadInputError(f"pair list {path} could not be read ({e})") from e
    if not isinstance(rows, list) or not rows:
        raise BadInputError(f"pair list {path} is empty or not a list of pairs")
    pairs = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("video_a") or not row.get("video_b"):
            raise BadInputError(f"{path}, pair {n}: needs 'video_a' and 'video_b'")
        clips = []
        for side in ("a", "b"):
            video = Path(row[f"video_{side}"])
            video = video if video.is_absolute() else path.parent / video
            if not video.is_file():
                raise BadInputError(f"{path}, pair {n}: {video} not found")
            parsed = parse_clip_name(video)
            ident = row.get(f"identity_{side}") or row.get("identity") or (
                parsed.identity if parsed else "")
            emotion = row.get(f"emotion_{side}") or (parsed.emotion if parsed else "")
            clips.append(EmotionClip(video, str(ident), str(emotion)))
        if clips[0].identity != clips[1].identity:
            raise BadInputError(
                f"{path}, pair {n}: the two videos are of different identities "
                f"({clips[0].identity!r} and {clips[1].identity!r}); a pair must be the same "
                "person saying the same sentence in two emotions")
        pairs.append(EmotionPair(*clips))
    return pairs


def align_pair(features_a: np.ndarray, features_b: np.ndarray, *, window: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DTW-align two emotion-feature sequences to a common length (JEAN Eq. 3).

    Args:
        features_a: float [N, D]; features_b: float [M, D] (same D).
        window: optional Sakoe-Chiba band half-width in frames.

    Returns:
        (aligned_a [L, D], aligned_b [L, D], path [L, 2]) float32 / int64 numpy, L = length of
        the DTW warping path (symmetric2 step pattern, Euclidean cost).

    Raises:
        BadInputError: different widths, empty or non-finite sequences.
    """
    import torch

    from .. import ops

    a = np.asarray(features_a, np.float32)
    b = np.asarray(features_b, np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise BadInputError(f"a pair's feature sequences must be [N, D] and [M, D] with the same "
                            f"D; got {a.shape} and {b.shape}")
    if len(a) == 0 or len(b) == 0:
        raise BadInputError("a pair has an empty feature sequence")
    try:
        xa, xb, path = ops.align(torch.from_numpy(a), torch.from_numpy(b), window=window)
    except ValueError as e:
        raise BadInputError(f"DTW alignment failed: {e}") from e
    return xa.numpy(), xb.numpy(), np.asarray(path.numpy(), np.int64)


def emotion_sequence(video, *, fps: float = 25.0, cache_dir=None, detector=None,
                     max_gap: int = 5) -> dict:
    """Per-frame emotion features of a clip (expression-only: no audio needed).

    Frames are decoded at ``fps``, the face found with dlib (68 landmarks, short gaps
    interpolated), cropped and fed to the emotion CNN (:mod:`jeancore.data.emotion`). Frames
    with no face that cannot be interpolated are dropped (their indices are returned).

    Args:
        video: the clip.
        cache_dir: when given, the result is cached there as ``<sha256>.npz`` (keyed by the
            video's bytes and ``fps``) and reused.
        detector: a landmark detector (default :class:`~jeancore.data.landmarks.DlibLandmarkDetector`).

    Returns:
        dict with ``features`` float32 [T, 128], ``probs`` float32 [T, 7], ``frames`` int64 [T]
        (indices of the kept frames at ``fps``).

    Raises:
        BadInputError: unreadable video, or fewer than 2 frames with a face.
    """
    from .._io import file_sha256, save_npz
    from .emotion import emotion_from_crops
    from .facecrop import face_crop_grey
    from .landmarks import detect_landmarks
    from .video import iter_frames

    video = Path(video)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{file_sha256(video)[:32]}_{fps:g}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return {k: z[k] for k in ("features", "probs", "frames")}
    frames = list(iter_frames(video, fps))
    track = detect_landmarks(frames, detector, max_gap=max_gap)
    keep = np.flatnonzero(track.valid)
    if len(keep) < 2:
        raise BadInputError(f"{video}: a face was found in {len(keep)} of {len(frames)} frames; "
                            "an expression clip needs a visible face")
    crops = np.stack([face_crop_grey(frames[i], track.points[i]) for i in keep])
    features, probs = emotion_from_crops(crops)
    out = {"features": features, "probs": probs, "frames": keep.astype(np.int64)}
    if cache is not None:
        save_npz(cache, **out)
    return out
