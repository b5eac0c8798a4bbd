"""Full-frame output: the rendered head over the torso over the background (RAD-NeRF /
ER-NeRF's head-only composition; JEAN Sec. 3.3 renders the head only).

The NeRF renders the head alone: composited over black, its colour is premultiplied
(``C = sum_i w_i c_i``) and its opacity is ``O = sum_i w_i``. The rest of the frame comes
from a recorded dataset frame: its **torso layer** (the frame with the head region, parsing
label 2, removed; colour + soft alpha) over the dataset's static ``background.png``:

``out = C + (1 - O) * (torso * a + background * (1 - a))``                     (:func:`compose_full`)

**Neck.** The torso layer of a frame whose recorded mouth is open has its head region reaching
down to the recorded (low) chin. A rendered head with a closed mouth ends higher, and the
pixels between the two chins would show the background: a hole under the chin. The torso layer
therefore fills the lower part of the removed head region, above the neck, with the neck's own
colours continued upward (``neck_fill="extend"``, column by column from the rows just below
the jaw line, smoothed across columns), with an alpha that fades out toward the mouth; the
rendered head covers the fill wherever it is opaque, and its soft opacity blends head and neck.
Measured in ``docs/render.md`` (``benchmarks/neck_seam.py``).

**Torso for a pose that is not a dataset frame** (a retargeted video): the dataset frame
nearest in head pose, :func:`nearest_pose_frame`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..data.parsing import LABEL_HEAD, LABEL_TORSO, jaw_boundary
from ..errors import BadInputError

__all__ = ["TorsoLayer", "torso_layer", "compose_full", "chin_gap", "seam_step",
           "pose_distance", "nearest_pose_frame", "DatasetTorso", "NECK_FILLS"]

NECK_FILLS = ("extend", "inpaint", "none")
"""How :func:`torso_layer` fills the removed head region above the neck."""


@dataclasses.dataclass
class TorsoLayer:
    """The torso layer of one recorded frame (:func:`torso_layer`).

    Attributes:
        rgb: float32 [H, W, 3] in [0, 1]: the recorded frame; the neck fill in ``fill``; 0 in
            the rest of the removed head region.
        alpha: float32 [H, W] in [0, 1]: 1 on the torso and the opaque part of the fill, soft
            at the person's silhouette and at the top of the fill, 0 in the removed head
            region and on the background.
        fill: bool [H, W]: the removed head pixels that the neck fill covers (alpha > 0).
    """

    rgb: np.ndarray
    alpha: np.ndarray
    fill: np.ndarray


def _as_float_image(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got {x.dtype}")
    return x.astype(np.float32, copy=False)


def _as_weight(x, name: str, shape: tuple[int, int]) -> np.ndarray:
    """An opacity / alpha map -> float32 [H, W] in [0, 1] (uint8 is read as 0-255)."""
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.shape != shape:
        raise ValueError(f"{name} must be [H, W] = {list(shape)} (or [H, W, 1]), got "
                         f"{list(x.shape)}")
    w = _as_float_image(x, name)
    if w.size and (float(w.min()) < -1e-3 or float(w.max()) > 1 + 1e-3):
        raise ValueError(f"{name} must lie in [0, 1], got values in "
                         f"[{float(w.min()):.3g}, {float(w.max()):.3g}]")
    return np.clip(w, 0.0, 1.0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _neck_columns(torso: np.ndarray, jaw: np.ndarray, chin_x: float, probe: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Columns with torso (the neck) just below the jaw line: the contiguous run around the
    chin. Returns (bool [W] run, int [W] first probe row per column)."""
    h, w = torso.shape
    top = np.clip(np.ceil(jaw).astype(int), 0, h - 1)
    rows = np.clip(top[None, :] + np.arange(probe)[:, None], 0, h - 1)   # [probe, W]
    under = torso[rows, np.arange(w)[None, :]]                          # [probe, W]
    valid = under.mean(0) >= 0.5
    run = np.zeros(w, bool)
    if not valid.any():
        return run, top
    c = int(np.clip(round(chin_x - 0.5), 0, w - 1))
    if not valid[c]:
        cand = np.flatnonzero(valid)
        c = int(cand[np.argmin(np.abs(cand - c))])
    lo = c
    while lo > 0 and valid[lo - 1]:
        lo -= 1
    hi = c
    while hi < w - 1 and valid[hi + 1]:
        hi += 1
    run[lo:hi + 1] = True
    return run, top


