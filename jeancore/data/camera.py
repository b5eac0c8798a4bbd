"""The camera of a dataset: conventions, projection, head poses, and the per-frame tracking
result :class:`HeadTracking` (``tracking.npz``).

Conventions (the NeRF relies on them; ``jeancore.ops.generate_rays`` uses the same camera):

* Canonical head space: decimetres, axes and origin of the 3DMM
  (:mod:`jeancore.data.morphable_model`): x toward the subject's left, y up, z toward the
  viewer, origin at the centroid of the 68 mean-shape landmarks.
* Camera (OpenGL, as NeRF / AD-NeRF): it looks down its -z axis, y up. Head to camera:
  ``Xc = R X + t``; projection ``u = cx + f Xc_x / (-Xc_z)``, ``v = cy - f Xc_y / (-Xc_z)``.
  Pixel coordinates use the pixel-corner convention: (0, 0) is the top-left corner of the
  top-left pixel and the centre of pixel (row i, column j) is (u, v) = (j + 0.5, i + 0.5)
  (dlib's integer landmark positions therefore need +0.5). Principal point at the image centre
  (W/2, H/2), one focal length ``f`` (fx = fy) for the whole video.
* ``camera_to_head = inverse([R t; 0 1])``: the head is fixed in canonical space and the camera
  moves around it; ``generate_rays(camera_to_head[:, :3], f, f, cx, cy, projected)`` gives rays
  through the fitted 3-D landmarks. Depths along those rays (``rays_d`` has unit camera-space
  depth) are z-depths, and so are ``near`` / ``far``.

Rotations in numpy go through SciPy's :class:`scipy.spatial.transform.Rotation` (mean,
interpolation); only the fit's autograd needs its own (torch) rotation
(:func:`jeancore.data.tracking.so3_exp`). :func:`project` is torch (it serves the fit's
outputs and tests); the rest of this module needs only numpy and SciPy.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from jeancore._io import atomic_path
from jeancore.errors import BadInputError

__all__ = ["HeadTracking", "camera_to_head", "fill_gaps", "fill_rotation_gaps",
           "head_to_camera", "mean_rotation", "project"]

_FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------------
# projection and poses
# ------------------------------------------------------------------------------------------------
def project(points, rotation, translation, focal, cx, cy):
    """Project head-space points with the OpenGL pinhole camera of this module.

    ``Xc = R X + t``, ``u = cx + f Xc_x / (-Xc_z)``, ``v = cy - f Xc_y / (-Xc_z)``
    (pixel-corner convention; points in front of the camera have Xc_z < 0).

    Args:
        points: float [T, N, 3] (canonical head space).
        rotation: float [T, 3, 3] head-to-camera rotations R.
        translation: float [T, 3] head-to-camera translations t (same unit as points).
        focal, cx, cy: pixels (numbers or 0-d tensors).

    Returns:
        float tensor [T, N, 2] of (u, v) pixel coordinates.
    """
    import torch

    points = torch.as_tensor(points)
    rotation = torch.as_tensor(rotation, dtype=points.dtype, device=points.device)
    translation = torch.as_tensor(translation, dtype=points.dtype, device=points.device)
    xc = torch.einsum("tij,tnj->tni", rotation, points) + translation[:, None, :]
    depth = -xc[..., 2]
    return torch.stack([cx + focal * xc[..., 0] / depth, cy - focal * xc[..., 1] / depth], -1)


def camera_to_head(rotation, translation) -> np.ndarray:
    """``inverse([R t; 0 1])`` of head-to-camera poses, computed in float64.

    Args:
        rotation: float [T, 3, 3] head-to-camera rotations R; translation: float [T, 3] t.

    Returns:
        float32 [T, 4, 4] camera-to-head transforms (bottom row [0 0 0 1]).
    """
    r = np.asarray(rotation, np.float64)
    rt = np.swapaxes(r, 1, 2)
    out = np.zeros((len(r), 4, 4), np.float64)
    out[:, :3, :3] = rt
    out[:, :3, 3] = -np.einsum("tij,tj->ti", rt, np.asarray(translation, np.float64))
    out[:, 3, 3] = 1.0
    return out.astype(np.float32)


def head_to_camera(camera_to_head) -> tuple[np.ndarray, np.ndarray]:
    """The head-to-camera poses (R float64 [T, 3, 3], t float64 [T, 3]) of camera-to-head
    transforms [T, 4, 4] (the inverse of :func:`camera_to_head`)."""
    c2h = np.asarray(camera_to_head, np.float64)
    r = np.swapaxes(c2h[:, :3, :3], 1, 2)
    t = -np.einsum("tij,tj->ti", r, c2h[:, :3, 3])
    return r, t


def mean_rotation(rotation) -> np.ndarray:
    """Chordal L2 mean of rotations [N, 3, 3] (the rotation nearest their arithmetic mean in
    the Frobenius norm; SciPy's ``Rotation.mean``): float64 [3, 3]."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(rotation, np.float64)).mean().as_matrix()


def _gap_weights(idx: np.ndarray, n: int):
    """For every frame 0..n-1: the known frames before / after it (positions in ``idx``) and
    the fraction of the way between them (0 on a known frame, before the first and after the
    last)."""
    frames = np.arange(n)
    pos = np.searchsorted(idx, frames, side="right")  # number of known frames <= t
    lo = np.clip(pos - 1, 0, len(idx) - 1)
    hi = np.clip(pos, 0, len(idx) - 1)
    t_lo, t_hi = idx[lo], idx[hi]
    span = np.maximum(t_hi - t_lo, 1).astype(np.float64)
    s = np.clip((frames - t_lo) / span, 0.0, 1.0)
    return lo, hi, np.where(t_hi == t_lo, 0.0, s)


def fill_gaps(values, idx, n: int) -> np.ndarray:
    """Per-frame values known at the sorted frame indices ``idx`` -> every frame: linear
    interpolation between the neighbouring known frames, constant before the first and after
    the last.

    Args:
        values: float [V, ...] at frames ``idx`` (int [V], increasing); n: number of frames.

    Returns:
        float64 [n, ...] (the known rows unchanged).
    """
    values = np.asarray(values, np.float64)
    lo, hi, s = _gap_weights(np.asarray(idx), int(n))
    a, b = values[lo], values[hi]
    return a + s.reshape((-1,) + (1,) * (values.ndim - 1)) * (b - a)


def fill_rotation_gaps(rotation, idx, n: int) -> np.ndarray:
    """:func:`fill_gaps` for rotations [V, 3, 3]: spherical linear interpolation (SciPy's
    ``Slerp``) between the neighbouring known frames, constant before the first and after the
    last. Returns float64 [n, 3, 3] (the known rotations unchanged)."""
    rotation = np.asarray(rotation, np.float64)
    idx = np.asarray(idx)
    lo, _, s = _gap_weights(idx, int(n))
    out = rotation[lo]
    inside = s > 0
    if inside.any():
        from scipy.spatial.transform import Rotation, Slerp

        slerp = Slerp(idx, Rotation.from_matrix(rotation))
        out[inside] = slerp(np.flatnonzero(inside)).as_matrix()
    return out


# ------------------------------------------------------------------------------------------------
# the tracking result
# ------------------------------------------------------------------------------------------------
@dataclass
class HeadTracking:
    """Per-frame head pose, camera and 3DMM coefficients of a video (numpy arrays).

    Attributes:
        identity: float32 [40] raw identity coefficients (one per video).
        expression: float32 [T, 10] raw expression coefficients per frame.
        rotation: float32 [T, 3, 3] head-to-camera rotation R (``Xc = R X + t``).
        translation: float32 [T, 3] head-to-camera translation t, decimetres.
        focal: focal length f in pixels (fx = fy).
        cx, cy: principal point in pixels (image centre, W/2 and H/2).
        image_size: (W, H) in pixels.
        valid: bool [T], the frames whose landmarks entered the fit; the other frames' pose and
            expression are interpolated from the neighbouring valid frames (held constant before
            the first and after the last).
        landmarks: float32 [T, 68, 2] the input landmarks in pixels (NaN allowed where invalid).
        projected: float32 [T, 68, 2] the fitted landmarks projected to the image, pixels
            (pixel-corner convention), for every frame.
        reprojection_error: float32 [T] mean Euclidean distance in pixels between ``projected``
            and the input landmarks over the 68 points; NaN for invalid frames.
        camera_to_head: float32 [T, 4, 4] inverse of [R t; 0 1] (camera-to-world of the NeRF,
            OpenGL camera axes, decimetres).
        near, far: z-depths (decimetres) bounding the head sphere over all frames: min over frames
            of the sphere centre's depth minus the radius, max plus the radius.
        head_center: float32 [3] head sphere centre in canonical space (decimetres).
        head_radius: head sphere radius (decimetres).
    """

    identity: np.ndarray
    expression: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    focal: float
    cx: float
    cy: float
    image_size: tuple[int, int]
    valid: np.ndarray
    landmarks: np.ndarray
    projected: np.ndarray
    reprojection_error: np.ndarray
    camera_to_head: np.ndarray
    near: float
    far: float
    head_center: np.ndarray
    head_radius: float

    @property
    def num_frames(self) -> int:
        return int(self.rotation.shape[0])

    @property
    def intrinsics(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels, as ``generate_rays`` takes them."""
        return (self.focal, self.focal, self.cx, self.cy)

    def save(self, path) -> None:
        """Write an ``.npz`` file to exactly ``path`` (no suffix is added), atomically: a
        temporary file in the same folder, then ``os.replace``, so a reader never sees a
        half-written file. Read it back with :meth:`load`."""
        path = Path(path)
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        arrays["format_version"] = np.asarray(_FORMAT_VERSION)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path) -> HeadTracking:
        """Read a file written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            BadInputError: not a head-tracking file (missing arrays / newer format).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"head-tracking file {path} not found")
        names = [f.name for f in fields(cls)] + ["format_version"]
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [n for n in names if n not in z.files]
                d = {n: z[n] for n in names if n in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise BadInputError(f"{path} is not a head-tracking .npz file ({exc})") from exc
        if missing:
            raise BadInputError(f"{path} is not a head-tracking file: missing {missing}")
        version = int(d.pop("format_version"))
        if version > _FORMAT_VERSION:
            raise BadInputError(f"{path} has head-tracking format {version}; this jeancore "
                                f"reads up to {_FORMAT_VERSION}")
        for n in ("focal", "cx", "cy", "near", "far", "head_radius"):
            d[n] = float(d[n])
        d["image_size"] = tuple(int(v) for v in d["image_size"])
        return cls(**d)
