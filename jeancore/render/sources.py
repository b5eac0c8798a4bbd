"""The three driving sources of a rendering, on the output frame grid (JEAN Sec. 3, 4.1;
suppl. 8.5), and the rule that brings them to one length.

* **Speech** (:func:`audio_windows`): any audio file or video with sound, decoded to 16 kHz
  mono, turned into the *same* per-frame feature windows preprocessing computed for the
  training dataset (the settings recorded in its ``meta.json`` ``audio`` entry; log-mel or
  MFCC normalised per clip, as :mod:`jeancore.data.audio`). The audio's length sets the
  output length: ``T = round(duration * fps)`` frames.
* **Expression** (:func:`expression_source`): any face video; per frame the 128-d emotion-CNN
  feature the expression transformer takes (Sec. 3.2), computed the way preprocessing does
  (one square crop for the clip, dlib landmarks, short gaps interpolated, 64x64 grey face crop,
  mini-Xception), plus the colour face crops for the frame grid.
* **Head pose** (:func:`head_poses`): camera-to-head transforms for the trained identity's
  camera -- from a video (3DMM-tracked, retargeted, see :func:`head_poses`), from a dataset
  folder (its ``tracking.npz``), or frozen.
* **Length** (:func:`fit_length`): shorter sequences are extended (ping-pong by default),
  longer ones cut.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np

from ..errors import BadInputError, ConfigError

__all__ = ["ExpressionSource", "audio_windows", "audio_feature_config", "expression_source",
           "head_poses", "fit_length", "retarget_poses", "frozen_pose"]

log = logging.getLogger("jeancore.render")

FIT_MODES = ("pingpong", "loop", "hold")


# ------------------------------------------------------------------------------------------
# length
# ------------------------------------------------------------------------------------------
def fit_length(x, n: int, mode: str = "pingpong"):
    """Bring a per-frame sequence to exactly ``n`` frames along axis 0.

    A longer sequence is cut to its first ``n`` frames. A shorter one (length L) is extended:

    * ``"pingpong"`` (default): forward then backward without repeating the end frames,
      ``0, 1, ..., L-1, L-2, ..., 1, 0, 1, ...`` (period 2L - 2): no jump in expression or
      head pose where the sequence turns.
    * ``"loop"``: ``0, ..., L-1, 0, 1, ...`` (a jump from the last frame to the first).
    * ``"hold"``: the last frame is repeated.

    A one-frame sequence is repeated in every mode.

    Args:
        x: numpy array or torch tensor [L, ...] with L >= 1.
        n: number of output frames (>= 1).
        mode: ``"pingpong"``, ``"loop"`` or ``"hold"``.

    Returns:
        The same type as ``x``, [n, ...]: ``x[index]`` for the index sequence above (a new
        array; ``x`` is not modified).

    Raises:
        ValueError: unknown mode, ``n < 1``, or an empty / 0-d ``x``.
    """
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {FIT_MODES}, got {mode!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    length = len(x) if getattr(x, "ndim", 1) > 0 else 0
    if length < 1:
        raise ValueError("fit_length needs a sequence with at least one frame")
    k = np.arange(n)
    if n <= length:
        idx = k
    elif length == 1 or mode == "hold":
        idx = np.minimum(k, length - 1)
    elif mode == "loop":
        idx = k % length
    else:
        period = 2 * length - 2
        r = k % period
        idx = np.where(r < length, r, period - r)
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x[torch.as_tensor(idx, device=x.device)]
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)[idx]


# ------------------------------------------------------------------------------------------
# speech
# ------------------------------------------------------------------------------------------
def audio_feature_config(features) -> tuple[dict, int]:
    """The audio-feature settings of a training dataset, normalised.

    Args:
        features: any of: the dataset folder or its ``meta.json`` path; the parsed meta.json
            dict; its ``"audio"`` entry (``{"features": {...}, "window": 16, ...}``); or the
            feature config itself (``{"kind": "logmel", "n_mels": 80, "fps": 25, ...}``,
            :attr:`jeancore.data.audio.LogMelFeatures.config`).

    Returns:
        (config dict with at least ``kind``, window length in feature steps).

    Raises:
        BadInputError: the dataset was preprocessed without audio, or the folder is not a
            dataset.
        ConfigError: the dict is none of the above.
    """
    if isinstance(features, (str, Path)):
        p = Path(features)
        if p.is_dir():
            from ..data.dataset import read_meta

            features = read_meta(p)
        elif p.is_file():
            try:
                features = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BadInputError(f"{p} is not a meta.json ({e})") from e
        else:
            raise BadInputError(f"{p}: no such dataset folder or meta.json")
    if not isinstance(features, dict):
        raise ConfigError(f"audio features must be a dict of settings or a dataset path, got "
                          f"{type(features).__name__}")
    if features.get("format") == "jeancore-dataset":
        if not features.get("audio"):
            raise BadInputError("the dataset was preprocessed without audio (--no-audio): it "
                                "has no audio-feature settings to drive a model with speech")
        features = features["audio"]
    window = 16
    if "features" in features and isinstance(features["features"], dict):
        window = int(features.get("window", window))
        features = features["features"]
    if "kind" not in features:
        raise ConfigError("audio feature settings need a 'kind' (logmel / mfcc), as recorded "
                          "in the dataset's meta.json 'audio' entry")
    return dict(features), window


def _make_extractor(cfg: dict, fps: float):
    from ..data import audio as audio_mod

    kind = cfg["kind"]
    if kind == "precomputed":
        raise ConfigError(
            "the training dataset used precomputed audio features "
            f"({cfg.get('path')}); jeancore cannot compute them for new audio. Compute the same "
            "features for the new speech and window them with "
            "jeancore.data.audio.window_features")
    if kind not in ("logmel", "mfcc"):
        raise ConfigError(f"unknown audio feature kind {kind!r} in the dataset settings")
    cfg_fps = float(cfg.get("fps", fps))
    if abs(cfg_fps - float(fps)) > 1e-6:
        raise ConfigError(f"the dataset's audio features were computed for {cfg_fps:g} fps, "
                          f"not {fps:g} fps: render at the dataset's frame rate")
    cls = audio_mod.MFCCFeatures if kind == "mfcc" else audio_mod.LogMelFeatures
    names = {f.name for f in dataclasses.fields(cls)} - {"fps"}
    kwargs = {k: v for k, v in cfg.items() if k in names}
    return audio_mod.make_feature_extractor(kind, fps=cfg_fps, **kwargs)


def audio_windows(path, features, fps: float = 25.0, *, window: int | None = None,
                  max_seconds: float | None = None, silence_db: float = -60.0,
                  return_wav: bool = False):
    """Speech feature windows of any audio file or video, exactly as preprocessing computes
    them for the training dataset (JEAN Sec. 3.1, suppl. 8.2; AD-NeRF's 16-step window).

    The first audio stream is decoded and resampled to 16 kHz mono
    (:func:`jeancore.data.video.load_audio`); the number of frames is
    ``T = round(duration * fps)`` (:func:`~jeancore.data.video.output_frame_count`) and the
    audio is cut to ``T / fps`` seconds, as the ``decode`` step does; the features
    (:mod:`jeancore.data.audio`: log-mel or MFCC with the dataset's settings, normalised over
    this clip when the dataset's were) are cut into one window per frame by
    :func:`~jeancore.data.audio.window_features`. Given the same speech file as
    ``jean preprocess --audio``, the result equals the dataset's ``audio_features.npy`` (when
    the video is at least as long as the audio).

    Args:
        path: an audio file (wav, mp3, flac, m4a, ...) or a video with a sound track.
        features: the training dataset's audio settings: the dataset folder, its meta.json
            (path or dict), the meta.json ``audio`` entry, or the feature config
            (see :func:`audio_feature_config`).
        fps: output frame rate (frames per second); must equal the dataset's.
        window: feature steps per window (default: the dataset's, 16).
        max_seconds: use only the first seconds of the audio.
        silence_db: audio whose peak amplitude is below this level (dB full scale) is
            refused as silent.
        return_wav: also return the 16 kHz mono samples that were used (cut to ``T / fps``
            seconds), e.g. to mux into the output video.

    Returns:
        float32 [T, window, D] (D = n_mels or n_mfcc), or ``(windows, wav float32 [N])`` with
        ``return_wav``.

    Raises:
        BadInputError: the file is missing, unreadable or truncated, has no audio stream, its
            audio is empty, shorter than one frame / 0.1 s, or silent.
        ConfigError: the settings are unusable (precomputed features, other fps, no kind).
    """
    from ..data.audio import SAMPLE_RATE, window_features
    from ..data.video import load_audio, output_frame_count

    cfg, win = audio_feature_config(features)
    if window is not None:
        win = int(window)
    extractor = _make_extractor(cfg, fps)
    wav = load_audio(path, SAMPLE_RATE)
    duration = len(wav) / SAMPLE_RATE
    if max_seconds is not None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        duration = min(duration, float(max_seconds))
    n = output_frame_count(duration, fps)
    if n < 1:
        raise BadInputError(f"{path}: the audio ({duration:.3f} s) is shorter than one frame")
    wav = wav[: int(round(n / fps * SAMPLE_RATE))]
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak <= 10.0 ** (silence_db / 20.0):
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
        raise BadInputError(f"{path}: the audio is silent (peak {level}, below {silence_db:g} "
                            "dBFS): pass a speech recording")
    try:
        feats = extractor(wav, SAMPLE_RATE)
    except BadInputError as e:
        raise BadInputError(f"{path}: {e}") from e
    out = window_features(feats, n, fps, extractor.rate, win).astype(np.float32, copy=False)
    return (out, wav) if return_wav else out


# ------------------------------------------------------------------------------------------
# faces in a driving video
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _FaceVideo:
    frames: list            # uint8 [size, size, 3] crops of the whole clip
    crop: tuple             # (x0, y0, side) in source pixels
    track: object           # LandmarkTrack in crop pixels


def _face_video(path, fps, max_seconds, max_frames, size, max_gap, detector, progress
                ) -> _FaceVideo:
    """Decode a driving video at ``fps`` through ONE square face crop, as preprocessing's
    decode step (scan for the face about 5 times per second, :func:`choose_crop`), and detect
    68 landmarks per frame with short gaps interpolated (:func:`detect_landmarks`)."""
    from ..data.landmarks import detect_landmarks
    from ..data.facecrop import choose_crop, scan_face_boxes
    from ..data.video import iter_frames, output_frame_count, probe_video

    info = probe_video(path)
    duration = info.duration if max_seconds is None else min(info.duration, float(max_seconds))
    n = output_frame_count(duration, fps)
    if max_frames is not None:
        n = min(n, int(max_frames))
    if n < 1:
        raise BadInputError(f"{path}: shorter than one frame at {fps:g} fps")
    boxes, looked, step = scan_face_boxes(iter_frames(path, fps, max_frames=n), n, fps)
    if not boxes:
        raise BadInputError(f"{path}: no face found in any of the {looked} frames examined "
                            f"(every {step / fps:.2f} s over {n / fps:.2f} s); a driving video "
                            "needs a visible face")
    crop = choose_crop(np.array(boxes), info.width, info.height)
    frames = list(iter_frames(path, fps, crop=crop, size=size, max_frames=n))
    track = detect_landmarks(frames, detector, max_gap=max_gap, progress=progress,
                             total=len(frames))
    return _FaceVideo(frames, tuple(int(v) for v in crop), track)


def _check_face_fraction(path, track, min_face_fraction, fps):
    from ..data.landmarks import frame_ranges

    valid = track.valid
    if not track.found.any():
        raise BadInputError(f"{path}: no face found in any of its {len(valid)} frames")
    if valid.mean() < min_face_fraction:
        raise BadInputError(
            f"{path}: only {int(valid.sum())} of {len(valid)} frames have a face (no face in "
            f"frames {frame_ranges(~valid, fps)}); cut the video to the part with the face")


def _hold_index(valid: np.ndarray) -> np.ndarray:
    """For each frame, the nearest valid frame (itself when valid; ties: the earlier)."""
    idx = np.flatnonzero(valid)
    k = np.arange(len(valid))
    pos = np.clip(np.searchsorted(idx, k), 0, len(idx) - 1)
    prev = idx[np.maximum(pos - 1, 0)]
    nxt = idx[pos]
    return np.where(np.abs(k - prev) <= np.abs(nxt - k), prev, nxt)


@dataclasses.dataclass
class ExpressionSource:
    """Per-frame expression input of a rendering, from :func:`expression_source`.

    Attributes:
        features: float32 [T, 128] emotion-CNN features (mini-Xception, Sec. 3.2), the
            expression transformer's input.
        probs: float32 [T, 7] emotion class probabilities
            (:data:`jeancore.data.emotion.EMOTION_LABELS`).
        crops: uint8 [T, S, S, 3] the video through one square face crop for the clip
            (preprocessing's crop: 2.6 x the face box), resized to S = ``crop_size``: the
            "source expression frame" of the frame grid.
        landmarks: float32 [T, 68, 2] iBUG-68 points in crop pixels (pixel-corner
            convention); NaN where ``valid`` is False.
        found: bool [T] a face was detected in the frame.
        interpolated: bool [T] landmarks interpolated over a short gap (<= ``max_gap``).
        held: bool [T] no usable face: features, probs and the grid crop are copied from the
            nearest frame with a face.
        fps: frame rate of the sequence.
        crop: (x0, y0, side) of the face crop in source-video pixels.
        path: the video.
    """

    features: np.ndarray
    probs: np.ndarray
    crops: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray
    interpolated: np.ndarray
    held: np.ndarray
    fps: float
    crop: tuple
    path: str

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """bool [T]: detected or interpolated (not held)."""
        return self.found | self.interpolated


def expression_source(path, fps: float = 25.0, *, max_seconds: float | None = None,
                      max_frames: int | None = None, crop_size: int = 256, max_gap: int = 5,
                      min_face_fraction: float = 0.5, model=None, detector=None,
                      device: str = "cpu", progress: bool = False) -> ExpressionSource:
    """Emotion features of a face video on the output frame grid (JEAN Sec. 3.2, 4.1).

    As preprocessing computes them for a dataset (``decode`` / ``landmarks`` / ``emotion``
    steps): the video is decoded at ``fps`` (nearest timestamps), seen through ONE square crop
    chosen from face detections about 5 times per second, 68 dlib landmarks are detected per
    frame and gaps of up to ``max_gap`` frames interpolated
    (:func:`jeancore.data.landmarks.fill_gaps`); each frame's 64x64 grey face crop
    (:func:`jeancore.data.facecrop.face_crop_grey`) goes through the mini-Xception
    (:func:`jeancore.data.emotion.emotion_from_crops`). Frames in longer runs without a face
    take the features of the nearest frame with one (``held``), so the sequence keeps one row
    per frame; the expression transformer then windows it as it does a dataset's features.

    Args:
        path: a video with a face (any format FFmpeg reads).
        fps: frame rate of the output grid.
        max_seconds, max_frames: use only the start of the video.
        crop_size: side in pixels of the stored face crops (``crops``); memory is
            ``T * crop_size^2 * 3`` bytes.
        max_gap: longest run of frames without a face that is interpolated.
        min_face_fraction: fewest frames (fraction) that must have a face.
        model: a loaded emotion CNN (default :func:`jeancore.data.emotion.load_emotion_cnn`).
        detector: landmark detector (default dlib, as preprocessing).
        device: torch device of the emotion CNN.
        progress: a progress bar for the landmarks.

    Returns:
        :class:`ExpressionSource` with T = the video's frames at ``fps`` (cut by
        ``max_seconds`` / ``max_frames``).

    Raises:
        BadInputError: missing, unreadable or truncated file; no face in the video; fewer
            than ``min_face_fraction`` of the frames with a face (the message lists them).
    """
    from ..data.emotion import emotion_from_crops, load_emotion_cnn
    from ..data.facecrop import face_crop_grey

    fv = _face_video(path, fps, max_seconds, max_frames, int(crop_size), max_gap, detector,
                     progress)
    track = fv.track
    _check_face_fraction(path, track, min_face_fraction, fps)
    valid = track.valid
    if not valid.all():
        from ..data.landmarks import frame_ranges

        log.warning("%s: no face in frames %s: their expression is held from the nearest frame "
                    "with a face", path, frame_ranges(~valid, fps))
    hold = _hold_index(valid)
    keep = np.flatnonzero(valid)
    grey = np.stack([face_crop_grey(fv.frames[i], track.points[i]) for i in keep])
    feats, probs = emotion_from_crops(grey, model=model or load_emotion_cnn(device=device),
                                      device=device)
    row = np.searchsorted(keep, hold)  # row of each frame's (nearest) valid frame
    crops = np.stack(fv.frames)[hold]
    return ExpressionSource(
        features=feats[row], probs=probs[row], crops=crops,
        landmarks=track.points.astype(np.float32), found=track.found.copy(),
        interpolated=track.interpolated.copy(), held=~valid, fps=float(fps), crop=fv.crop,
        path=str(path))


# ------------------------------------------------------------------------------------------
# head pose
# ------------------------------------------------------------------------------------------
def _mean_rotation(r: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations [N, 3, 3]: the rotation nearest their arithmetic mean."""
    u, _, vt = np.linalg.svd(np.asarray(r, np.float64).mean(0))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _camera_to_head(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """inverse([R t; 0 1]) for R [T,3,3], t [T,3] (head to camera) -> float32 [T, 4, 4]."""
    rt = np.swapaxes(rotation, 1, 2)
    out = np.zeros((len(rotation), 4, 4), np.float64)
    out[:, :3, :3] = rt
    out[:, :3, 3] = -np.einsum("tij,tj->ti", rt, translation)
    out[:, 3, 3] = 1.0
    return out.astype(np.float32)


def _head_to_camera(camera_to_head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c2h = np.asarray(camera_to_head, np.float64)
    r = np.swapaxes(c2h[:, :3, :3], 1, 2)
    t = -np.einsum("tij,tj->ti", r, c2h[:, :3, 3])
    return r, t


def _load_dataset_tracking(dataset):
    from ..data.dataset import read_meta
    from ..data.tracking import HeadTracking

    root = Path(dataset)
    meta = read_meta(root)
    return meta, HeadTracking.load(root / "tracking.npz")


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
    r_mean_d, t_mean_d = _mean_rotation(r_d), t_d.mean(0)
    r_mean, t_mean = _mean_rotation(target_rotation), np.asarray(target_translation,
                                                                 np.float64).mean(0)
    delta = r_d @ r_mean_d.T
    if motion_scale != 1.0:
        delta = Rotation.from_rotvec(Rotation.from_matrix(delta).as_rotvec()
                                     * motion_scale).as_matrix()
    depth_ratio = t_mean[2] / t_mean_d[2] if abs(t_mean_d[2]) > 1e-9 else 1.0
    r = delta @ r_mean
    t = t_mean + motion_scale * depth_ratio * (t_d - t_mean_d)
    return _camera_to_head(r, t)


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
    meta, tr = _load_dataset_tracking(dataset)
    c2h = np.asarray(tr.camera_to_head, np.float32)
    if frame is not None:
        if not -len(c2h) <= frame < len(c2h):
            raise IndexError(f"frame {frame} is out of range for a dataset of {len(c2h)} frames")
        return c2h[frame].copy()
    n_train = int(meta.get("split", {}).get("val_start", len(c2h))) or len(c2h)
    r, t = tr.rotation[:n_train].astype(np.float64), tr.translation[:n_train].astype(np.float64)
    r_mean, t_mean = _mean_rotation(r), t.mean(0)
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
        _, tr = _load_dataset_tracking(p)
        return fit_length(np.asarray(tr.camera_to_head, np.float32), n_frames, mode)
    if not p.exists():
        raise BadInputError(f"pose source {source!r}: no such file or dataset folder (use a "
                            "video, a dataset folder or 'frozen')")
    if dataset is None:
        raise ValueError("a pose video must be retargeted to the trained identity's camera: "
                         "pass its dataset folder (dataset=...)")
    from ..data.tracking import fit_3dmm

    _, target = _load_dataset_tracking(dataset)
    fv = _face_video(p, fps, None, n_frames, int(crop_size), max_gap, detector, progress)
    track = fv.track
    if not track.found.any():
        raise BadInputError(f"{p}: no face found in any of its {len(track)} frames")
    tr = fit_3dmm(track.points, (int(crop_size), int(crop_size)), valid=track.valid,
                  progress=progress)
    c2h = retarget_poses(tr.rotation, tr.translation, target.rotation, target.translation,
                         motion_scale=motion_scale)
    return fit_length(c2h, n_frames, mode)