def torso_layer(frame, labels, landmarks, *, neck_fill: str = "extend",
                fill_height: float = 0.5, edge_sigma: float = 1.0) -> TorsoLayer:
    """The torso layer of a recorded frame: the frame with its head region removed, with a
    soft alpha, to be composited under a rendered head and over the background
    (:func:`compose_full`; RAD-NeRF / ER-NeRF head-only mode).

    The head region (parsing label 2: the person above the jaw line) is removed. Its lower
    part, above the neck, is filled so that a rendered jaw that ends higher than the recorded
    one leaves no hole under the chin (see the module docstring):

    * ``"extend"`` (default): in every neck column (the contiguous run of columns around the
      chin, iBUG point 8, that have torso just below the jaw line), the mean colour of the
      torso pixels in the ``probe`` rows below the jaw line (``probe`` = 8% of the nose-tip
      (30) to chin (8) distance, at least 2 px), smoothed across columns (Gaussian,
      sigma = 5% of that distance), continued straight up to ``fill_height`` x that distance
      above the jaw line; its alpha is 1 up to 60% of the height and fades (smoothstep) to 0
      at the top.
    * ``"inpaint"``: the same region, coloured by OpenCV's Telea inpainting with the whole
      head region unknown (so the colours come from the neck and the background beside it).
    * ``"none"``: nothing is filled (the background shows wherever the rendered head does
      not cover the recorded head region).

    The alpha is 1 on the torso and 0 on the background (parsing label 0) and in the removed
    head region; at the person's outer silhouette it is softened outward by a Gaussian of
    ``edge_sigma`` pixels (the real frame's own edge pixels then blend into the background
    image), never into the removed head region.

    Args:
        frame: uint8 [H, W, 3] (or float in [0, 1]) RGB, the recorded dataset frame.
        labels: uint8 [H, W] parsing labels (0 background, 1 torso, 2 head).
        landmarks: float [68, 2] iBUG-68 points (x, y) in pixels of the frame.
        neck_fill: ``"extend"``, ``"inpaint"`` or ``"none"``.
        fill_height: height of the fill above the jaw line, in nose-to-chin distances.
        edge_sigma: softness of the outer silhouette in pixels (0: hard labels).

    Returns:
        :class:`TorsoLayer` (float32 rgb [H, W, 3], alpha [H, W], fill [H, W]).

    Raises:
        ValueError: shapes that do not match, an unknown ``neck_fill``, negative sizes.
    """
    import cv2

    if neck_fill not in NECK_FILLS:
        raise ValueError(f"neck_fill must be one of {NECK_FILLS}, got {neck_fill!r}")
    if fill_height < 0 or edge_sigma < 0:
        raise ValueError(f"fill_height and edge_sigma must be >= 0, got {fill_height}, "
                         f"{edge_sigma}")
    rgb = _as_float_image(frame, "frame")
    labels = np.asarray(labels)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or labels.shape != rgb.shape[:2]:
        raise ValueError(f"frame must be [H, W, 3] and labels [H, W] of the same size, got "
                         f"{list(rgb.shape)} and {list(labels.shape)}")
    pts = np.asarray(landmarks, np.float32)
    if pts.shape != (68, 2):
        raise ValueError(f"landmarks must be iBUG-68 [68, 2], got {list(pts.shape)}")
    h, w = labels.shape
    head = labels == LABEL_HEAD
    torso = labels == LABEL_TORSO
    a0 = torso.astype(np.float32)
    out = np.where(head[..., None], 0.0, rgb).astype(np.float32)
    fill = np.zeros((h, w), bool)

    face = float(np.linalg.norm(pts[8] - pts[30]))
    if neck_fill != "none" and fill_height > 0 and face > 0 and head.any():
        jaw = jaw_boundary(pts, w)
        probe = max(2, int(round(0.08 * face)))
        cols, top = _neck_columns(torso, jaw, float(pts[8, 0]), probe)
        if cols.any():
            # the band's top: fill_height face lengths above the jaw line, never above the
            # recorded inner upper lip (iBUG 62): a new chin cannot rise above it
            fill_top = np.maximum(jaw - fill_height * face, pts[62, 1])
            ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
            region = head & cols[None, :] & (ys >= fill_top[None, :])
            # alpha: 1 over the lower 60% of the band, smoothstep to 0 at its top
            a_fill = _smoothstep((ys - fill_top[None, :])
                                 / np.maximum(0.4 * (jaw - fill_top), 1e-6)[None, :])
            fill = region & (a_fill > 0)
            if neck_fill == "extend":
                rows = np.clip(top[None, :] + np.arange(probe)[:, None], 0, h - 1)
                cidx = np.arange(w)[None, :]
                m = torso[rows, cidx].astype(np.float32) * cols[None, :]      # [probe, W]
                s = (rgb[rows, cidx] * m[..., None]).sum(0)                    # [W, 3]
                cnt = m.sum(0)
                sigma = max(0.05 * face, 0.5)
                xs = np.arange(w, dtype=np.float32)
                k = np.exp(-0.5 * ((xs[:, None] - xs[None, :]) / sigma) ** 2)  # [W, W]
                colour = (k @ s) / np.maximum(k @ cnt, 1e-6)[:, None]         # [W, 3]
                fill_rgb = np.broadcast_to(colour[None], (h, w, 3))
            else:
                img8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
                radius = max(3, int(round(0.05 * face)))
                fill_rgb = cv2.inpaint(img8, head.astype(np.uint8), radius,
                                       cv2.INPAINT_TELEA).astype(np.float32) / 255.0
            out[fill] = fill_rgb[fill]
            a0 = np.where(fill, a_fill, a0).astype(np.float32)

    alpha = a0
    if edge_sigma > 0:
        soft = cv2.GaussianBlur(a0, (0, 0), edge_sigma, borderType=cv2.BORDER_REPLICATE)
        alpha = np.maximum(a0, soft)
    alpha = np.where(head & ~fill, 0.0, alpha).astype(np.float32)
    return TorsoLayer(rgb=out, alpha=np.clip(alpha, 0.0, 1.0), fill=fill)


