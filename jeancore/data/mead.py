"""The full MEAD layout for the audio side (JEAN Sec. 3.1: the audio encoder is trained on MEAD
frontal videos).

MEAD (Wang et al. 2020) stores, per speaker ``<ID>`` (e.g. ``M030``)::

    <ID>/video/front/<emotion>/level_<k>/<nnn>.mp4     (the frontal camera, no sound)
    <ID>/audio/<emotion>/level_<k>/<nnn>.m4a           (the speech of that take)

:func:`find_mead_takes` pairs each frontal video with its m4a (the clip names are parsed by
:func:`jeancore.data.pairs.parse_clip_name`, shared with the expression side).
:func:`preprocess_mead` runs :func:`jeancore.data.preprocess` on every take with its m4a as
the speech (``--audio``), one dataset folder per take named ``<ID>_<emotion>_level<k>_<nnn>``,
and writes ``mead_index.json`` in the output root listing every finished dataset with its
identity, emotion, level and sentence. ``jean train-audio OUT`` then trains on all of them,
each take being one "video" of its identity (so InfoNCE negatives come from the speaker's
other takes, Eq. 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .._io import save_json
from ..errors import BadInputError
from .pairs import EmotionClip, find_mead_clips

__all__ = ["MEAD_SETTINGS", "MeadTake", "find_mead_takes", "preprocess_mead", "read_mead_index",
           "INDEX_NAME"]

MEAD_SETTINGS = {"size": 256}
"""Preprocessing settings of ``jean preprocess-mead`` that differ from
:class:`~jeancore.data.PreprocessConfig`'s defaults: 256 px frames (many takes, for the audio
training, which reads their landmarks and speech)."""

INDEX_NAME = "mead_index.json"
_AUDIO_EXT = (".m4a", ".wav", ".aac", ".mp3", ".flac")


@dataclass(frozen=True)
class MeadTake:
    """One MEAD take: the frontal video, its speech file and its labels."""

    clip: EmotionClip
    audio: Path

    @property
    def name(self) -> str:
        """Dataset folder name ``<ID>_<emotion>_level<k>_<nnn>``."""
        c = self.clip
        return f"{c.identity}_{c.emotion}_level{c.level}_{c.sentence}"


def _audio_for(clip: EmotionClip) -> Path | None:
    # <root>/<ID>/video/front/<emotion>/level_<k>/<nnn>.mp4 -> <root>/<ID>/audio/<emotion>/...
    p = clip.path
    parts = p.parts
    if len(parts) >= 6 and parts[-5] == "video" and parts[-4] == "front":
        base = Path(*parts[:-5]) / "audio" / parts[-3] / parts[-2]
        for ext in _AUDIO_EXT:
            if (base / (p.stem + ext)).is_file():
                return base / (p.stem + ext)
    return None


def find_mead_takes(root, *, ids=None, emotions=None, levels=None) -> list[MeadTake]:
    """Frontal MEAD videos under ``root`` (the full layout) with their speech files.

    Args:
        root: the MEAD root (the folder holding ``<ID>/``) or one speaker's folder.
        ids, emotions, levels: keep only these speakers / emotions / levels (None: all).

    Returns:
        takes sorted by identity, emotion, level, sentence.

    Raises:
        BadInputError: no MEAD clip in the full layout under ``root``, none left after the
            filters, or a video without its ``audio/.../<nnn>.m4a`` (the list is given).
    """
    root = Path(root)
    clips = [c for c in find_mead_clips(root)
             if c.path.parent.parent.parent.name == "front"]
    if not clips:
        raise BadInputError(f"{root}: no MEAD videos in the full layout "
                            "<ID>/video/front/<emotion>/level_<k>/<nnn>.mp4 (the audio side "
                            "needs each take's audio/<emotion>/level_<k>/<nnn>.m4a)")
    keep = [c for c in clips
            if (ids is None or c.identity in ids) and (emotions is None or c.emotion in emotions)
            and (levels is None or c.level in levels)]
    if not keep:
        have = sorted({c.identity for c in clips})
        raise BadInputError(f"{root}: no MEAD videos left after the filters (identities "
                            f"present: {', '.join(have)})")
    takes, missing = [], []
    for c in sorted(keep, key=lambda c: (c.identity, c.emotion, c.level, c.sentence)):
        a = _audio_for(c)
        if a is None:
            missing.append(str(c.path))
        else:
            takes.append(MeadTake(c, a))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        raise BadInputError(f"{len(missing)} MEAD video(s) have no speech file at "
                            f"<ID>/audio/<emotion>/level_<k>/<nnn>.m4a: {shown}")
    return takes


def read_mead_index(root) -> list[dict]:
    """The entries of ``root/mead_index.json``: dicts with ``dataset`` (folder name under
    ``root``), ``identity``, ``emotion``, ``level``, ``sentence``, ``video``, ``audio``.

    Raises:
        BadInputError: no or unreadable index.
    """
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise BadInputError(f"{root}: no {INDEX_NAME} (made by `jean preprocess-mead`)")
    try:
        index = json.loads(path.read_text())
        entries = index["datasets"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BadInputError(f"{path} is not a MEAD index ({e})") from e
    return list(entries)


def preprocess_mead(root, out, config=None, *, ids=None, emotions=None, levels=None,
                    overwrite: bool = False, progress: bool = True,
                    skip_failed: bool = False) -> list[dict]:
    """Preprocesses every frontal MEAD take with its speech (see the module docstring).

    Args:
        root: the MEAD root.
        out: output root: one dataset folder per take plus ``mead_index.json``.
        config: :class:`jeancore.data.PreprocessConfig` (its ``audio`` / ``no_audio`` are set
            per take).
        ids, emotions, levels: filters (see :func:`find_mead_takes`).
        overwrite: passed to :func:`jeancore.data.preprocess`.
        progress: progress bars.
        skip_failed: a take that fails (e.g. no face) is reported in the index under
            ``failed`` and skipped instead of stopping the run.

    Returns:
        the index entries of the finished datasets. Finished takes are cached (a rerun
        resumes), and the index is rewritten after every take.

    Raises:
        BadInputError: see :func:`find_mead_takes`; a take that fails (unless skip_failed).
    """
    import dataclasses

    from tqdm.auto import tqdm

    from .pipeline import PreprocessConfig, preprocess

    takes = find_mead_takes(root, ids=ids, emotions=emotions, levels=levels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = config or PreprocessConfig()
    entries, failed = [], []
    for t in tqdm(takes, desc="MEAD takes", unit="take", disable=not progress):
        cfg = dataclasses.replace(base, audio=str(t.audio), no_audio=False)
        try:
            preprocess(t.clip.path, out / t.name, cfg, overwrite=overwrite, progress=False)
        except BadInputError as e:
            if not skip_failed:
                raise BadInputError(f"{t.clip.path}: {e}") from e
            failed.append({"video": str(t.clip.path), "error": str(e)})
            continue
        c = t.clip
        entries.append({"dataset": t.name, "identity": c.identity, "emotion": c.emotion,
                        "level": c.level, "sentence": c.sentence, "video": str(c.path),
                        "audio": str(t.audio)})
        save_json(out / INDEX_NAME, {"format": "jeancore-mead-index", "root": str(root),
                                     "datasets": entries, "failed": failed})
    save_json(out / INDEX_NAME, {"format": "jeancore-mead-index", "root": str(root),
                                 "datasets": entries, "failed": failed})
    return entries
