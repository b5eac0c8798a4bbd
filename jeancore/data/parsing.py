"""Person / head / torso parsing and the background image (JEAN Sec. 3.3; AD-NeRF's parsing).

No face-parsing network (BiSeNet) is available offline, so the parsing is built from two
offline parts:

* the person mask of mediapipe 0.10.21's selfie segmentation (head, hair, neck, shoulders);
* the jaw line of the iBUG-68 landmarks: the **head** is the person above the jaw contour
  (points 0-16, prolonged sideways from its end points, so hair beside the face stays with the
  head and the neck goes to the torso); the **torso** is the rest of the person.

The background image is the per-pixel median over frames of the pixels outside the (dilated)
person mask; pixels the person covers in every frame are filled smoothly from the seen ones (push-pull
over an image pyramid).
"""

from __future__ import annotations

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["PersonSegmenter", "check_segmenter", "head_torso_masks", "jaw_boundary", "BackgroundAccumulator",
           "fill_holes", "composite_over", "LABEL_BACKGROUND", "LABEL_TORSO", "LABEL_HEAD"]

LABEL_BACKGROUND, LABEL_TORSO, LABEL_HEAD = 0, 1, 2
"""Values of the per-frame label maps (``parsing/*.png``)."""

MEDIAPIPE_INSTALL = "pip install --no-deps mediapipe==0.10.21"


def check_segmenter() -> None:
    """Raises MissingDependencyError when mediapipe's selfie segmentation cannot be imported."""
    try:
        from mediapipe.python.solutions import selfie_segmentation  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"person segmentation needs mediapipe 0.10.21 (it declares numpy<2 but works "
            f"with numpy 2): `{MEDIAPIPE_INSTALL}` ({e})") from e


class PersonSegmenter:
    """mediapipe selfie segmentation: soft person mask per frame (offline, bundled model).

    Args:
        model: 0 = general model (256x256 input), 1 = landscape model (144x256, faster).

    Raises:
        MissingDependencyError: mediapipe 0.10.21 is not installed (newer releases no longer
            bundle the legacy ``solutions`` models).
    """

    def __init__(self, model: int = 0):
        check_segmenter()
        from mediapipe.python.solutions import selfie_segmentation

        self._seg = selfie_segmentation.SelfieSegmentation(model_selection=model)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Person probability float32 [H, W] in [0, 1] for a uint8 RGB frame [H, W, 3]."""
        res = self._seg.process(np.ascontiguousarray(frame))
        return np.asarray(res.segmentation_mask, np.float32)

    def close(self):
        self._seg.close()


def jaw_boundary(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Row of the head/neck boundary for every image column: float32 [W] (pixel units).

    Between the leftmost and rightmost jaw points the boundary follows the jaw contour
    (iBUG points 0-16, linearly interpolated in x; where the contour folds, the lowest point
    is used). Beyond them (ears, hair beside the face) it continues horizontally at the height
    of jaw points 4 (left) and 12 (right), about the mouth corners' height, so the ears stay
    with the head while the neck below the chin goes to the torso.

    Args:
        landmarks: float [68, 2] (x, y) pixels.
        width: image width in pixels.
    """
    jaw = np.asarray(landmarks, np.float32)[0:17]
    xs = np.arange(width, dtype=np.float32) + 0.5
    order = np.argsort(jaw[:, 0], kind="stable")
    jx, jy = jaw[order, 0], jaw[order, 1]
    # np.interp needs increasing x: merge equal x by the lowest point (largest row)
    ux, inv = np.unique(jx, return_inverse=True)
    uy = np.full(ux.shape, -np.inf, np.float32)
    np.maximum.at(uy, inv, jy)
    left, right = (jaw[4, 1], jaw[12, 1]) if jaw[4, 0] <= jaw[12, 0] else (jaw[12, 1], jaw[4, 1])
    return np.interp(xs, ux, uy, left=left, right=right).astype(np.float32)


