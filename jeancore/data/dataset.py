"""Load a dataset made by ``jean preprocess`` (layout: docs/dataset.md); ``read_meta``:
:mod:`jeancore.data.meta`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._io import read_image
from ..errors import BadInputError
from ._workers import frame_file
from .meta import read_meta

__all__ = ["TalkingHeadDataset", "read_meta"]


class TalkingHeadDataset(torch.utils.data.Dataset):
    """A preprocessed talking-head video, one item per frame.

    The split follows the peers (AD-NeRF, RAD-NeRF, ER-NeRF): the last ``val_fraction`` of the
    frames (meta.json ``split``, default 10%) is the validation split, the rest training.

    Args:
        root: dataset directory.
        split: ``"train"``, ``"val"`` or ``"all"``.
        images: load images in ``__getitem__`` (False: per-frame arrays only, fast).

    Attributes (numpy, for the split's frames, in order):
        indices: int64 [N] frame indices in the dataset (0 .. n_frames-1).
        landmarks: float32 [N, 68, 2] iBUG-68 points in pixels (pixel-corner convention).
        camera_to_head: float32 [N, 4, 4] camera-to-canonical-head transforms (OpenGL axes,
            decimetres), from the 3DMM fit.
        expression: float32 [N, 10] 3DMM expression coefficients.
        emotion: float32 [N, 128] emotion features; ``emotion_probs`` float32 [N, 7].
        audio: float32 [N, window, D] windowed speech features, or None (expression-only).
        intrinsics: (fx, fy, cx, cy) pixels; ``near``, ``far``: z-depths in decimetres.
        background: uint8 [H, W, 3] background image.

    Items (``__getitem__``): a dict of torch tensors: ``index``, ``landmarks``,
    ``camera_to_head``, ``expression``, ``emotion``, ``audio`` (when present) and, with
    ``images``, ``image`` float32 [H, W, 3] in [0, 1] (the head over the background: the NeRF
    target) and ``parsing`` uint8 [H, W] (0 background, 1 torso, 2 head).

    Raises:
        BadInputError: not a finished dataset, files missing, unknown split.
    """

    def __init__(self, root, split: str = "train", *, images: bool = True):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        if split not in ("train", "val", "all"):
            raise BadInputError(f"split must be 'train', 'val' or 'all', got {split!r}")
        self.split = split
        self.images = images
        n = int(self.meta["n_frames"])
        val_start = int(self.meta["split"]["val_start"])
        self.indices = {"train": np.arange(0, val_start), "val": np.arange(val_start, n),
                        "all": np.arange(n)}[split]
        self.first_frame = int(self.meta["first_frame"])
        self.fps = float(self.meta["fps"])
        self.size = int(self.meta["size"])

        def need(name):
            p = self.root / name
            if not p.exists():
                raise BadInputError(f"{self.root}: {name} is missing; the dataset is incomplete "
                                    "(run `jean preprocess` again)")
            return p

        with np.load(need("landmarks.npz")) as z:
            self.landmarks = z["points"][self.indices]
        with np.load(need("tracking.npz")) as z:
            self.camera_to_head = z["camera_to_head"][self.indices]
            self.expression = z["expression"][self.indices]
            f, cx, cy = float(z["focal"]), float(z["cx"]), float(z["cy"])
            self.near, self.far = float(z["near"]), float(z["far"])
        self.intrinsics = (f, f, cx, cy)
        with np.load(need("emotion.npz")) as z:
            self.emotion = z["features"][self.indices]
            self.emotion_probs = z["probs"][self.indices]
        self.audio = None
        if self.meta.get("audio"):
            self.audio = np.load(need("audio_features.npy"), mmap_mode="r")[self.indices]
        self.background = read_image(need("background.png"))
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
        return frame_file(self.root, kind, self.first_frame + int(self.indices[j]))

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
