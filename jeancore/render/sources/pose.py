"""The head-pose source of a rendering (JEAN Sec. 3.3, 4.1): camera-to-head transforms for
the trained identity's camera, from a video (3DMM-tracked and retargeted, :func:`head_poses`),
from a dataset folder (its ``tracking.npz``), or frozen. The dataset is read through
:class:`jeancore.data.dataset.DatasetReader`; rotations go through SciPy
(:mod:`jeancore.data.camera`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data.camera import camera_to_head, mean_rotation
from ...errors import BadInputError
from .face_video import face_video
from .length import fit_length

__all__ = ["frozen_pose", "head_poses", "retarget_poses"]


def _dataset(dataset):
    from ...data.dataset import DatasetReader

    return DatasetReader(dataset)


def retarget_poses(rotation, translation, target_rotation, target_translation, *,
                   motion_scale: float = 1.0) -> np.ndarray:
    """Apply a driving video's head motion around a trained identity's mean pose.

    With the driving poses ``R_d[t], t_d[t]`` (head to camera, ``Xc = R X + t``), their mean
    ``R̄_d`` (chordal mean) and ``t̄_d``, and the target's (training dataset's) means ``R̄``,
    ``t̄``:

    ``R[t] = (R_d[t] R̄_dᵀ)^s R̄``  and  ``t[t] = t̄ + s (t̄_z / t̄_d,z) (t_d[t] - t̄_d)``

    i.e. the driving head's rotation and translation *relative to its own mean*, expressed in
    camera axes, applied around the target's mean pose. The translation offset is scaled by
    the ratio of the mean depths, so the head moves by the same fraction of the face size in
    the image (the two fits have different focal lengths and depths); ``s = motion_scale``
    scales the motion (rotation angle via the axis-angle vector; 0 freezes the mean pose).

    Args:
        rotation: float [T, 3, 3], translation: float [T, 3] the driving poses (decimetres).
        target_rotation: float [N, 3, 3], target_translation: float [N, 3] the target poses
            whose mean is the centre of the motion.
        motion_scale: the factor ``s``.

    Returns:
        camera_to_head float32 [T, 4, 4] (inverse of the retargeted head-to-camera poses).
    """
    from scipy.spatial.transform import Rotation

    r_d = np.asarray(rotation, np.float64)
    t_d = np.asarray(translation, np.float64)
    r_mean_d, t_mean_d = mean_rotation(r_d), t_d.mean(0)
    r_mean, t_mean = mean_rotation(target_rotation), np.asarray(target_translation,
                                                                np.float64).mean(0)
    delta = r_d @ r_mean_d.T
    if motion_scale != 1.0:
        delta = Rotation.from_rotvec(Rotation.from_matrix(delta).as_rotvec()
                                     * motion_scale).as_matrix()
    depth_ratio = t_mean[2] / t_mean_d[2] if abs(t_mean_d[2]) > 1e-9 else 1.0
    r = delta @ r_mean
    t = t_mean + motion_scale * depth_ratio * (t_d - t_mean_d)
    return camera_to_head(r, t)


def frozen_pose(dataset, frame: int | None = None) -> np.ndarray:
    """One camera-to-head pose of a dataset for a frozen head: frame ``frame``, or by default
    the training-split frame whose pose is nearest the mean pose (rotation angle to the chordal
    mean rotation, in radians, plus the distance to the mean translation divided by the mean
    depth): a pose the NeRF saw in training, in the middle of the poses.

    Returns:
        float32 [4, 4].

    Raises:
        BadInputError: not a dataset; IndexError: ``frame`` out of range.
    """
    ds = _dataset(dataset)
    tr = ds.tracking()
    c2h = np.asarray(tr.camera_to_head, np.float32)
    if frame is not None:
        if not -len(c2h) <= frame < len(c2h):
            raise IndexError(f"frame {frame} is out of range for a dataset of {len(c2h)} frames")
        return c2h[frame].copy()
    n_train = int(ds.meta.get("split", {}).get("val_start", len(c2h))) or len(c2h)
    r, t = tr.rotation[:n_train].astype(np.float64), tr.translation[:n_train].astype(np.float64)
    r_mean, t_mean = mean_rotation(r), t.mean(0)
    cos = (np.einsum("tij,ij->t", r, r_mean) - 1.0) / 2.0
    angle = np.arccos(np.clip(cos, -1.0, 1.0))
    dist = angle + np.linalg.norm(t - t_mean, axis=1) / max(abs(t_mean[2]), 1e-9)
    return c2h[int(np.argmin(dist))].copy()


def head_poses(source, n_frames: int, *, dataset=None, fps: float = 25.0,
               mode: str = "pingpong", frozen_frame: int | None = None,
               motion_scale: float = 1.0, crop_size: int = 256, max_gap: int = 5,
               detector=None, progress: bool = False) -> np.ndarray:
    """Head poses of a rendering as camera-to-head transforms of the trained identity's
    camera (JEAN Sec. 3.3 / 4.1: the NeRF is rendered from the camera of each frame's pose).

    Sources:

    * ``"frozen"``: one pose of ``dataset`` for every frame (:func:`frozen_pose`: the training
      frame nearest the mean pose, or ``frozen_frame``).
    * a dataset folder: its ``tracking.npz`` ``camera_to_head`` (the poses the NeRF was
      trained with, all frames), extended or cut with :func:`fit_length`.
    * a video file: tracked as preprocessing tracks a dataset (one face crop for the clip,
      dlib landmarks, the same 3DMM fit :func:`jeancore.data.tracking.fit_3dmm`; frames
      without a face get interpolated poses), then **retargeted** to ``dataset``'s camera
      (:func:`retarget_poses`): the driving head's rotation and translation relative to its
      own mean are applied around the training dataset's mean pose. The driving video's
      absolute pose is meaningless for the trained NeRF (another camera, focal length and
      head size); its motion is what carries over, and centring it on the training poses
      keeps the camera where the NeRF was trained. Only the first ``n_frames`` frames are
      decoded.
    * a numpy array [L, 4, 4]: used as is (extended or cut).

    Args:
        source: ``"frozen"``, a dataset folder, a video file, or an array (see above).
        n_frames: output length T (the audio's frame count).
        dataset: the training dataset folder (needed by ``"frozen"`` and by a video).
        fps: frame rate at which a video is decoded.
        mode: how a shorter sequence is extended (:func:`fit_length`).
        frozen_frame: the dataset frame used by ``"frozen"`` (default: nearest the mean).
        motion_scale: scale of a driving video's motion (:func:`retarget_poses`).
        crop_size, max_gap, detector, progress: tracking of a video (as preprocessing).

    Returns:
        camera_to_head float32 [T, 4, 4] (OpenGL camera axes, canonical head space in
        decimetres, as ``tracking.npz``).

    Raises:
        ValueError: ``n_frames < 1``; ``dataset`` missing for ``"frozen"`` or a video; an
            array that is not [L, 4, 4].
        BadInputError: a folder that is not a dataset; a video that cannot be read or has no
            face (or too few frames with one to fit).
    """
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[1:] != (4, 4) or len(source) == 0:
            raise ValueError(f"a pose array must be camera_to_head [L, 4, 4], got "
                             f"{source.shape}")
        return fit_length(source.astype(np.float32), n_frames, mode)
    if isinstance(source, str) and source == "frozen":
        if dataset is None:
            raise ValueError("a frozen head pose needs the training dataset (dataset=...)")
        pose = frozen_pose(dataset, frozen_frame)
        return np.repeat(pose[None], n_frames, axis=0)
    p = Path(source)
    if p.is_dir():
        tr = _dataset(p).tracking()
        return fit_length(np.asarray(tr.camera_to_head, np.float32), n_frames, mode)
    if not p.exists():
        raise BadInputError(f"pose source {source!r}: no such file or dataset folder (use a "
                            "video, a dataset folder or 'frozen')")
    if dataset is None:
        raise ValueError("a pose video must be retargeted to the trained identity's camera: "
                         "pass its dataset folder (dataset=...)")
    from ...data.tracking import fit_3dmm

    target = _dataset(dataset).tracking()
    fv = face_video(p, fps, None, n_frames, int(crop_size), max_gap, detector, progress)
    track = fv.track
    if not track.found.any():
        raise BadInputError(f"{p}: no face found in any of its {len(track)} frames")
    tr = fit_3dmm(track.points, (int(crop_size), int(crop_size)), valid=track.valid,
                  progress=progress)
    c2h = retarget_poses(tr.rotation, tr.translation, target.rotation, target.translation,
                         motion_scale=motion_scale)
    return fit_length(c2h, n_frames, mode)
