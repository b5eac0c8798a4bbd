"""SyncNet LSE-C / LSE-D (Chung & Zisserman 2016; the metrics of Prajwal et al. 2020, Wav2Lip,
JEAN Table 1) for **user-supplied** weights of the public SyncNet.

jeancore does not ship or download SyncNet's weights. Get ``syncnet_v2.model`` with the
``download_model.sh`` script of Joon Son Chung's ``syncnet_python`` repository, and pass its
path (``jean evaluate --syncnet-weights syncnet_v2.model``, ``weights=`` here). Without it
the scores are reported as unavailable, with the reason. The offline, model-free score of
:mod:`jeancore.metrics.lipsync` is a different measure (not LSE-C).

What is computed, as ``syncnet_python``'s ``SyncNetInstance.evaluate`` (and Wav2Lip's
``evaluation/scores_LSE`` copy of it) does:

* **network** (:class:`SyncNet`): the architecture of ``SyncNetModel.py`` (a 2-D CNN on
  13 x 20 MFCC windows, a 3-D CNN on 5-frame 224 x 224 face crops, each followed by a
  512-512-1024 MLP), with the same module names, so the weight file's state dict loads
  key by key (:func:`load_syncnet`);
* **video input**: frames at 25 fps; frame windows ``i .. i+4``; BGR, pixel values 0-255 (not
  normalised), ``[N, 3, 5, 224, 224]``;
* **audio input**: 16 kHz mono as 16-bit integers, 13 MFCCs of ``python_speech_features``
  with its defaults (25 ms windows, 10 ms steps, 26 filters, 512-point FFT, pre-emphasis
  0.97, lifter 22, the log frame energy as coefficient 0): 100 steps per second, so video
  window ``i`` goes with MFCC steps ``4i .. 4i+19`` (0.2 s), ``[N, 1, 13, 20]``;
* ``min_length = min(frames, samples // 640)``, windows ``i = 0 .. min_length - 6``;
* **offset search** (:func:`offset_search`): for each video window ``i`` and each shift
  ``j`` in ``-vshift .. vshift`` (15 frames) the Euclidean distance (``pairwise_distance``)
  between the video embedding ``i`` and the audio embedding ``i + j`` (zero vectors past
  either end); the mean over ``i`` per shift; **LSE-D** = the smallest mean distance,
  **LSE-C** = median over shifts - LSE-D; the AV offset is ``-j`` at the minimum
  (syncnet_python's sign: the audio of window ``i - offset`` matches the video window ``i``).

Face crops (:func:`syncnet_crops`) follow ``syncnet_python``'s ``run_pipeline.crop_video``:
half-size ``s = max(box width, height) / 2`` and the box centre, each median-filtered over
13 frames (``scipy.signal.medfilt``; clips of fewer than 13 frames, which syncnet_python
does not score, take the median over all frames); the frame padded with grey 110; the crop from ``s``
above the box centre to ``1.8 s`` below it, ``1.4 s`` either side (a square of side 2.8 s),
resized to 224 x 224 (bilinear). **Differences** from syncnet_python: the face boxes are
dlib's HOG detector's (:class:`jeancore.data.landmarks.DlibLandmarkDetector`), tighter than
S3FD's (roughly brows to chin rather than hairline to chin), so the crop sits a little lower
and tighter on the face; frames without a detection get boxes interpolated linearly (held at
the ends); there is no scene cut / face-track selection (one face per video, the largest);
no minimum face size or track length; the frames are not JPEG / XVID re-encoded before the
network. Scores are therefore close to, not identical with, those of the reference scripts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BadInputError, MissingDependencyError

__all__ = ["SyncNet", "SyncNetScore", "load_syncnet", "syncnet_mfcc", "syncnet_face_boxes",
           "syncnet_crops", "syncnet_embeddings", "offset_search", "syncnet_scores",
           "UNAVAILABLE_REASON", "FPS", "SAMPLE_RATE", "CROP_SIZE"]

FPS = 25.0
SAMPLE_RATE = 16000
CROP_SIZE = 224
WINDOW = 5                      # video frames per window (0.2 s)
MFCC_PER_FRAME = 4              # 100 MFCC steps per second / 25 fps
CROP_SCALE = 0.4                # syncnet_python run_pipeline --crop_scale
MEDIAN_KERNEL = 13              # smoothing of the face boxes over frames
PAD_VALUE = 110

UNAVAILABLE_REASON = ("unavailable: SyncNet weights not given (pass --syncnet-weights "
                      "syncnet_v2.model, from syncnet_python's download_model.sh)")


def _conv_stack(conv, bn, pool, spec, in_ch):
    """spec: (out channels, kernel, stride, padding, max pool (kernel, stride, padding) or None)
    per block; each block -> conv, batch norm, ReLU [, max pool], in the order of
    SyncNetModel.py's nn.Sequential (so the state dict keys have the same indices)."""
    layers = []
    for out_ch, k, s, p, pl in spec:
        layers += [conv(in_ch, out_ch, kernel_size=k, stride=s, padding=p), bn(out_ch),
                   nn.ReLU(inplace=True)]
        if pl is not None:
            layers.append(pool(kernel_size=pl[0], stride=pl[1], padding=pl[2]))
        in_ch = out_ch
    return nn.Sequential(*layers)


