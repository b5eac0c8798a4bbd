"""68-point iBUG facial landmarks per frame, offline (dlib) or with face-alignment (FAN).

Coordinates everywhere in jeancore are in pixels with the pixel-corner convention of
:func:`jeancore.ops.generate_rays`: (0, 0) is the top-left corner of the top-left pixel, so
the centre of pixel (row i, column j) is (j + 0.5, i + 0.5). dlib reports integer pixel
indices (pixel centres); 0.5 is added.

Backends:

* ``"dlib"`` (default, offline): dlib's HOG face detector and its 68-point shape predictor
  (``shape_predictor_68_face_landmarks.dat`` from the ``face-recognition-models`` package,
  located with :func:`importlib.util.find_spec` because that package's ``__init__`` imports
  ``pkg_resources``, which recent setuptools no longer has).
* ``"face-alignment"`` (optional): the FAN network of the ``face-alignment`` package. It
  downloads its weights on first use; offline it works only when they are already cached.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import BadInputError, MissingDependencyError

__all__ = ["LandmarkTrack", "DlibLandmarkDetector", "FaceAlignmentDetector", "make_detector",
           "check_backend",
           "detect_landmarks", "fill_gaps", "dlib_model_path", "frame_ranges",
           "JAW", "BROWS", "NOSE", "EYES", "MOUTH"]

# iBUG-68 index groups
JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
EYES = slice(36, 48)
MOUTH = slice(48, 68)


def dlib_model_path(name: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    """Path of a model file shipped by the ``face-recognition-models`` package.

    Raises:
        MissingDependencyError: the package is not installed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "dlib's model files are missing: `pip install face-recognition-models` "
            "(jeancore's install does this)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise MissingDependencyError(f"{path} not found: reinstall face-recognition-models")
    return path


class DlibLandmarkDetector:
    """dlib HOG face detector + 68-point shape predictor.

    The detector runs on a copy of the frame resized so that its shorter side is
    ``detect_side`` pixels (faster, and finds large faces more reliably than at full size);
    frames where it finds nothing are tried again at full size with one upsampling. With
    several faces the largest is used. The shape predictor runs on the full-size frame.

    Args:
        detect_side: shorter side of the detection copy in pixels.
        upsample_retry: retry missed frames at full resolution upsampled once (slower).
    """

    name = "dlib"

    def __init__(self, detect_side: int = 256, upsample_retry: bool = True):
        try:
            import dlib
        except ImportError as e:  # pragma: no cover - dlib-bin is a dependency
            raise MissingDependencyError("dlib is missing: `pip install dlib-bin`") from e
        self._dlib = dlib
        self.detect_side = int(detect_side)
        self.upsample_retry = upsample_retry
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = None  # loaded on first use (0.7 s)

    def detect_faces(self, frame: np.ndarray, detect_side: int | None = None,
                     upsample_retry: bool | None = None
                     ) -> list[tuple[float, float, float, float]]:
        """Face boxes (left, top, right, bottom) in frame pixels, largest first.

        Args:
            frame: uint8 RGB [H, W, 3].
            detect_side, upsample_retry: override the detector's settings for this call.
        """
        import cv2

        detect_side = self.detect_side if detect_side is None else detect_side
        upsample_retry = self.upsample_retry if upsample_retry is None else upsample_retry
        h, w = frame.shape[:2]
        s = detect_side / min(h, w)
        small = frame if abs(s - 1) < 1e-3 else cv2.resize(
            frame, (max(1, round(w * s)), max(1, round(h * s))),
            interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        rects = self._detector(small, 0)
        if len(rects):
            boxes = [(r.left() / s, r.top() / s, (r.right() + 1) / s, (r.bottom() + 1) / s)
                     for r in rects]
        elif upsample_retry:
            rects = self._detector(frame, 1)
            boxes = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects]
        else:
            boxes = []
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def landmarks_in_box(self, frame: np.ndarray, box) -> np.ndarray:
        """68 landmarks [68, 2] float32 (pixel-corner convention) inside a face box."""
        if self._predictor is None:
            self._predictor = self._dlib.shape_predictor(str(dlib_model_path()))
        l, t, r, b = (int(round(v)) for v in box)
        shape = self._predictor(frame, self._dlib.rectangle(l, t, r - 1, b - 1))
        return np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """68 landmarks [68, 2] float32 of the largest face, or None without a face."""
        boxes = self.detect_faces(frame)
        return self.landmarks_in_box(frame, boxes[0]) if boxes else None


class FaceAlignmentDetector:
    """The FAN 2-D landmark network of the ``face-alignment`` package (optional backend).

    Raises:
        MissingDependencyError: face-alignment is not installed, or its weights are not cached
            and cannot be downloaded (offline).
    """

    name = "face-alignment"

    def __init__(self, device: str = "cpu"):
        try:
            import face_alignment
        except ImportError as e:
            raise MissingDependencyError(
                "the face-alignment backend needs `pip install face-alignment`; the offline "
                "default is `--landmarks dlib`") from e
        try:
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=device, flip_input=False)
        except Exception as e:  # network errors from the weight download
            raise MissingDependencyError(
                f"face-alignment could not load its weights ({e}); they are downloaded on "
                "first use, which needs internet. Use `--landmarks dlib` offline.") from e

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        preds = self._fa.get_landmarks_from_image(frame)
        if not preds:
            return None
        areas = [np.ptp(p[:, 0]) * np.ptp(p[:, 1]) for p in preds]
        # FAN returns pixel-centre coordinates like dlib
        return np.asarray(preds[int(np.argmax(areas))][:, :2], np.float32) + 0.5


