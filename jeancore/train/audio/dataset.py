"""The datasets of the audio training and evaluation: one preprocessed video each, all frames
loaded (normalised landmarks and speech-feature windows), with its identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import BadInputError
from ...models.audio import normalize_landmarks
from ...models.audio_model import FEATURE_KEYS, audio_features_of

__all__ = ["AudioDataset", "load_audio_datasets"]


@dataclass
class AudioDataset:
    """One preprocessed video for the audio training (all frames loaded).

    Attributes:
        root: dataset folder; ``name``: its folder name; ``identity``: the speaker.
        landmarks: float32 [T, 51, 2] normalised landmarks (all frames).
        audio: float32 [T, window, D] speech-feature windows.
        val_start: first validation frame (frames ``val_start ..`` are the validation split).
        fps: frames per second; ``features``: see :class:`~jeancore.models.AudioModel`.
    """

    root: Path
    name: str
    identity: str
    landmarks: np.ndarray
    audio: np.ndarray
    val_start: int
    fps: float
    features: dict

    def split(self, which: str) -> np.ndarray:
        """Frame indices of ``"train"``, ``"val"`` or ``"all"``."""
        t = len(self.landmarks)
        return {"train": np.arange(0, self.val_start), "val": np.arange(self.val_start, t),
                "all": np.arange(t)}[which]


def _parse_source(src):
    """(path, identity or None) from a path, ``IDENTITY=PATH``, a (path, identity) pair or a
    dict with ``path`` / ``identity``."""
    if isinstance(src, dict):
        return Path(src["path"]), src.get("identity")
    if isinstance(src, (tuple, list)) and len(src) == 2:
        return Path(src[0]), src[1]
    s = str(src)
    if "=" in s and not Path(s).exists():
        ident, p = s.split("=", 1)
        if ident and p:
            return Path(p), ident
    return Path(s), None


def load_audio_datasets(sources) -> list[AudioDataset]:
    """Reads preprocessed datasets for the audio training / evaluation.

    Args:
        sources: dataset folders, as paths, ``"IDENTITY=PATH"`` strings, (path, identity)
            pairs, dicts or loaded :class:`AudioDataset` objects (kept as they are); a folder with a MEAD index (``mead_index.json``, written by
            ``jean preprocess-mead``) stands for all its clips with their identities. The
            identity of a plain folder defaults to its name.

    Returns:
        the datasets, in order.

    Raises:
        BadInputError: not a dataset, no audio features, files missing or inconsistent,
            datasets with different feature kinds / widths, no source.
    """
    from ...data.dataset import DatasetReader
    from ...data.mead import read_mead_index

    if isinstance(sources, (str, Path)):
        sources = [sources]
    items, ready = [], {}
    for src in sources:
        if isinstance(src, AudioDataset):  # already loaded (e.g. with another split point)
            ready[len(items)] = src
            items.append((src.root, src.identity))
            continue
        path, ident = _parse_source(src)
        if path.is_dir() and (path / "mead_index.json").is_file() \
                and not (path / "meta.json").is_file():
            for e in read_mead_index(path):
                items.append((path / e["dataset"], ident or e["identity"]))
        else:
            items.append((path, ident))
    if not items:
        raise BadInputError("no datasets given")
    out = []
    for i, (path, ident) in enumerate(items):
        if i in ready:
            out.append(ready[i])
            continue
        ds = DatasetReader(path)
        meta = ds.meta
        feats = audio_features_of(meta, path)
        n = ds.n_frames
        pts = np.asarray(ds.landmarks(), np.float32)
        audio = ds.audio_features().astype(np.float32, copy=False)
        if len(pts) != n or audio.shape[0] != n:
            raise BadInputError(f"{path}: landmarks ({len(pts)}) / audio features "
                                f"({audio.shape[0]}) do not have n_frames={n} rows")
        if audio.ndim != 3 or audio.shape[2] != feats["dim"] \
                or audio.shape[1] != feats["window"]:
            raise BadInputError(f"{path}: audio_features.npy is {list(audio.shape)}, meta.json "
                                f"says window {feats['window']} x {feats['dim']}")
        if not np.isfinite(audio).all():
            raise BadInputError(f"{path}: audio features contain NaN or infinite values")
        out.append(AudioDataset(path, path.name, str(ident or path.name),
                                normalize_landmarks(pts).numpy(), audio,
                                int(meta["split"]["val_start"]), float(meta["fps"]), feats))
    ref = out[0].features
    for d in out[1:]:
        diff = [f"{k}: {d.features[k]!r} vs {ref[k]!r}" for k in FEATURE_KEYS
                if d.features.get(k) != ref.get(k)]
        if diff:
            raise BadInputError(f"datasets {out[0].root} and {d.root} have different audio "
                                f"features ({'; '.join(diff)}); preprocess them with the same "
                                "--audio-features")
    return out