def head_torso_masks(person: np.ndarray, landmarks: np.ndarray, threshold: float = 0.5
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Split a person mask into head and torso at the jaw line.

    Args:
        person: float [H, W] person probability (or bool mask).
        landmarks: float [68, 2] iBUG-68 points of the frame (pixel-corner convention).
        threshold: person probability above which a pixel is the person.

    Returns:
        (head, torso): bool [H, W] each, disjoint, their union the person mask.
    """
    h, w = person.shape
    mask = person > threshold
    rows = np.arange(h, dtype=np.float32)[:, None] + 0.5
    above = rows <= jaw_boundary(landmarks, w)[None, :]
    head = mask & above
    return head, mask & ~head


class BackgroundAccumulator:
    """Running estimate of the static background from frames and their person masks.

    Add frames (a subsample of the clip is enough) with :meth:`add`; :meth:`result` takes the
    per-pixel median of the frames in which the pixel is outside the person mask dilated by
    ``margin`` pixels (so the soft edge and the hair do not leak into the background), and
    fills pixels never seen with :func:`fill_holes`.

    Args:
        margin: dilation of the person mask in pixels.
    """

    def __init__(self, margin: int = 7):
        self.margin = margin
        self._frames: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []

    def add(self, frame: np.ndarray, person: np.ndarray) -> None:
        """Add a uint8 RGB frame [H, W, 3] and its person mask [H, W] (bool or probability)."""
        import cv2

        mask = (np.asarray(person) > 0.5).astype(np.uint8)
        if self.margin > 0:
            k = 2 * self.margin + 1
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        self._frames.append(frame)
        self._masks.append(mask.astype(bool))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(background uint8 [H, W, 3], seen bool [H, W]: pixels observed without the person).

        Raises:
            ValueError: nothing was added.
        """
        if not self._frames:
            raise ValueError("no frames were added to the background estimate")
        frames = np.stack(self._frames)                           # [N, H, W, 3] uint8
        masks = np.stack(self._masks)                             # [N, H, W] bool
        count = (~masks).sum(0)                                   # [H, W] frames that see it
        seen = count > 0
        # masked median by sorting: occluded samples get a key above every value (256), so
        # the k = (count - 1) // 2 -th sorted entry is the lower median of the visible ones
        keys = np.where(masks[..., None], np.uint16(256), frames.astype(np.uint16))
        keys.sort(axis=0)
        k = np.maximum(count - 1, 0) // 2
        bg = np.take_along_axis(keys, k[None, :, :, None].repeat(3, -1), axis=0)[0]
        bg = np.where(seen[..., None], bg, 0).astype(np.uint8)
        if not seen.all():
            bg = fill_holes(bg, seen)
        return bg, seen


def fill_holes(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill pixels where ``known`` is False smoothly from the known ones (push-pull).

    The known pixels are averaged down an image pyramid (weighted by how many known pixels
    each coarse pixel covers) and the holes are filled from the coarsest level that has data,
    upsampled back; known pixels are kept unchanged.

    Args:
        image: uint8 [H, W, 3].
        known: bool [H, W].

    Returns:
        uint8 [H, W, 3].
    """
    import cv2

    img = image.astype(np.float32) * known[..., None]
    w = known.astype(np.float32)
    levels = [(img, w)]
    while min(img.shape[:2]) > 2 and w.min() == 0:
        img, w = cv2.pyrDown(img), cv2.pyrDown(w)
        levels.append((img, w))
    fill = levels[-1][0] / np.maximum(levels[-1][1], 1e-6)[..., None]
    for img, w in reversed(levels[:-1]):
        up = cv2.resize(fill, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        ww = np.clip(w, 0, 1)[..., None]
        fill = np.where(ww > 0, img / np.maximum(w, 1e-6)[..., None], up) * ww + up * (1 - ww)
    out = np.where(known[..., None], image.astype(np.float32), fill)
    return out.round().clip(0, 255).astype(np.uint8)


def composite_over(frame: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``frame`` where ``mask`` is set, ``background`` elsewhere: uint8 [H, W, 3]."""
    return np.where(np.asarray(mask, bool)[..., None], frame, background).astype(np.uint8)