def compose_full(head_rgb, head_opacity, torso_rgb, torso_alpha, background) -> np.ndarray:
    """Composite a rendered head over a torso layer over the background (RAD-NeRF / ER-NeRF
    head-only composition):

    ``out = head_rgb + (1 - head_opacity) * (torso_rgb * torso_alpha + background * (1 - torso_alpha))``

    ``head_rgb`` is premultiplied: the NeRF's colour composited over black (``sum_i w_i c_i``)
    and ``head_opacity = sum_i w_i`` (:func:`jeancore.ops.composite`'s colour with a black
    background and its opacity).

    Args:
        head_rgb: [H, W, 3] uint8 or float in [0, 1], premultiplied head colour.
        head_opacity: [H, W] (or [H, W, 1]) float in [0, 1] (uint8: 0-255).
        torso_rgb: [H, W, 3] uint8 or float; torso_alpha: [H, W] (or [H, W, 1]) in [0, 1]
            (:class:`TorsoLayer` ``rgb`` / ``alpha``).
        background: [H, W, 3] or [3] (one colour), uint8 or float.

    Returns:
        [H, W, 3]: uint8 (rounded) when ``head_rgb`` is uint8, else float32 in [0, 1].

    Raises:
        ValueError: shapes that do not match, weights outside [0, 1], non-image dtypes.
    """
    head = np.asarray(head_rgb)
    as_uint8 = head.dtype == np.uint8
    c = _as_float_image(head, "head_rgb")
    if c.ndim != 3 or c.shape[-1] != 3:
        raise ValueError(f"head_rgb must be [H, W, 3], got {list(c.shape)}")
    hw = c.shape[:2]
    o = _as_weight(head_opacity, "head_opacity", hw)[..., None]
    t = _as_float_image(torso_rgb, "torso_rgb")
    if t.shape != c.shape:
        raise ValueError(f"torso_rgb must be {list(c.shape)}, got {list(t.shape)}")
    a = _as_weight(torso_alpha, "torso_alpha", hw)[..., None]
    bg = _as_float_image(background, "background")
    if bg.shape not in ((3,), c.shape):
        raise ValueError(f"background must be [H, W, 3] = {list(c.shape)} or one colour [3], "
                         f"got {list(bg.shape)}")
    out = c + (1.0 - o) * (t * a + bg * (1.0 - a))
    if as_uint8:
        return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------
