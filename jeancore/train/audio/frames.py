"""The frames the audio training samples from (JEAN Sec. 3.1): every training frame of every
dataset, the partner B of each anchor A for the mouth swap (Eq. 1) and the InfoNCE negatives
(Eq. 2): from another video of the same identity when there is one, else from the same video
at least ``min_negative_gap_s`` away."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ...errors import BadInputError
from .dataset import AudioDataset

__all__ = ["TrainingFrames"]


class TrainingFrames:
    """The training frames of all datasets, concatenated, and the random draws of an epoch
    over them: partners of the mouth swap (:meth:`partners`) and InfoNCE negatives
    (:meth:`negatives`)."""

    def __init__(self, datasets: list[AudioDataset], split: str = "train"):
        pts, aud, clip, frame = [], [], [], []
        for i, d in enumerate(datasets):
            idx = d.split(split)
            if len(idx) < 2:
                raise BadInputError(f"{d.root}: its {split} split has {len(idx)} frame(s); "
                                    "need at least 2")
            pts.append(d.landmarks[idx])
            aud.append(d.audio[idx])
            clip.append(np.full(len(idx), i))
            frame.append(idx)
        self.pts = torch.from_numpy(np.concatenate(pts))
        self.audio = torch.from_numpy(np.concatenate(aud))
        self.clip = np.concatenate(clip)
        self.frame = np.concatenate(frame)
        self.n = len(self.clip)
        starts = np.cumsum([0] + [len(d.split(split)) for d in datasets])
        self.ranges = [(int(starts[i]), int(starts[i + 1])) for i in range(len(datasets))]
        self.fps = [d.fps for d in datasets]
        ids = [d.identity for d in datasets]
        # global indices of the other videos of the same identity, per clip
        self.other = []
        for i, ident in enumerate(ids):
            others = [np.arange(*self.ranges[j]) for j in range(len(ids))
                      if j != i and ids[j] == ident]
            self.other.append(np.concatenate(others) if others else None)
        h = hashlib.sha256()
        for d in datasets:
            h.update(f"{d.root.resolve()}|{d.identity}|{len(d.landmarks)}|{d.val_start}".encode())
        h.update(self.pts.numpy().tobytes())
        self.fingerprint = h.hexdigest()

    def to(self, device):
        self.pts, self.audio = self.pts.to(device), self.audio.to(device)
        return self

    def partners(self, rng, anchors: np.ndarray) -> np.ndarray:
        """A random other frame of the same video for each anchor (global indices)."""
        out = np.empty_like(anchors)
        for i, (s, e) in enumerate(self.ranges):
            sel = self.clip[anchors] == i
            k = int(sel.sum())
            if not k:
                continue
            pos = anchors[sel] - s
            q = rng.integers(0, e - s - 1, size=k)
            out[sel] = s + q + (q >= pos)
        return out

    def negatives(self, rng, anchors: np.ndarray, k: int, gap_s: float):
        """K negatives per anchor: [n, K] global indices and per-anchor kind codes
        (0 other video, 1 same video >= gap, 2 same video, farthest frame: too short)."""
        out = np.empty((len(anchors), k), np.int64)
        kind = np.empty(len(anchors), np.int64)
        for i, (s, e) in enumerate(self.ranges):
            sel = np.nonzero(self.clip[anchors] == i)[0]
            if not len(sel):
                continue
            if self.other[i] is not None:
                pool = self.other[i]
                out[sel] = pool[rng.integers(0, len(pool), size=(len(sel), k))]
                kind[sel] = 0
                continue
            n = e - s
            gap = max(1, int(round(gap_s * self.fps[i])))
            p = (anchors[sel] - s)[:, None]
            left = np.maximum(p - gap + 1, 0)
            right = np.maximum(n - p - gap, 0)
            count = left + right
            u = np.floor(rng.random((len(sel), k)) * np.maximum(count, 1)).astype(np.int64)
            q = np.where(u < left, u, p + gap + (u - left))
            far = np.where(p >= n - 1 - p, 0, n - 1)
            ok = count > 0
            q = np.where(ok, q, far)
            out[sel] = s + q
            kind[sel] = np.where(ok[:, 0], 1, 2)
        return out, kind
