"""Metrics of rendered talking faces (JEAN Sec. 4.1.2 and suppl. 8.5; see docs/evaluation.md).

One function per metric; numpy arrays or torch tensors in, a Python float out.

Images are RGB, channels last: ``[H, W, 3]`` or ``[T, H, W, 3]``; uint8 (0-255) or float in
[0, 1]. Landmarks are iBUG-68 points ``[T, 68, 2]`` in pixels (x = column, y = row), NaN for
frames without a detected face (such frames are left out of a landmark metric).

| metric | function | unit | paper |
|---|---|---|---|
| PSNR | :func:`psnr` | dB (higher is better) | Table 1 |
| SSIM | :func:`ssim` | 0-1 (higher is better) | Table 1 |
| LPIPS | :func:`lpips_distance` | 0-~1 (lower is better); needs weights | Table 1 |
| LMD, M-LMD, F-LMD | :func:`lmd`, :func:`m_lmd`, :func:`f_lmd` | pixels | (peers) |
| LMDV | :func:`lmdv` | pixels per frame | (peers) |
| identity distance (ACD-style) | :func:`identity_distance` | cosine distance 0-2 | Table 1 "ACD" |
| Exp-Diff | :func:`exp_diff`, :func:`exp_diff_frames` | squared 3DMM coefficients | Table 1 |
| LSE-C | :func:`lse_c` | SyncNet confidence; needs weights | Table 1 |

The offline stand-ins (dlib landmarks and face descriptors instead of the paper's detector and
ArcFace; the 10-d BFM expression of our 3DMM fit instead of the paper's 3DMM) make the
numbers comparable between runs of jeancore, not with the paper's table.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import BadInputError, MissingDependencyError

__all__ = ["MOUTH_POINTS", "FACE_POINTS", "psnr", "psnr_from_mse", "ssim", "lmd", "m_lmd", "f_lmd", "lmdv",
           "mean_mouth_baseline",
           "landmarks_of_frames", "face_box", "crop_frames", "face_descriptors",
           "cosine_distance", "identity_distance", "expression_parameters", "exp_diff",
           "exp_diff_frames", "lpips_distance", "lse_c", "UNAVAILABLE"]

#: iBUG-68 indices of the mouth (outer and inner lip contours): 48-67.
MOUTH_POINTS = np.arange(48, 68)
#: iBUG-68 indices of the rest of the face used by F-LMD: jaw 0-16, brows 17-26, nose 27-35,
#: eyes 36-47 (every point that is not the mouth).
FACE_POINTS = np.arange(0, 48)

#: How a report shows a metric that needs weights the user did not supply.
UNAVAILABLE = {"lpips": "unavailable (pass --lpips-weights ALEXNET.pth)",
               "lse_c": "unavailable (pass --syncnet-weights syncnet_v2.model)",
               "lse_d": "unavailable (pass --syncnet-weights syncnet_v2.model)",
               "psnr_full": "unavailable (the dataset has no torso labels)",
               "ssim_full": "unavailable (the dataset has no torso labels)",
               "lip_sync_z": "unavailable (clip shorter than 2 s + 20 frames)",
               "lip_sync_z_ground_truth": "unavailable (clip shorter than 2 s + 20 frames)"}


# ------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------
def _images(x, name: str):
    """-> float32 torch [T, 3, H, W] in [0, 1]."""
    import torch

    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"{name} must be RGB images [H, W, 3] or [T, H, W, 3], got "
                         f"{tuple(t.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.is_floating_point():
        t = t.float()
    else:
        raise ValueError(f"{name} must be uint8 (0-255) or float (0-1), got {t.dtype}")
    return t.permute(0, 3, 1, 2).contiguous()


def _pair(pred, target):
    p, t = _images(pred, "pred"), _images(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} differ in shape "
                         "(frames, channels, height, width)")
    if p.shape[0] == 0:
        raise ValueError("no frames")
    return p, t


def psnr(pred, target) -> float:
    """Peak signal-to-noise ratio, dB (JEAN Table 1, on the face crop; torchmetrics).

    ``PSNR = 10 log10(1 / MSE)`` with pixel values in [0, 1] (uint8 input is divided by 255),
    the MSE over a frame's pixels and channels; the mean over frames of the per-frame PSNR.

    Args:
        pred, target: RGB [H, W, 3] or [T, H, W, 3], uint8 or float in [0, 1], same shape.

    Returns:
        PSNR in dB (``inf`` when every frame is identical).

    Raises:
        ValueError: shapes or dtypes.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    p, t = _pair(pred, target)
    mse = ((p.double() - t.double()) ** 2).mean(dim=(1, 2, 3))
    if bool((mse == 0).any()):
        # torchmetrics divides by zero into inf as well; keep exact per-frame values
        vals = [math.inf if m == 0 else float(peak_signal_noise_ratio(
            p[i:i + 1], t[i:i + 1], data_range=1.0)) for i, m in enumerate(mse.tolist())]
    else:
        vals = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none",
                                       dim=(1, 2, 3)).tolist()
    return float(np.mean(vals))


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error of values in [0, 1]: ``-10 log10(mse)``, with the
    MSE floored at 1e-12 (120 dB) so that a perfect match stays finite (e.g. a training
    step's photometric loss)."""
    return -10.0 * math.log10(max(float(mse), 1e-12))


def ssim(pred, target) -> float:
    """Structural similarity (Wang et al. 2004), JEAN Table 1 on the face crop (torchmetrics).

    Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, per channel and
    averaged; the mean over frames. 1 for identical images.

    Args:
        pred, target: RGB [H, W, 3] or [T, H, W, 3] (at least 11 x 11), uint8 or float [0, 1].

    Returns:
        SSIM in [-1, 1].

    Raises:
        ValueError: shapes or dtypes, images smaller than the window.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, t = _pair(pred, target)
    if min(p.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11 x 11 pixels, got "
                         f"{tuple(p.shape[-2:])}")
    vals = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")
    return float(vals.mean())


def face_box(landmarks, image_size) -> tuple[int, int, int]:
    """One square face box for a clip, from its (ground-truth) landmarks: the median over
    frames with a face of :func:`jeancore.data.facecrop.crop_boxes` (landmark box shifted up
    and enlarged 1.25x: forehead to chin), shrunk and moved to lie inside the image.

    Args:
        landmarks: float [T, 68, 2] pixels (NaN rows allowed).
        image_size: (W, H).

    Returns:
        (x0, y0, side) in pixels (integers).

    Raises:
        BadInputError: no frame has landmarks.
    """
    from ..data.facecrop import crop_boxes

    lm = np.asarray(landmarks, np.float64)
    ok = np.isfinite(lm).all(axis=(1, 2))
    if not ok.any():
        raise BadInputError("no face found in the reference frames: cannot place the face crop")
    x0, y0, side = np.median(crop_boxes(lm[ok]), axis=0)
    w, h = (int(v) for v in image_size)
    s = int(round(min(side, w, h)))
    cx, cy = x0 + side / 2, y0 + side / 2
    x = int(round(np.clip(cx - s / 2, 0, w - s)))
    y = int(round(np.clip(cy - s / 2, 0, h - s)))
    return x, y, s


def crop_frames(frames, box) -> np.ndarray:
    """Cut the box ``(x0, y0, side)`` (pixels, inside the frame) out of every frame.

    Args:
        frames: [T, H, W, 3] (or [H, W, 3]) numpy.
        box: one box for all frames.

    Returns:
        [T, side, side, 3], same dtype.
    """
    f = np.asarray(frames)
    if f.ndim == 3:
        f = f[None]
    x0, y0, s = (int(v) for v in box)
    if x0 < 0 or y0 < 0 or x0 + s > f.shape[2] or y0 + s > f.shape[1] or s < 1:
        raise ValueError(f"box {box} is not inside frames of {f.shape[2]}x{f.shape[1]}")
    return np.ascontiguousarray(f[:, y0:y0 + s, x0:x0 + s])


# ------------------------------------------------------------------------------------------
# landmarks
# ------------------------------------------------------------------------------------------
def landmarks_of_frames(frames, detector=None) -> np.ndarray:
    """68 iBUG landmarks of every frame with the offline detector (dlib, as preprocessing:
    :class:`jeancore.data.landmarks.DlibLandmarkDetector`); no interpolation.

    Args:
        frames: uint8 RGB [T, H, W, 3] (numpy or torch), or an iterable of [H, W, 3] frames.
        detector: a landmark detector (default dlib).

    Returns:
        float32 [T, 68, 2] pixels (pixel-corner convention); NaN rows where no face was found.
    """
    from ..data.landmarks import detect_landmarks

    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    track = detect_landmarks((np.ascontiguousarray(f, np.uint8) for f in frames), detector,
                             max_gap=0)
    return track.points.astype(np.float32)


def _landmark_pair(pred, gt, points):
    p = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred, np.float64)
    g = np.asarray(gt.detach().cpu() if hasattr(gt, "detach") else gt, np.float64)
    if p.ndim == 2:
        p, g = p[None], g[None] if g.ndim == 2 else g
    if p.shape != g.shape or p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"landmarks must both be [T, K, 2], got {p.shape} and {g.shape}")
    if points is not None:
        p, g = p[:, points], g[:, points]
    return p, g


def lmd(pred, gt, points=None) -> float:
    """Landmark distance (LMD, Chen et al. 2018): the mean Euclidean distance between
    corresponding landmarks of output and ground truth, over points and frames, in pixels of
    the given frames. Frames where either side has no landmarks (NaN) are left out.

    Args:
        pred, gt: float [T, K, 2] (K = 68 for iBUG) pixels.
        points: indices of the points to use (default all).

    Returns:
        mean distance in pixels; NaN when no frame has landmarks on both sides.

    Raises:
        ValueError: shapes differ.
    """
    p, g = _landmark_pair(pred, gt, points)
    ok = np.isfinite(p).all(axis=(1, 2)) & np.isfinite(g).all(axis=(1, 2))
    if not ok.any():
        return math.nan
    return float(np.linalg.norm(p[ok] - g[ok], axis=-1).mean())


def m_lmd(pred, gt) -> float:
    """Mouth LMD (M-LMD): :func:`lmd` over the 20 mouth points 48-67 of iBUG-68, pixels."""
    return lmd(pred, gt, MOUTH_POINTS)


def mean_mouth_baseline(gt, train_landmarks) -> np.ndarray:
    """The "training-mean mouth" baseline of M-LMD: the ground-truth landmarks with the mouth
    (48-67) replaced by the training frames' mean mouth, placed relative to each frame's nose
    tip (point 30) as in training: a mouth that does not follow the speech.

    Args:
        gt: float [T, 68, 2] ground-truth landmarks (pixels). train_landmarks: float
            [N, 68, 2] the training frames' (same pixel scale), NaN rows ignored.

    Returns:
        float [T, 68, 2] (score it with :func:`m_lmd` against ``gt``).

    Raises:
        ValueError: not iBUG-68 arrays, or no finite training frame.
    """
    g = np.asarray(gt, np.float64)
    t = np.asarray(train_landmarks, np.float64)
    if g.ndim != 3 or g.shape[1:] != (68, 2) or t.ndim != 3 or t.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be iBUG-68 [T, 68, 2], got {g.shape} and {t.shape}")
    ok = np.isfinite(t).all(axis=(1, 2))
    if not ok.any():
        raise ValueError("no training frame has landmarks")
    rel = (t[ok][:, MOUTH_POINTS] - t[ok][:, 30:31]).mean(0)
    out = g.copy()
    out[:, MOUTH_POINTS] = g[:, 30:31] + rel
    return out


def f_lmd(pred, gt) -> float:
    """Face LMD (F-LMD): :func:`lmd` over the 48 non-mouth points 0-47 of iBUG-68 (jaw, brows,
    nose, eyes), pixels."""
    return lmd(pred, gt, FACE_POINTS)


def lmdv(pred, gt, points=None) -> float:
    """Landmark velocity error (LMDV): the mean Euclidean distance between the frame-to-frame
    landmark displacements of output and ground truth,
    ``mean_t,k |(p[t+1,k] - p[t,k]) - (g[t+1,k] - g[t,k])|``, in pixels per frame (over
    consecutive frame pairs where both frames have landmarks on both sides).

    Args:
        pred, gt: float [T, K, 2] pixels, T >= 2.
        points: indices of the points to use (default all 68).

    Returns:
        pixels per frame; NaN when no consecutive pair has landmarks.

    Raises:
        ValueError: shapes differ.
    """
    p, g = _landmark_pair(pred, gt, points)
    ok = np.isfinite(p).all(axis=(1, 2)) & np.isfinite(g).all(axis=(1, 2))
    pair = ok[1:] & ok[:-1]
    if not pair.any():
        return math.nan
    dv = (p[1:] - p[:-1]) - (g[1:] - g[:-1])
    return float(np.linalg.norm(dv[pair], axis=-1).mean())


# ------------------------------------------------------------------------------------------
# identity
# ------------------------------------------------------------------------------------------
class _FaceDescriptor:
    _instance = None

    def __init__(self):
        import dlib

        from ..data.landmarks import DlibLandmarkDetector, dlib_model_path

        self.dlib = dlib
        self.detector = DlibLandmarkDetector()
        self.net = dlib.face_recognition_model_v1(
            str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))

    @classmethod
    def get(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __call__(self, frame):
        dlib = self.dlib
        boxes = self.detector.detect_faces(frame)
        if not boxes:
            return None
        pts = self.detector.landmarks_in_box(frame, boxes[0])
        l, t, r, b = (int(round(v)) for v in boxes[0])
        shape = dlib.full_object_detection(
            dlib.rectangle(l, t, r - 1, b - 1),
            dlib.points([dlib.point(int(round(x - 0.5)), int(round(y - 0.5))) for x, y in pts]))
        return np.asarray(self.net.compute_face_descriptor(frame, shape), np.float64)


def face_descriptors(frames, max_frames: int | None = 16) -> np.ndarray:
    """dlib's 128-d face descriptors (ResNet, ``dlib_face_recognition_resnet_model_v1.dat``
    of ``face-recognition-models``; the offline stand-in for ArcFace) of frames with a face.

    Args:
        frames: uint8 RGB [T, H, W, 3].
        max_frames: use at most this many frames, evenly spaced (0.09 s per face); None: all.

    Returns:
        float64 [N, 128], one row per used frame where a face was found (N may be 0).
    """
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got {frames.dtype} "
                         f"{frames.shape}")
    idx = np.arange(len(frames))
    if max_frames is not None and len(idx) > max_frames:
        idx = np.unique(np.linspace(0, len(frames) - 1, int(max_frames)).round().astype(int))
    net = _FaceDescriptor.get()
    out = [d for d in (net(np.ascontiguousarray(frames[i])) for i in idx) if d is not None]
    return np.stack(out) if out else np.zeros((0, 128))


def cosine_distance(a, b) -> float:
    """``1 - a.b / (|a| |b|)`` of two vectors (0 same direction, 1 orthogonal, 2 opposite).

    Raises:
        ValueError: different lengths or a zero vector.
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"vectors of different lengths {a.shape} and {b.shape}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("cosine distance of a zero vector is undefined")
    return float(1.0 - a @ b / (na * nb))