# measuring the neck
# ------------------------------------------------------------------------------------------
def chin_gap(head_opacity, torso_alpha, torso_labels, head_labels, head_landmarks,
             threshold: float = 0.5) -> tuple[int, int]:
    """Background showing under a new chin: the hole :func:`torso_layer`'s neck fill is for.

    The region looked at is the pixels that were head in the torso frame (``torso_labels``
    == 2) but are not head in the frame the new head belongs to, lie below its jaw line
    (:func:`jeancore.data.parsing.jaw_boundary` of ``head_landmarks``), between its jaw points
    3 and 13 (under the chin, not beside the cheeks), and are the person in that frame
    (``head_labels`` > 0). A pixel there is a gap when the composite's background weight
    ``(1 - O)(1 - a)`` exceeds ``threshold``.

    Args:
        head_opacity, torso_alpha: float [H, W] in [0, 1] (as given to :func:`compose_full`).
        torso_labels: uint8 [H, W] parsing labels of the torso frame.
        head_labels: uint8 [H, W] parsing labels of the frame the head is (or stands for).
        head_landmarks: float [68, 2] that frame's iBUG-68 points.

    Returns:
        (gap pixels, pixels of the region).
    """
    lt, lh = np.asarray(torso_labels), np.asarray(head_labels)
    h, w = lh.shape
    pts = np.asarray(head_landmarks, np.float32)
    jaw = jaw_boundary(pts, w)
    xs = np.arange(w) + 0.5
    chin = (xs > min(pts[3, 0], pts[13, 0])) & (xs < max(pts[3, 0], pts[13, 0]))
    below = (np.arange(h)[:, None] + 0.5 > jaw[None, :]) & chin[None, :]
    region = (lt == LABEL_HEAD) & (lh != LABEL_HEAD) & (lh > 0) & below
    bg_w = (1.0 - _as_weight(head_opacity, "head_opacity", (h, w))) * (
        1.0 - _as_weight(torso_alpha, "torso_alpha", (h, w)))
    return int((region & (bg_w > threshold)).sum()), int(region.sum())


def seam_step(image, labels, landmarks, rows: int = 4) -> float:
    """Mean colour step across the jaw line: over the columns where the head (label 2) lies
    just above and the torso (label 1) just below the line (the chin over the neck), the RGB
    distance between the mean of the ``rows`` pixels above and of the ``rows`` below it.
    Units of the image (0-255 for uint8). NaN when no column qualifies.

    Compare a composite's step with the recorded frame's: a visible seam is a larger step.
    """
    img = np.asarray(image, np.float32)
    lab = np.asarray(labels)
    h, w = lab.shape
    top = np.ceil(jaw_boundary(landmarks, w)).astype(int)
    d = [np.linalg.norm(img[top[x] - rows:top[x], x].mean(0)
                        - img[top[x] + 1:top[x] + 1 + rows, x].mean(0))
         for x in range(w) if rows <= top[x] < h - rows - 1
         and lab[top[x] + 1, x] == LABEL_TORSO and lab[top[x] - 2, x] == LABEL_HEAD]
    return float(np.mean(d)) if d else float("nan")


