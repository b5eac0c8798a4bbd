"""A preprocessed dataset in the form the NeRF trains on: every frame's head image, camera,
face box, speech-feature window and emotion features, at the training resolution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BadInputError

__all__ = ["NerfData", "dataset_fingerprint", "face_rects", "load_nerf_data", "mouth_rects",
           "pixel_grid"]


def face_rects(landmarks: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """Face bounding boxes for ray sampling and the head-region metrics.

    The box of the 68 landmarks, widened by 10% of its width on each side, raised by 35% of
    its height (the landmarks stop at the brows; the forehead and hair line belong to the face
    region) and lowered by 5%, scaled by ``scale`` and clipped to the image.

    Args:
        landmarks: float [T, 68, 2] pixels (pixel-corner convention) at the dataset size.
        size: image side at the target resolution (pixels).
        scale: target resolution / dataset resolution.

    Returns:
        int64 [T, 4]: (x0, y0, x1, y1), pixel index ranges x0 <= column < x1, y0 <= row < y1,
        each at least 1 pixel.
    """
    lo, hi = landmarks.min(1), landmarks.max(1)               # [T, 2]
    w, h = hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1]
    x0, x1 = lo[:, 0] - 0.10 * w, hi[:, 0] + 0.10 * w
    y0, y1 = lo[:, 1] - 0.35 * h, hi[:, 1] + 0.05 * h
    r = np.stack([x0, y0, x1, y1], 1) * scale
    r = np.stack([np.floor(r[:, 0]), np.floor(r[:, 1]), np.ceil(r[:, 2]), np.ceil(r[:, 3])], 1)
    r = np.clip(r, 0, size).astype(np.int64)
    r[:, 2] = np.maximum(r[:, 2], np.minimum(r[:, 0] + 1, size))
    r[:, 3] = np.maximum(r[:, 3], np.minimum(r[:, 1] + 1, size))
    r[:, 0] = np.minimum(r[:, 0], r[:, 2] - 1)
    r[:, 1] = np.minimum(r[:, 1], r[:, 3] - 1)
    return r


def mouth_rects(landmarks: np.ndarray, size: int, scale: float = 1.0,
                margin: float = 0.25) -> np.ndarray:
    """Mouth boxes: the box of the iBUG-68 mouth points (48-67) widened on every side by
    ``margin`` times the inter-ocular distance (the chin and the lips' surroundings move with
    the jaw), scaled by ``scale`` and clipped to the image.

    Args:
        landmarks: float [T, 68, 2] pixels at the dataset size.
        size: image side at the target resolution (pixels).
        scale: target resolution / dataset resolution.
        margin: widening, in inter-ocular distances (distance of the eye centres).

    Returns:
        int64 [T, 4] (x0, y0, x1, y1) as :func:`face_rects`, each at least 1 pixel.
    """
    lm = np.asarray(landmarks, np.float64)
    iod = np.linalg.norm(lm[:, 36:42].mean(1) - lm[:, 42:48].mean(1), axis=1)[:, None]
    lo, hi = lm[:, 48:68].min(1) - margin * iod, lm[:, 48:68].max(1) + margin * iod
    r = np.concatenate([np.floor(lo * scale), np.ceil(hi * scale)], 1)
    r = np.clip(r, 0, size).astype(np.int64)
    r[:, 2:] = np.maximum(r[:, 2:], np.minimum(r[:, :2] + 1, size))
    r[:, :2] = np.minimum(r[:, :2], r[:, 2:] - 1)
    return r


def pixel_grid(h: int, w: int, device=None) -> torch.Tensor:
    """Pixel centres of an h x w image, row-major: float32 [h * w, 2] as (u = column + 0.5,
    v = row + 0.5) (``jeancore.ops.generate_rays`` convention)."""
    v, u = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32) + 0.5,
                          torch.arange(w, device=device, dtype=torch.float32) + 0.5,
                          indexing="ij")
    return torch.stack([u, v], -1).reshape(-1, 2)


def dataset_fingerprint(root) -> str:
    """SHA-256 of what identifies a dataset: its source files, frame range, crop, size and the
    tracked cameras (a NeRF trained on it only fits these)."""
    from ..data.dataset import DatasetReader

    return DatasetReader(root).fingerprint()


@dataclass
class NerfData:
    """Every frame of a dataset at the training resolution (numpy / torch on the CPU).

    Attributes:
        root: dataset folder. fingerprint: :func:`dataset_fingerprint`.
        size: side of the images here (pixels); dataset_size: side in the dataset.
        images: uint8 [T, size, size, 3], the head over the background (the NeRF target).
        head_mask: bool [T, size, size], the head pixels (parsing label 2), or None when the
            images were not read.
        background: uint8 [size, size, 3].
        camera_to_head: float32 [T, 4, 4] (OpenGL camera axes, decimetres).
        intrinsics: (fx, fy, cx, cy) in pixels at ``size``. near, far: z-depths (decimetres).
        head_center: float32 [3], head_radius: float (decimetres).
        rects: int64 [T, 4] face boxes at ``size`` (:func:`face_rects`).
        mouth: int64 [T, 4] mouth boxes at ``size`` (:func:`mouth_rects`).
        audio: float32 [T, window, D] speech-feature windows, or None.
        emotion: float32 [T, 128] emotion features.
        train_idx, val_idx: int64 frame indices of the two splits (validation: the last 10%).
    """

    root: Path
    fingerprint: str
    size: int
    dataset_size: int
    images: torch.Tensor
    head_mask: torch.Tensor | None
    background: torch.Tensor
    camera_to_head: torch.Tensor
    intrinsics: tuple
    near: float
    far: float
    head_center: np.ndarray
    head_radius: float
    rects: torch.Tensor
    mouth: torch.Tensor
    audio: torch.Tensor | None
    emotion: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.images.shape[0])


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def load_nerf_data(root, resolution: int | None = None, *, images: bool = True) -> NerfData:
    """Load a preprocessed dataset for the NeRF (see docs/dataset.md).

    Args:
        root: dataset folder made by ``jean preprocess``.
        resolution: image side to train at (pixels; None or larger than the dataset: the
            dataset's). Images are downscaled with area averaging; intrinsics and face boxes
            are scaled with them.
        images: read the head images (False: only cameras, features and the background).

    Raises:
        BadInputError: not a finished dataset, no audio features (the NeRF needs speech), or
            fewer than 2 frames in a split.
    """
    from ..data.dataset import TalkingHeadDataset
    from ..data.parsing import LABEL_HEAD

    ds = TalkingHeadDataset(root, "all", images=False)
    if not ds.has_audio:
        raise BadInputError(f"{root} has no audio features (made with --no-audio); the NeRF is "
                            f"conditioned on speech: preprocess a video with its sound track")
    n = len(ds)
    val_start = int(ds.meta["split"]["val_start"])
    train_idx, val_idx = np.arange(0, val_start), np.arange(val_start, n)
    if len(train_idx) < 1 or len(val_idx) < 1:
        raise BadInputError(f"{root}: need at least one training and one validation frame "
                            f"(have {len(train_idx)} and {len(val_idx)})")
    size = ds.size if resolution is None else min(int(resolution), ds.size)
    scale = size / ds.size
    imgs = np.zeros((n, size, size, 3), np.uint8)
    head = None
    if images:
        import cv2

        head = np.zeros((n, size, size), bool)
        for j in range(n):
            imgs[j] = _resize(ds.head_image(j), size)
            lab = ds.parsing(j)
            if lab.shape[0] != size:
                lab = cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST)
            head[j] = lab == LABEL_HEAD
    fx, fy, cx, cy = ds.intrinsics
    center, radius = ds.head_center, ds.head_radius
    return NerfData(
        root=Path(root), fingerprint=dataset_fingerprint(root), size=size,
        dataset_size=ds.size, images=torch.from_numpy(imgs),
        head_mask=None if head is None else torch.from_numpy(head),
        background=torch.from_numpy(np.ascontiguousarray(_resize(ds.background, size))),
        camera_to_head=torch.from_numpy(np.ascontiguousarray(ds.camera_to_head, np.float32)),
        intrinsics=(fx * scale, fy * scale, cx * scale, cy * scale), near=ds.near, far=ds.far,
        head_center=center, head_radius=radius,
        rects=torch.from_numpy(face_rects(ds.landmarks, size, scale)),
        mouth=torch.from_numpy(mouth_rects(ds.landmarks, size, scale)),
        audio=torch.from_numpy(np.ascontiguousarray(ds.audio, np.float32)),
        emotion=np.ascontiguousarray(ds.emotion, np.float32), train_idx=train_idx,
        val_idx=val_idx)