def check_backend(backend: str = "dlib") -> None:
    """Cheap check that a landmark backend can load (without loading its models for dlib).

    Raises:
        ValueError: unknown backend name.
        MissingDependencyError: the backend cannot be loaded.
    """
    if backend == "dlib":
        try:
            import dlib  # noqa: F401
        except ImportError as e:
            raise MissingDependencyError("dlib is missing: `pip install dlib-bin`") from e
        dlib_model_path()
    else:
        make_detector(backend)


def make_detector(backend: str = "dlib", **kwargs):
    """A landmark detector by name: ``"dlib"`` or ``"face-alignment"``.

    Raises:
        ValueError: unknown backend name.
        MissingDependencyError: the backend cannot be loaded.
    """
    if backend == "dlib":
        return DlibLandmarkDetector(**kwargs)
    if backend in ("face-alignment", "face_alignment", "fan"):
        return FaceAlignmentDetector(**kwargs)
    raise ValueError(f"unknown landmark backend {backend!r}: use 'dlib' or 'face-alignment'")


@dataclass
class LandmarkTrack:
    """Landmarks of a clip.

    Attributes:
        points: float32 [T, 68, 2] iBUG-68 points in pixels (pixel-corner convention); NaN for
            frames without a face that were not interpolated.
        found: bool [T], a face was detected in the frame.
        interpolated: bool [T], points were filled by linear interpolation over a short gap.
    """

    points: np.ndarray
    found: np.ndarray
    interpolated: np.ndarray = field(default=None)

    def __post_init__(self):
        if self.interpolated is None:
            self.interpolated = np.zeros_like(self.found)

    @property
    def valid(self) -> np.ndarray:
        """bool [T]: detected or interpolated."""
        return self.found | self.interpolated

    def __len__(self) -> int:
        return len(self.found)


def frame_ranges(mask: np.ndarray, fps: float | None = None, limit: int = 12) -> str:
    """Human-readable list of the runs of True in ``mask``, e.g. ``"12-30, 95"`` (frame
    indices; with ``fps`` also times in seconds)."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return "none"
    runs, start = [], idx[0]
    for a, b in zip(idx[:-1], idx[1:]):
        if b != a + 1:
            runs.append((start, a))
            start = b
    runs.append((start, idx[-1]))

    def fmt(a, b):
        s = f"{a}" if a == b else f"{a}-{b}"
        if fps:
            s += f" ({a / fps:.2f}s)" if a == b else f" ({a / fps:.2f}-{(b + 1) / fps:.2f}s)"
        return s

    out = ", ".join(fmt(a, b) for a, b in runs[:limit])
    return out + (f", ... ({len(runs) - limit} more runs)" if len(runs) > limit else "")


def fill_gaps(points: np.ndarray, found: np.ndarray, max_gap: int = 5) -> LandmarkTrack:
    """Linearly interpolate landmarks over short runs of frames without a face.

    Runs of at most ``max_gap`` missing frames with a detected frame on both sides are filled
    (and flagged in ``interpolated``); longer runs and runs at the start or end of the clip
    stay NaN.

    Args:
        points: float32 [T, 68, 2] (rows of missing frames are ignored).
        found: bool [T].
        max_gap: longest run of missing frames to fill, in frames.

    Returns:
        :class:`LandmarkTrack`.
    """
    points = np.array(points, np.float32, copy=True)
    found = np.asarray(found, bool)
    if points.ndim != 3 or points.shape[1:] != (68, 2) or len(points) != len(found):
        raise ValueError(f"points must be [T, 68, 2] and found [T]; got {points.shape} and "
                         f"{found.shape}")
    points[~found] = np.nan
    interp = np.zeros_like(found)
    idx = np.flatnonzero(found)
    for a, b in zip(idx[:-1], idx[1:]):
        gap = b - a - 1
        if 0 < gap <= max_gap:
            w = (np.arange(1, gap + 1, dtype=np.float32) / (gap + 1))[:, None, None]
            points[a + 1:b] = (1 - w) * points[a] + w * points[b]
            interp[a + 1:b] = True
    return LandmarkTrack(points, found, interp)


def detect_landmarks(frames: Iterable[np.ndarray], detector=None, *, max_gap: int = 5,
                     progress: bool = False, total: int | None = None) -> LandmarkTrack:
    """Detect 68 iBUG landmarks in every frame and interpolate short gaps.

    Args:
        frames: iterable of uint8 RGB frames [H, W, 3].
        detector: a detector (:func:`make_detector`); default dlib.
        max_gap: see :func:`fill_gaps`.
        progress: show a tqdm progress bar.
        total: number of frames, for the progress bar.

    Returns:
        :class:`LandmarkTrack` (the caller decides what to do with frames still missing).

    Raises:
        BadInputError: no frames.
    """
    from tqdm.auto import tqdm

    detector = detector or DlibLandmarkDetector()
    pts, found = [], []
    for frame in tqdm(frames, total=total, desc="landmarks", unit="frame", disable=not progress,
                      leave=False):
        p = detector(frame)
        found.append(p is not None)
        pts.append(p if p is not None else np.full((68, 2), np.nan, np.float32))
    if not pts:
        raise BadInputError("no frames to detect landmarks in")
    return fill_gaps(np.stack(pts), np.array(found), max_gap=max_gap)