# ------------------------------------------------------------------------------------------
# nearest head pose
# ------------------------------------------------------------------------------------------
def pose_distance(camera_to_head, query, head_radius: float = 1.0) -> np.ndarray:
    """Distance between head poses: about how far (decimetres) a point on the head's surface
    moves between the two poses, ``head_radius * angle + |t_q - t_k|``.

    ``angle`` is the rotation angle (radians) of ``R_q R_kᵀ``, from scipy ``Rotation``
    quaternions (``2 arccos |<q_q, q_k>|``; about 2e-8 rad resolution)
    and ``t`` the head's position in the camera frame (head-to-camera translation); a
    rotation by ``angle`` moves points at ``head_radius`` from the head's centre by about
    ``head_radius * angle``, a translation moves every point by ``|Δt|``. Both thus count in
    image displacement (times focal / depth); translation moves the torso with the head,
    which is what a torso frame must match.

    Args:
        camera_to_head: float [T, 4, 4] (or [4, 4]) camera-to-head transforms
            (``tracking.npz``; OpenGL camera axes, decimetres).
        query: float [4, 4] or [Q, 4, 4].
        head_radius: decimetres (a dataset's half of ``far - near``: its head sphere).

    Returns:
        float64 [Q, T] (squeezed to [T] for one [4, 4] query).

    Raises:
        ValueError: arrays that are not [..., 4, 4], a negative radius.
    """
    poses = np.asarray(camera_to_head, np.float64)
    q = np.asarray(query, np.float64)
    single = q.ndim == 2
    dist = _pose_distance(_pose_features(q, "query"),
                          _pose_features(poses, "camera_to_head"), head_radius)
    return dist[0] if single else dist