def identity_distance(frames, identity_frames, max_frames: int | None = 16) -> float:
    """Identity distance, ACD-style (JEAN Table 1 "ACD": cosine distance of ArcFace
    embeddings): the cosine distance between the mean dlib face descriptor of ``frames`` (the
    output) and the mean descriptor of ``identity_frames`` (the trained identity's real
    frames). Lower is better; the same person gives about 0.01-0.05, different people
    0.3-0.6.

    Args:
        frames, identity_frames: uint8 RGB [T, H, W, 3] (sizes may differ).
        max_frames: frames used per side, evenly spaced (see :func:`face_descriptors`).

    Returns:
        cosine distance (0-2).

    Raises:
        BadInputError: no face found in the frames of one side.
    """
    a = face_descriptors(frames, max_frames)
    b = face_descriptors(identity_frames, max_frames)
    for name, d in (("output", a), ("identity", b)):
        if len(d) == 0:
            raise BadInputError(f"identity distance: no face found in the {name} frames")
    return cosine_distance(a.mean(0), b.mean(0))


# ------------------------------------------------------------------------------------------
# expression
# ------------------------------------------------------------------------------------------
def expression_parameters(frames=None, *, landmarks=None, image_size=None) -> np.ndarray:
    """The 10-d 3DMM expression coefficients per frame (BFM 2009, 3DDFA basis), fitted as
    preprocessing fits a dataset (:func:`jeancore.data.tracking.fit_3dmm`: one identity,
    per-frame expression and pose, landmarks from :func:`landmarks_of_frames`; frames without
    a face get interpolated coefficients).

    Args:
        frames: uint8 RGB [T, H, W, 3]; or instead
        landmarks: float [T, 68, 2] (NaN rows for frames without a face) with ``image_size``
            (W, H).

    Returns:
        float32 [T, 10] raw coefficients.

    Raises:
        BadInputError: no frame with a face.
    """
    from ..data.tracking import fit_3dmm

    if landmarks is None:
        if frames is None:
            raise ValueError("pass frames or landmarks")
        frames = np.asarray(frames.detach().cpu() if hasattr(frames, "detach") else frames)
        landmarks = landmarks_of_frames(frames)
        image_size = (frames.shape[2], frames.shape[1])
    elif image_size is None:
        raise ValueError("landmarks need image_size=(W, H)")
    lm = np.asarray(landmarks, np.float32)
    valid = np.isfinite(lm).all(axis=(1, 2))
    if not valid.any():
        raise BadInputError("Exp-Diff: no face found in any frame")
    return fit_3dmm(lm, tuple(int(v) for v in image_size), valid=valid).expression.astype(
        np.float32)


