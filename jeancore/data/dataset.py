"""Read a dataset made by ``jean preprocess`` (layout: docs/dataset.md).

* :class:`DatasetReader`: the one reader of a dataset folder. Making one reads only
  ``meta.json``; each file is read when asked for. Every part of jeancore that uses a dataset
  (the NeRF's data, the audio training, the driving sources of a rendering) reads it through
  this class.
* :class:`TalkingHeadDataset`: a torch ``Dataset`` of one split, one item per frame.
* :func:`read_meta`: ``meta.json`` alone (:mod:`jeancore.data.meta`).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .._io import read_image
from ..errors import BadInputError, ConfigError
from ._workers import frame_file
from .meta import read_meta

__all__ = ["DatasetReader", "TalkingHeadDataset", "audio_settings", "read_meta"]

SPLITS = ("train", "val", "all")


def audio_settings(meta: dict) -> tuple[dict, int]:
    """The speech-feature settings recorded in a dataset's meta.json, normalised.

    Args:
        meta: any of: the parsed meta.json; its ``"audio"`` entry (``{"features": {...},
            "window": 16, ...}``); or the feature config itself (``{"kind": "logmel",
            "n_mels": 80, "fps": 25, ...}``, :attr:`jeancore.data.audio.LogMelFeatures.config`).

    Returns:
        (feature config dict with at least ``kind``, window length in feature steps; 16 when
        only the feature config is given).

    Raises:
        BadInputError: the dataset was preprocessed without audio (``--no-audio``).
        ConfigError: the dict is none of the above.
    """
    if not isinstance(meta, dict):
        raise ConfigError(f"audio features must be a dict of settings or a dataset path, got "
                          f"{type(meta).__name__}")
    if meta.get("format") == "jeancore-dataset":
        if not meta.get("audio"):
            raise BadInputError("the dataset was preprocessed without audio (--no-audio): it "
                                "has no audio-feature settings to drive a model with speech")
        meta = meta["audio"]
    window = 16
    if "features" in meta and isinstance(meta["features"], dict):
        window = int(meta.get("window", window))
        meta = meta["features"]
    if "kind" not in meta:
        raise ConfigError("audio feature settings need a 'kind' (logmel / mfcc), as recorded "
                          "in the dataset's meta.json 'audio' entry")
    return dict(meta), window


class DatasetReader:
    """The files of a finished dataset folder, read on demand (all frames; see
    :class:`TalkingHeadDataset` for one split).

    Args:
        root: the dataset folder (or its meta.json).

    Attributes:
        root: the folder (Path); meta: its parsed meta.json.
        n_frames, first_frame, fps, size, val_start: from meta.json (frames
            ``val_start ..`` form the validation split; ``first_frame``: the dataset's first
            frame among the decoded frames of ``frames/``).

    Raises:
        BadInputError: not a finished dataset (no meta.json, an interrupted run, a meta.json
            without the frame count, rate, size or split), a newer format; the methods: a file
            of the dataset is missing.
    """

    def __init__(self, root):
        root = Path(root)
        self.meta = m = read_meta(root)
        self.root = root.parent if root.is_file() else root
        try:
            self.n_frames, self.first_frame = int(m["n_frames"]), int(m["first_frame"])
            self.fps, self.size = float(m["fps"]), int(m["size"])
            self.val_start = int(m["split"]["val_start"])
        except (KeyError, TypeError, ValueError) as e:
            raise BadInputError(f"{self.root}/meta.json has no valid n_frames, first_frame, "
                                f"fps, size and split.val_start ({type(e).__name__}: {e}): "
                                "not a complete dataset (run `jean preprocess` again)") from e

    def split(self, which: str) -> np.ndarray:
        """int64 frame indices of ``"train"`` (0 .. val_start-1), ``"val"`` (val_start ..
        n_frames-1) or ``"all"``.

        Raises:
            BadInputError: another name.
        """
        if which not in SPLITS:
            raise BadInputError(f"split must be 'train', 'val' or 'all', got {which!r}")
        return {"train": np.arange(0, self.val_start),
                "val": np.arange(self.val_start, self.n_frames),
                "all": np.arange(self.n_frames)}[which]

    def path(self, name: str) -> Path:
        """``root/name``, which must exist (BadInputError: the dataset is incomplete)."""
        p = self.root / name
        if not p.exists():
            raise BadInputError(f"{self.root}: {name} is missing; the dataset is incomplete "
                                "(run `jean preprocess` again)")
        return p

    def image_file(self, kind: str, j: int) -> Path:
        """The file of dataset frame ``j`` in ``frames/``, ``head/`` (jpg) or ``parsing/``
        (png)."""
        return frame_file(self.root, kind, self.first_frame + int(j))

    # ---- per-frame arrays (all frames) ------------------------------------------------
    def landmarks(self) -> np.ndarray:
        """``landmarks.npz`` ``points``: float32 [T, 68, 2] iBUG-68 points in pixels
        (pixel-corner convention)."""
        with np.load(self.path("landmarks.npz")) as z:
            return z["points"]

    @cached_property
    def tracking_arrays(self) -> dict[str, np.ndarray]:
        """Every array of ``tracking.npz`` (docs/dataset.md), by name; read once."""
        with np.load(self.path("tracking.npz")) as z:
            return {k: z[k] for k in z.files}

    def tracking(self):
        """``tracking.npz`` as a :class:`~jeancore.data.camera.HeadTracking` (rotation,
        translation, camera_to_head, focal, ... of every frame).

        Raises:
            BadInputError: missing, or not a head-tracking file of this jeancore.
        """
        from .camera import HeadTracking

        return HeadTracking.load(self.path("tracking.npz"))

    @property
    def intrinsics(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels at the dataset's size (one focal length)."""
        z = self.tracking_arrays
        f = float(z["focal"])
        return (f, f, float(z["cx"]), float(z["cy"]))

    @property
    def near_far(self) -> tuple[float, float]:
        """(near, far) z-depths in decimetres bounding the head sphere over all frames."""
        z = self.tracking_arrays
        return float(z["near"]), float(z["far"])

    @property
    def head_sphere(self) -> tuple[np.ndarray, float]:
        """(centre float32 [3], radius) of the head sphere in canonical head space,
        decimetres (:meth:`jeancore.data.morphable_model.MorphableModel.head_sphere`). A
        ``tracking.npz`` older than these fields gives the origin and half of far - near."""
        z = self.tracking_arrays
        center = (np.asarray(z["head_center"], np.float32) if "head_center" in z
                  else np.zeros(3, np.float32))
        if "head_radius" in z:
            radius = float(z["head_radius"])
        else:
            near, far = self.near_far
            radius = 0.5 * (far - near)
        return center, radius

    def emotion(self) -> tuple[np.ndarray, np.ndarray]:
        """``emotion.npz``: (features float32 [T, 128], class probabilities float32 [T, 7])."""
        with np.load(self.path("emotion.npz")) as z:
            return z["features"], z["probs"]

    def background(self) -> np.ndarray:
        """``background.png``: uint8 [H, W, 3]."""
        return read_image(self.path("background.png"))

    # ---- speech ------------------------------------------------------------------------
    @property
    def has_audio(self) -> bool:
        """The dataset has speech features (it was not made with ``--no-audio``)."""
        return bool(self.meta.get("audio"))

    @property
    def audio_settings(self) -> tuple[dict, int]:
        """(feature config, window) of the speech features (:func:`audio_settings`).

        Raises:
            BadInputError: made with ``--no-audio``.
        """
        return audio_settings(self.meta)

    def audio_features(self, mmap: bool = False) -> np.ndarray | None:
        """``audio_features.npy``: float32 [T, window, D] speech-feature windows (memory-mapped
        read-only with ``mmap``), or None for a dataset without audio."""
        if not self.has_audio:
            return None
        return np.load(self.path("audio_features.npy"), mmap_mode="r" if mmap else None)

    # ---- identity ----------------------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 (hex) of what identifies the dataset: its source files, frame range, crop,
        size and the tracked cameras (a NeRF trained on it only fits these)."""
        src = self.meta.get("source", {})
        key = {k: self.meta.get(k) for k in ("fps", "size", "n_frames", "first_frame", "crop")}
        key.update(video=src.get("video_sha256"), audio=src.get("audio_sha256"))
        h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
        c2h = self.tracking_arrays["camera_to_head"]
        h.update(np.ascontiguousarray(c2h, dtype=np.float32).tobytes())
        return h.hexdigest()


class TalkingHeadDataset(torch.utils.data.Dataset):
    """A preprocessed talking-head video, one item per frame.

    The split follows the peers (AD-NeRF, RAD-NeRF, ER-NeRF): the last ``val_fraction`` of the
    frames (meta.json ``split``, default 10%) is the validation split, the rest training.

    Args:
        root: dataset directory.
        split: ``"train"``, ``"val"`` or ``"all"``.
        images: load images in ``__getitem__`` (False: per-frame arrays only, fast).

    Attributes (numpy, for the split's frames, in order):
        reader: the :class:`DatasetReader` of the folder (``meta``: its meta.json).
        indices: int64 [N] frame indices in the dataset (0 .. n_frames-1).
        landmarks: float32 [N, 68, 2] iBUG-68 points in pixels (pixel-corner convention).
        camera_to_head: float32 [N, 4, 4] camera-to-canonical-head transforms (OpenGL axes,
            decimetres), from the 3DMM fit.
        expression: float32 [N, 10] 3DMM expression coefficients.
        emotion: float32 [N, 128] emotion features; ``emotion_probs`` float32 [N, 7].
        audio: float32 [N, window, D] windowed speech features, or None (expression-only).
        intrinsics: (fx, fy, cx, cy) pixels; ``near``, ``far``: z-depths in decimetres.
        head_center: float32 [3], head_radius: the head sphere (decimetres).
        background: uint8 [H, W, 3] background image.

    Items (``__getitem__``): a dict of torch tensors: ``index``, ``landmarks``,
    ``camera_to_head``, ``expression``, ``emotion``, ``audio`` (when present) and, with
    ``images``, ``image`` float32 [H, W, 3] in [0, 1] (the head over the background: the NeRF
    target) and ``parsing`` uint8 [H, W] (0 background, 1 torso, 2 head).

    Raises:
        BadInputError: not a finished dataset, files missing, unknown split.
    """

    def __init__(self, root, split: str = "train", *, images: bool = True):
        self.reader = ds = DatasetReader(root)
        self.root, self.meta = ds.root, ds.meta
        self.indices = ds.split(split)
        self.split = split
        self.images = images
        self.first_frame, self.fps, self.size = ds.first_frame, ds.fps, ds.size

        self.landmarks = ds.landmarks()[self.indices]
        tr = ds.tracking_arrays
        self.camera_to_head = tr["camera_to_head"][self.indices]
        self.expression = tr["expression"][self.indices]
        self.intrinsics = ds.intrinsics
        self.near, self.far = ds.near_far
        self.head_center, self.head_radius = ds.head_sphere
        features, probs = ds.emotion()
        self.emotion, self.emotion_probs = features[self.indices], probs[self.indices]
        audio = ds.audio_features(mmap=True)
        self.audio = None if audio is None else audio[self.indices]
        self.background = ds.background()
        for name, arr in (("landmarks", self.landmarks), ("tracking", self.camera_to_head),
                          ("emotion", self.emotion)):
            if len(arr) != len(self.indices):
                raise BadInputError(f"{self.root}: {name} has {len(arr)} frames for a split of "
                                    f"{len(self.indices)}; the dataset is inconsistent")

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def audio_dim(self) -> int | None:
        """Width D of the speech features, or None."""
        return None if self.audio is None else int(self.audio.shape[-1])

    def __len__(self) -> int:
        return len(self.indices)

    def _file(self, kind: str, j: int) -> Path:
        return self.reader.image_file(kind, int(self.indices[j]))

    def frame(self, j: int) -> np.ndarray:
        """The full (cropped, resized) frame ``j`` of the split: uint8 [H, W, 3]."""
        return read_image(self._file("frames", j))

    def head_image(self, j: int) -> np.ndarray:
        """The head composited over the background, frame ``j`` of the split: uint8 [H, W, 3]."""
        return read_image(self._file("head", j))

    def parsing(self, j: int) -> np.ndarray:
        """Label map of frame ``j`` of the split: uint8 [H, W] (0 background, 1 torso, 2 head)."""
        return read_image(self._file("parsing", j), grey=True)

    def __getitem__(self, j: int) -> dict:
        if not -len(self) <= j < len(self):
            raise IndexError(f"frame {j} out of range for a split of {len(self)} frames")
        j = j % len(self)
        item = {
            "index": torch.tensor(int(self.indices[j])),
            "landmarks": torch.from_numpy(self.landmarks[j]),
            "camera_to_head": torch.from_numpy(self.camera_to_head[j]),
            "expression": torch.from_numpy(self.expression[j]),
            "emotion": torch.from_numpy(self.emotion[j]),
        }
        if self.audio is not None:
            item["audio"] = torch.from_numpy(np.array(self.audio[j]))
        if self.images:
            item["image"] = torch.from_numpy(self.head_image(j)).float().div_(255)
            item["parsing"] = torch.from_numpy(self.parsing(j))
        return item