def _pose_features(camera_to_head, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(unit quaternions [T, 4] of the head-to-camera rotations, translations [T, 3])."""
    from scipy.spatial.transform import Rotation

    from ..data.camera import head_to_camera

    x = np.asarray(camera_to_head, np.float64)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[1:] not in ((4, 4), (3, 4)) or len(x) == 0:
        raise ValueError(f"{name} must be [T, 4, 4] (or one [4, 4]), got {list(x.shape)}")
    r, t = head_to_camera(x)
    return Rotation.from_matrix(r).as_quat(), t


def _pose_distance(query, poses, head_radius: float) -> np.ndarray:
    """[Q, T] distances between :func:`_pose_features` of queries and poses."""
    if head_radius < 0:
        raise ValueError(f"head_radius must be >= 0, got {head_radius}")
    (quat_q, t_q), (quat_k, t_k) = query, poses
    # angle of R_q R_kᵀ from the unit quaternions: cos(angle / 2) = |<q_q, q_k>|
    angle = 2.0 * np.arccos(np.clip(np.abs(quat_q @ quat_k.T), 0.0, 1.0))
    # |t_q - t_k| by expansion (a matmul; about 3e-7 dm resolution at 1 m)
    sq = (t_q ** 2).sum(1)[:, None] + (t_k ** 2).sum(1)[None, :] - 2.0 * (t_q @ t_k.T)
    return head_radius * angle + np.sqrt(np.maximum(sq, 0.0))


def nearest_pose_frame(camera_to_head, query, *, head_radius: float = 1.0,
                       candidates=None):
    """The dataset frame nearest in head pose (:func:`pose_distance`) to each query pose:
    the torso frame of a pose that comes from a retargeted video.

    Args:
        camera_to_head: float [T, 4, 4] the dataset's poses (``tracking.npz``).
        query: float [4, 4] or [Q, 4, 4] poses (e.g. :func:`jeancore.render.sources.head_poses`
            of a video).
        head_radius: decimetres, see :func:`pose_distance`.
        candidates: optional int indices of the frames allowed (default all).

    Returns:
        int (one query) or int64 [Q]: frame indices into ``camera_to_head``. Queries are
        processed in chunks (memory bounded whatever Q and T).

    Raises:
        ValueError: bad shapes, empty ``candidates``.
    """
    poses = np.asarray(camera_to_head)
    idx = np.arange(len(poses)) if candidates is None else np.asarray(candidates, np.int64)
    if idx.ndim != 1 or len(idx) == 0:
        raise ValueError("candidates must be a non-empty 1-d list of frame indices")
    single = np.ndim(query) == 2
    quat_q, t_q = _pose_features(query, "query")
    feats = _pose_features(poses[idx], "camera_to_head")
    step = max(1, (1 << 20) // len(idx))  # bounds the [chunk, T] distance matrices
    best = np.concatenate([
        idx[np.argmin(_pose_distance((quat_q[i:i + step], t_q[i:i + step]), feats,
                                     head_radius), axis=-1)]
        for i in range(0, len(t_q), step)]).astype(np.int64)
    return int(best[0]) if single else best


# ------------------------------------------------------------------------------------------
# a dataset's torso layers
# ------------------------------------------------------------------------------------------
class DatasetTorso:
    """Torso layers and background of a preprocessed dataset (``docs/dataset.md``): what the
    full-frame output needs besides the rendered head.

    Args:
        root: dataset folder (``frames/``, ``parsing/``, ``landmarks.npz``, ``tracking.npz``,
            ``background.png``).
        neck_fill, fill_height, edge_sigma: see :func:`torso_layer`.

    Attributes:
        background: uint8 [H, W, 3]; camera_to_head: float32 [T, 4, 4]; landmarks: float32
        [T, 68, 2]; head_radius: decimetres (half of ``far - near``); size; n_frames.

    Raises:
        BadInputError: not a finished dataset, or one without parsing labels / background.
    """

    def __init__(self, root, *, neck_fill: str = "extend", fill_height: float = 0.5,
                 edge_sigma: float = 1.0):
        from ..data.dataset import TalkingHeadDataset

        self.root = Path(root)
        self._ds = TalkingHeadDataset(self.root, "all", images=False)
        for kind in ("parsing", "frames"):
            if not (self.root / kind).is_dir():
                raise BadInputError(f"{self.root}: {kind}/ is missing: the dataset has no "
                                    "torso labels (run `jean preprocess` again)")
        if neck_fill not in NECK_FILLS:
            raise ValueError(f"neck_fill must be one of {NECK_FILLS}, got {neck_fill!r}")
        self.options = dict(neck_fill=neck_fill, fill_height=fill_height,
                            edge_sigma=edge_sigma)
        self.background = self._ds.background
        self.camera_to_head = self._ds.camera_to_head
        self.landmarks = self._ds.landmarks
        self.head_radius = 0.5 * (self._ds.far - self._ds.near)
        self.size = self._ds.size
        self.n_frames = len(self._ds)
        self._cache: tuple[int, TorsoLayer] | None = None

    def frame(self, j: int) -> np.ndarray:
        """The recorded frame ``j``: uint8 [H, W, 3]."""
        return self._ds.frame(self._index(j))

    def labels(self, j: int) -> np.ndarray:
        """The parsing labels of frame ``j``: uint8 [H, W] (0 background, 1 torso, 2 head)."""
        return self._ds.parsing(self._index(j))

    def _index(self, j) -> int:
        j = int(j)
        if not 0 <= j < self.n_frames:
            raise IndexError(f"frame {j} is out of range for a dataset of {self.n_frames} frames")
        return j

    def layer(self, j: int) -> TorsoLayer:
        """:func:`torso_layer` of dataset frame ``j`` (the last one is cached: a frozen pose
        reads it once)."""
        j = self._index(j)
        if self._cache is None or self._cache[0] != j:
            self._cache = (j, torso_layer(self._ds.frame(j), self._ds.parsing(j),
                                          self.landmarks[j], **self.options))
        return self._cache[1]

    def nearest_frame(self, query, candidates=None):
        """:func:`nearest_pose_frame` in this dataset's poses with its head radius."""
        return nearest_pose_frame(self.camera_to_head, query, head_radius=self.head_radius,
                                  candidates=candidates)

    def compose(self, head_rgb, head_opacity, j: int) -> np.ndarray:
        """:func:`compose_full` of a rendered head over the torso layer of frame ``j`` and the
        background (uint8 out for a uint8 head, float32 for a float one)."""
        layer = self.layer(j)
        return compose_full(head_rgb, head_opacity, layer.rgb, layer.alpha, self.background)

    def iter_full_frames(self, heads: Iterable, frames) -> Iterator[np.ndarray]:
        """Stream full frames: for each ``(head_rgb, head_opacity)`` of ``heads`` and the
        dataset frame of its torso (``frames``: int [T]; e.g. the ping-pong index of pose
        ``dataset``, one frame for ``frozen``, :meth:`nearest_frame` for a video), yield
        :meth:`compose`. Memory does not grow with T.

        Raises:
            ValueError: ``heads`` and ``frames`` of different lengths.
        """
        frames = np.asarray(frames, np.int64).reshape(-1)
        n = 0
        for rgb, opacity in heads:
            if n >= len(frames):
                raise ValueError(f"more rendered heads than torso frames ({len(frames)})")
            yield self.compose(rgb, opacity, frames[n])
            n += 1
        if n != len(frames):
            raise ValueError(f"{n} rendered heads for {len(frames)} torso frames")