def _mlp(dim):
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


#: audio stream: 13 x 20 MFCC window -> 1 x 1 x 512
_AUDIO_SPEC = [(64, 3, 1, 1, ((1, 1), (1, 1), 0)), (192, 3, 1, 1, ((3, 3), (1, 2), 0)),
               (384, 3, 1, 1, None), (256, 3, 1, 1, None), (256, 3, 1, 1, ((3, 3), (2, 2), 0)),
               (512, (5, 4), 1, 0, None)]
#: lip stream: 5 x 224 x 224 window -> 1 x 1 x 1 x 512
_LIP_SPEC = [(96, (5, 7, 7), (1, 2, 2), 0, ((1, 3, 3), (1, 2, 2), 0)),
             (256, (1, 5, 5), (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
             (256, (1, 3, 3), 1, (0, 1, 1), None), (256, (1, 3, 3), 1, (0, 1, 1), None),
             (256, (1, 3, 3), 1, (0, 1, 1), ((1, 3, 3), (1, 2, 2), 0)),
             (512, (1, 6, 6), 1, 0, None)]


class SyncNet(nn.Module):
    """The SyncNet of ``syncnet_python`` (``SyncNetModel.S``): an audio and a lip stream
    embedded into one space where in-sync pairs are close.

    Module names (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``) and layer order
    are those of ``SyncNetModel.py``, so its weight files load key by key.

    Args:
        embedding_dim: output size of both streams (1024 for ``syncnet_v2.model``).
    """

    def __init__(self, embedding_dim: int = 1024):
        super().__init__()
        self.embedding_dim = int(embedding_dim)
        self.netcnnaud = _conv_stack(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, _AUDIO_SPEC, 1)
        self.netfcaud = _mlp(self.embedding_dim)
        self.netfclip = _mlp(self.embedding_dim)
        self.netcnnlip = _conv_stack(nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, _LIP_SPEC, 3)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """float32 [N, 1, 13, 20] MFCC windows -> float32 [N, embedding_dim]."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """float32 [N, 3, 5, 224, 224] BGR 0-255 face-crop windows -> [N, embedding_dim]."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(weights, device="cpu"):
    """SyncNet with the weights of a ``syncnet_python`` weight file, in eval mode.

    Args:
        weights: path of ``syncnet_v2.model`` (a state dict of ``SyncNetModel.S``; a dict
            holding it under ``"state_dict"`` also works).
        device: torch device.

    Returns:
        :class:`SyncNet` (embedding size read from the file).

    Raises:
        BadInputError: no such file, not a PyTorch weights file, or a state dict that does
            not fit SyncNet (missing / unexpected keys, wrong shapes), in one line.
    """
    from .face import _load_state

    state = _load_state(weights, "SyncNet")
    fc = state.get("netfcaud.3.weight")
    if not isinstance(fc, torch.Tensor) or fc.ndim != 2:
        raise BadInputError(f"{weights} is not a SyncNet weight file (no netfcaud.3.weight): "
                            "expected syncnet_python's syncnet_v2.model")
    model = SyncNet(int(fc.shape[0]))
    own = model.state_dict()
    needed = {k for k in own if not k.endswith("num_batches_tracked")}
    missing = sorted(needed - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = "; ".join(x for x in (
            f"missing {len(missing)} keys ({', '.join(missing[:3])}...)" if missing else "",
            f"unexpected keys ({', '.join(unexpected[:3])}...)" if unexpected else "") if x)
        raise BadInputError(f"{weights} does not fit the SyncNet of syncnet_python: {what}")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or v.shape != own[k].shape:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise BadInputError(f"{weights} does not fit the SyncNet of syncnet_python: {k} "
                                f"has shape {shape}, expected {tuple(own[k].shape)}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    return model.to(device).eval()


def syncnet_mfcc(wav, sr: int = SAMPLE_RATE) -> np.ndarray:
    """SyncNet's audio features: 13 MFCCs of ``python_speech_features.mfcc`` with its defaults,
    on the speech as 16-bit integer values (as syncnet_python reads its wav).

    Args:
        wav: float [N] mono speech in [-1, 1] at 16 kHz.

    Returns:
        float32 [13, M], M = 1 + ceil((N - 400) / 160) steps of 10 ms.

    Raises:
        ValueError: not at 16 kHz; BadInputError: not mono / empty;
        MissingDependencyError: python_speech_features is not installed.
    """
    if sr != SAMPLE_RATE:
        raise ValueError(f"SyncNet needs 16 kHz audio, got {sr} Hz")
    w = np.asarray(wav, np.float64)
    if w.ndim != 1 or w.size < 400:
        raise BadInputError(f"SyncNet needs mono audio of at least 25 ms, got shape {w.shape}")
    try:
        import python_speech_features as psf
    except ImportError as e:  # pragma: no cover - a dependency of jeancore
        raise MissingDependencyError("SyncNet's MFCCs need `pip install python_speech_features`"
                                     ) from e
    pcm = np.clip(np.round(w * 32768.0), -32768, 32767)
    return psf.mfcc(pcm, SAMPLE_RATE).T.astype(np.float32)


def syncnet_face_boxes(frames, detector=None) -> np.ndarray:
    """Face box of every frame (dlib HOG detector, the largest face), NaN without a face.

    Args:
        frames: uint8 RGB [T, H, W, 3] (or an iterable of [H, W, 3]).
        detector: a :class:`~jeancore.data.landmarks.DlibLandmarkDetector` (default one).

    Returns:
        float64 [T, 4] (left, top, right, bottom) in pixels.
    """
    from ..data.landmarks import DlibLandmarkDetector

    det = detector or DlibLandmarkDetector()
    out = []
    for f in frames:
        boxes = det.detect_faces(np.ascontiguousarray(f, np.uint8))
        out.append(boxes[0] if boxes else (np.nan,) * 4)
    return np.asarray(out, np.float64).reshape(-1, 4)


def syncnet_crops(frames, boxes) -> np.ndarray:
    """224 x 224 face crops by syncnet_python's crop rule (module docstring).

    Args:
        frames: uint8 RGB [T, H, W, 3].
        boxes: float [T, 4] (left, top, right, bottom) pixels, NaN rows for frames without a
            face (interpolated linearly, held at the ends), or one box [4] for all frames.

    Returns:
        uint8 RGB [T, 224, 224, 3].

    Raises:
        BadInputError: no frame has a box; ValueError: shapes.
    """
    import cv2
    from scipy.signal import medfilt

    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got {f.dtype} {f.shape}")
    b = np.asarray(boxes, np.float64)
    if b.shape == (4,):
        b = np.repeat(b[None], len(f), 0)
    if b.shape != (len(f), 4):
        raise ValueError(f"boxes must be [T, 4] or [4], got {b.shape} for {len(f)} frames")
    ok = np.isfinite(b).all(1)
    if not ok.any():
        raise BadInputError(f"SyncNet: no face found in any of the {len(f)} frames")
    idx = np.arange(len(f))
    b = np.stack([np.interp(idx, idx[ok], b[ok, c]) for c in range(4)], 1)
    half = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    if len(f) >= MEDIAN_KERNEL:        # as syncnet_python (zero-padded at the ends)
        s, cx, cy = (medfilt(x, MEDIAN_KERNEL) for x in (half, cx, cy))
    else:                              # shorter than the filter: zero padding would win
        s, cx, cy = (np.full(len(f), np.median(x)) for x in (half, cx, cy))
    out = np.empty((len(f), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    cs = CROP_SCALE
    for t in range(len(f)):
        bs = s[t]
        pad = int(bs * (1 + 2 * cs))
        img = np.pad(f[t], ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        my, mx = cy[t] + pad, cx[t] + pad
        face = img[int(my - bs):int(my + bs * (1 + 2 * cs)),
                   int(mx - bs * (1 + cs)):int(mx + bs * (1 + cs))]
        if face.size == 0:
            raise BadInputError(f"SyncNet: the face box of frame {t} is empty ({b[t]})")
        out[t] = cv2.resize(face, (CROP_SIZE, CROP_SIZE))
    return out


def _n_windows(n_frames: int, n_samples: int) -> int:
    return min(n_frames, n_samples // int(SAMPLE_RATE / FPS)) - WINDOW


def syncnet_embeddings(model, crops, mfcc, n_windows: int | None = None, *, batch: int = 20):
    """Video and audio embeddings of the windows ``i = 0 .. n_windows - 1``.

    Args:
        model: a :class:`SyncNet` (or any module with ``forward_lip`` / ``forward_aud``).
        crops: uint8 RGB [T, 224, 224, 3] face crops at 25 fps.
        mfcc: float [13, M] (:func:`syncnet_mfcc`).
        n_windows: number of windows (default ``min(T, (M + 1) // 4) - 5``).
        batch: windows per forward pass.

    Returns:
        (video float32 [n_windows, D], audio float32 [n_windows, D]) torch tensors (CPU).

    Raises:
        BadInputError: fewer than 6 frames (no window).
    """
    c = np.asarray(crops)
    m = torch.as_tensor(np.asarray(mfcc, np.float32))
    if n_windows is None:
        n_windows = min(len(c), (m.shape[1] + 1) // MFCC_PER_FRAME) - WINDOW
    if n_windows < 1:
        raise BadInputError(f"SyncNet needs at least {WINDOW + 1} frames (0.24 s) of video "
                            f"and audio, got {len(c)} frames")
    dev = next(iter(model.parameters()), torch.zeros(0)).device
    bgr = torch.from_numpy(np.ascontiguousarray(c[..., ::-1]))        # [T, H, W, 3] BGR
    vid, aud = [], []
    model.eval()
    with torch.no_grad():
        for i0 in range(0, n_windows, batch):
            win = range(i0, min(n_windows, i0 + batch))
            v = torch.stack([bgr[i:i + WINDOW] for i in win])           # [B, 5, H, W, 3]
            v = v.permute(0, 4, 1, 2, 3).float()                         # [B, 3, 5, H, W]
            a = torch.stack([m[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + 20] for i in win])
            vid.append(model.forward_lip(v.to(dev)).float().cpu())
            aud.append(model.forward_aud(a[:, None].to(dev)).float().cpu())
    return torch.cat(vid), torch.cat(aud)


def offset_search(video_emb, audio_emb, vshift: int = 15) -> tuple[int, float, float, np.ndarray]:
    """syncnet_python's offset search (``calc_pdist`` and ``evaluate``).

    Args:
        video_emb, audio_emb: float [N, D] embeddings of the same windows.
        vshift: largest shift searched either way, in frames (15 = 0.6 s).

    Returns:
        (offset in frames, LSE-C = median - min of the mean distances, LSE-D = their min,
        float64 [2 vshift + 1] mean distance per shift j = -vshift .. vshift, audio window
        i + j against video window i). offset = -j at the minimum.

    Raises:
        ValueError: shapes differ.
    """
    v = torch.as_tensor(video_emb, dtype=torch.float32)
    a = torch.as_tensor(audio_emb, dtype=torch.float32)
    if v.shape != a.shape or v.ndim != 2 or len(v) == 0:
        raise ValueError(f"embeddings must both be [N, D], got {tuple(v.shape)} and "
                         f"{tuple(a.shape)}")
    width = 2 * vshift + 1
    ap = torch.nn.functional.pad(a, (0, 0, vshift, vshift))
    dists = torch.stack([torch.nn.functional.pairwise_distance(
        v[i:i + 1].expand(width, -1), ap[i:i + width]) for i in range(len(v))])   # [N, W]
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    conf = torch.median(mdist) - minval
    return (int(vshift - minidx), float(conf), float(minval),
            mdist.double().numpy())


@dataclass
class SyncNetScore:
    """Result of :func:`syncnet_scores`.

    Attributes:
        lse_c: SyncNet confidence (higher is better), or None when unavailable.
        lse_d: SyncNet distance at the best offset (lower is better), or None.
        offset_frames: AV offset in frames at 25 fps (syncnet_python's sign), or None.
        n_windows: 5-frame windows scored; frames_with_face: frames where dlib found a face.
        available: False without weights; reason: why not (else None).
        distances: mean distance per shift -vshift .. vshift (list), or None.
    """

    lse_c: float | None
    lse_d: float | None
    offset_frames: int | None
    n_windows: int
    frames_with_face: int
    available: bool
    reason: str | None = None
    distances: list | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _index_at_25(n: int, fps: float) -> np.ndarray:
    """Indices of the frames shown at 25 fps (nearest timestamps: output frame k shows the
    source frame nearest k / 25 s, as :func:`jeancore.data.video.iter_frames`)."""
    from ..data.video import output_frame_count

    if abs(fps - FPS) < 1e-6:
        return np.arange(n)
    m = output_frame_count(n / fps, FPS)
    return np.minimum(np.floor(np.arange(m) * fps / FPS + 0.5).astype(int), n - 1)


def syncnet_scores(frames, wav=None, weights=None, *, fps: float = FPS, sr: int = SAMPLE_RATE,
                   boxes=None, detector=None, vshift: int = 15, batch: int = 20,
                   device="cpu", max_seconds: float | None = None) -> SyncNetScore:
    """LSE-C and LSE-D of a talking-face video with SyncNet (module docstring).

    Args:
        frames: uint8 RGB [T, H, W, 3] at ``fps`` (resampled to 25 fps by nearest
            timestamps), or a video file (decoded at 25 fps; its sound is the default
            ``wav``).
        wav: float [N] mono speech at 16 kHz starting with the first frame, or an audio file.
        weights: path of ``syncnet_v2.model``, or a loaded :class:`SyncNet`; None ->
            unavailable (``available=False`` with the reason; not an error).
        boxes: face boxes [T, 4] / [4] (left, top, right, bottom) of ``frames`` (default:
            dlib, :func:`syncnet_face_boxes`).
        detector: landmark detector for the boxes.
        vshift: shifts searched either way (frames; syncnet_python's default 15).
        batch: windows per forward pass; device: torch device for a path ``weights``.
        max_seconds: score only the first seconds.

    Returns:
        :class:`SyncNetScore`.

    Raises:
        BadInputError: bad weights file, no face, fewer than 6 frames, no or empty audio.
        ValueError: frames not uint8 RGB, audio not at 16 kHz.
    """
    from ..data.video import iter_frames, load_audio

    if weights is None:
        return SyncNetScore(None, None, None, 0, 0, False, UNAVAILABLE_REASON)
    if sr != SAMPLE_RATE:
        raise ValueError(f"SyncNet needs 16 kHz audio, got {sr} Hz")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    # the weights first: a bad file fails before the face detection
    model = load_syncnet(weights, device) if isinstance(weights, (str, Path)) else weights
    if isinstance(frames, (str, Path)):
        if wav is None:
            wav = frames
        n = None if max_seconds is None else int(round(max_seconds * FPS))
        frames, fps = np.stack(list(iter_frames(frames, FPS, max_frames=n))), FPS
    f = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got {f.dtype} {f.shape}")
    if wav is None:
        raise BadInputError("SyncNet needs the speech: pass wav= (a 16 kHz waveform or a file)")
    if isinstance(wav, (str, Path)):
        wav = load_audio(wav, SAMPLE_RATE)
    w = np.asarray(wav.detach().cpu() if hasattr(wav, "detach") else wav, np.float32)
    b = None if boxes is None else np.asarray(boxes, np.float64)
    if b is not None and b.shape != (4,) and b.shape != (len(f), 4):
        raise ValueError(f"boxes must be [T, 4] for the {len(f)} frames given, or [4]; got "
                         f"{b.shape}")
    if max_seconds is not None:
        f, w = f[: int(round(max_seconds * fps))], w[: int(round(max_seconds * sr))]
    idx = _index_at_25(len(f), fps)               # to 25 fps
    f = f[idx]
    if b is None:
        b = syncnet_face_boxes(f, detector)
    elif b.ndim == 2:
        b = b[idx]
    n_face = int(np.isfinite(b).all(-1).sum()) if b.ndim == 2 else len(f)
    n_win = _n_windows(len(f), len(w))
    if n_win < 1:
        raise BadInputError(f"SyncNet needs at least {WINDOW + 1} frames (0.24 s) of video "
                            f"and audio, got {len(f)} frames and {len(w) / sr:.2f} s")
    v, a = syncnet_embeddings(model, syncnet_crops(f, b), syncnet_mfcc(w, sr), n_win,
                              batch=batch)
    offset, conf, dist, mdist = offset_search(v, a, vshift)
    return SyncNetScore(lse_c=conf, lse_d=dist, offset_frames=offset, n_windows=n_win,
                        frames_with_face=n_face, available=True, distances=mdist.tolist())