def exp_diff(pred_expression, source_expression) -> float:
    """Exp-Diff (JEAN Table 1, suppl. 8.5): the mean squared difference between the 3DMM
    expression coefficients of the output and of the expression source, over frames and the
    10 coefficients (raw BFM/3DDFA coefficients; lower is better).

    Args:
        pred_expression, source_expression: float [T, 10] (same T: frame t of the output was
            driven by frame t of the source).

    Returns:
        MSE in squared coefficient units.

    Raises:
        ValueError: shapes differ or are empty.
    """
    a = np.asarray(pred_expression, np.float64)
    b = np.asarray(source_expression, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"expressions must both be [T, D] (T > 0), got {a.shape} and {b.shape}")
    return float(((a - b) ** 2).mean())


def exp_diff_frames(pred_frames, source_frames) -> float:
    """Exp-Diff from frames: :func:`expression_parameters` of the output and of the expression
    source frames (fitted separately, each with its own identity), then :func:`exp_diff`.

    Args:
        pred_frames, source_frames: uint8 RGB [T, H, W, 3], the same T (sizes may differ).

    Raises:
        ValueError: different frame counts; BadInputError: no face on one side.
    """
    if len(pred_frames) != len(source_frames):
        raise ValueError(f"{len(pred_frames)} output frames but {len(source_frames)} expression "
                         "source frames: bring the source to the output's length first")
    return exp_diff(expression_parameters(pred_frames), expression_parameters(source_frames))


# ------------------------------------------------------------------------------------------
# metrics that need weights the user supplies
# ------------------------------------------------------------------------------------------
def _load_state(path, what: str) -> dict:
    import torch

    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{what} weights {p}: no such file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadInputError(f"{p} is not a PyTorch weights file (torch.load failed with "
                            f"{type(e).__name__}); expected a state dict saved by torch.save"
                            ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInputError(f"{p}: expected a state dict of {what} weights")
    return state


_LPIPS_CACHE: dict = {}


def _lpips_model(weights, heads):
    import importlib.util

    import torch
    from torch import nn

    key = (str(weights), str(heads))
    if key in _LPIPS_CACHE:
        return _LPIPS_CACHE[key]
    state = _load_state(weights, "LPIPS AlexNet")
    if heads is None and not any(k.startswith("lin") for k in state):
        spec = importlib.util.find_spec("lpips")
        cand = (Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth") if spec and \
            spec.origin else None
        if cand is None or not cand.is_file():
            raise MissingDependencyError(
                "LPIPS needs its linear heads too: pass heads=alex.pth (lpips v0.1, from the "
                "`lpips` package's weights/v0.1/) or `pip install lpips`")
        heads = cand
    if heads is not None:
        state = {**state, **_load_state(heads, "LPIPS linear heads")}
    convs = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
             8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)}

    class _Lpips(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleDict({str(i): nn.Conv2d(a, b, k, s, p)
                                        for i, (a, b, k, s, p) in convs.items()})
            self.lins = nn.ModuleList(nn.Conv2d(c[1], 1, 1, bias=False) for c in convs.values())
            self.register_buffer("shift", torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor([.458, .448, .450]).view(1, 3, 1, 1))

        def feats(self, x):
            x = (x - self.shift) / self.scale
            out = []
            for i in (0, 3, 6, 8, 10):
                if i in (3, 6):
                    x = nn.functional.max_pool2d(x, 3, 2)
                x = torch.relu(self.convs[str(i)](x))
                out.append(x)
            return out

        def forward(self, a, b):
            total = 0
            for lin, fa, fb in zip(self.lins, self.feats(a), self.feats(b)):
                na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + lin((na - nb) ** 2).mean(dim=(2, 3))
            return total[:, 0]

    m = _Lpips()
    try:
        with torch.no_grad():
            for i in convs:
                m.convs[str(i)].weight.copy_(state[f"features.{i}.weight"])
                m.convs[str(i)].bias.copy_(state[f"features.{i}.bias"])
            for j, lin in enumerate(m.lins):
                lin.weight.copy_(state[f"lin{j}.model.1.weight"])
    except (KeyError, RuntimeError) as e:
        raise BadInputError(f"LPIPS weights do not fit AlexNet + the lpips v0.1 heads ({e}); "
                            "expected torchvision's alexnet-owt-7be5be79.pth and lpips' "
                            "alex.pth") from e
    m.eval()
    _LPIPS_CACHE[key] = m
    return m


def lpips_distance(pred, target, weights=None, *, heads=None, batch: int = 16
                   ) -> float | None:
    """LPIPS (Zhang et al. 2018, v0.1, AlexNet), JEAN Table 1 on the face crop; lower is better.

    Offline there are no AlexNet weights (the ``lpips`` package downloads them from the torch
    model zoo), so this returns **None** unless the user passes them; a report then says
    "unavailable", never 0.

    Args:
        pred, target: RGB [H, W, 3] or [T, H, W, 3], uint8 or float [0, 1], same shape.
        weights: path of torchvision's AlexNet state dict (``alexnet-owt-7be5be79.pth``), or of
            one file holding it and the lpips heads; None -> None.
        heads: the lpips v0.1 linear heads (``lpips/weights/v0.1/alex.pth``); default from
            the installed ``lpips`` package.
        batch: frames per forward pass.

    Returns:
        mean LPIPS over frames, or None without weights.

    Raises:
        BadInputError: unreadable or mismatched weight files; MissingDependencyError: no heads.
    """
    if weights is None:
        return None
    import torch

    p, t = _pair(pred, target)
    model = _lpips_model(weights, heads)
    vals = []
    with torch.no_grad():
        for s in range(0, len(p), batch):
            vals.append(model(p[s:s + batch] * 2 - 1, t[s:s + batch] * 2 - 1))
    return float(torch.cat(vals).mean())


def lse_c(frames, wav, weights=None, **kwargs) -> float | None:
    """LSE-C (Prajwal et al. 2020; JEAN Table 1): SyncNet's audio-visual sync confidence,
    :func:`jeancore.metrics.syncnet.syncnet_scores` with the user's SyncNet weights.

    SyncNet's weights (``syncnet_v2.model``) are a separate download, so without ``weights``
    this returns **None** and a report says "unavailable (pass --syncnet-weights ...)".

    Args:
        frames: uint8 RGB [T, H, W, 3] the output at 25 fps; wav: float32 [N] 16 kHz audio.
        weights: path of ``syncnet_v2.model`` (or a loaded SyncNet), or None.
        **kwargs: passed to :func:`~jeancore.metrics.syncnet.syncnet_scores` (``fps``,
            ``boxes``, ``vshift``, ...).

    Returns:
        LSE-C (higher is better), or None without weights.

    Raises:
        BadInputError: a bad weights file, no face, too few frames (see syncnet_scores).
    """
    if weights is None:
        return None
    from .syncnet import syncnet_scores

    return syncnet_scores(frames, wav, weights, **kwargs).lse_c
