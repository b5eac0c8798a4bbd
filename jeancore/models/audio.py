"""Landmark autoencoder and contrastive audio encoder (JEAN Sec. 3.1, suppl. 8.1-8.2, Eqs. 1-2).

**Landmarks.** JEAN feeds the landmark autoencoder the 68 iBUG points of each frame without
the 17 jaw-contour points (iBUG 0-16): 51 points, iBUG 17-67 in order (:data:`LANDMARK_POINTS`):
brows 17-26, nose 27-35, eyes 36-47 (the 31 "eye-nose" points, :data:`EYE_NOSE`), then the 20
mouth points 48-67 (:data:`MOUTH`, the last 20 of the 51).

**Normalisation** (:func:`normalize_landmarks`). So that the mouth code carries mouth motion
and not head motion, each frame is brought to a canonical frame by a 2-D similarity transform
(rotation, isotropic scale, translation) fitted by least squares (orthogonal Procrustes /
Umeyama 1991) from the frame's 31 eye-nose points to the same points of a fixed frontal
template, and the transform is applied to all 51 points. Only the eye-nose points drive the
fit, so an opening mouth does not move the alignment. The template is the mean shape of the
vendored 3DMM (BFM 2009 at the 68 iBUG points, :mod:`jeancore.data.tracking`) seen from the
front (x right, y down, as image pixels), centred on its eye-nose centroid and scaled so the
distance between the two eye centres is 1. Normalised coordinates are therefore in units of
the inter-ocular distance (the usual normalised-mean-error unit of landmark work), and the
eye-nose centroid is at the origin. Head translation, in-plane rotation and distance to the
camera are removed exactly; out-of-plane rotation (yaw, pitch) is only approximated by a
similarity (a limitation: a 3DMM-based frontalisation would need the per-frame depth).

**Landmark autoencoder** (Sec. 3.1, suppl. 8.1). Encoder LE: MLP on the flattened 51 x 2
points with hidden widths 256, 256, 128 (each followed by LeakyReLU(0.02)), then one linear
layer to ``2 * code_dim`` channels, split into e_f (eye-nose, the first ``code_dim``) and e_m
(mouth, the last ``code_dim``). Decoder LD mirrors it: ``concat(e_f, e_m)`` -> 128 -> 256 ->
256 (LeakyReLU) -> 102 -> [51, 2]. Training (Eq. 1, :func:`mouth_swap_loss`): frames A and B
of one video; with probability 0.8 the mouth codes are exchanged and the decoder must
reconstruct the *mixed* ground truth (A's eye-nose points with B's mouth points, and the
reverse).

**Audio encoder** (Sec. 3.1, suppl. 8.2): AD-NeRF's AudioNet (Guo et al. 2021). A window of
``window`` (16) feature steps of width ``in_dim`` (AD-NeRF: 29 DeepSpeech logits; jeancore:
80 log-mel bands by default) is read as ``in_dim`` channels over ``window`` time steps;
stride-2 1-D convolutions (kernel 3, padding 1, channels 32, 32, 64, 64, LeakyReLU(0.02))
halve the length until it is 1 (four layers for 16 steps); then ``Linear(64, 64) ->
LeakyReLU(0.02) -> Linear(64, out_dim)`` gives e_a (64-d). It is trained with InfoNCE (Eq. 2,
:func:`info_nce`) against the frozen mouth codes e_m.

**Temporal smoothing** (optional, :class:`AudioAttention`): AD-NeRF's AudioAttNet: a small
1-D conv net over the codes of ``seq_len`` (8) consecutive frames gives softmax weights, and
the smoothed code is the weighted sum. It is not part of the contrastive training; the NeRF
may train it with the rendering loss as AD-NeRF does.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError, ConfigError
from ._checks import check_int, known_settings, swap_flags

__all__ = ["LANDMARK_POINTS", "EYE_NOSE", "MOUTH", "N_POINTS", "normalize_landmarks",
           "landmark_template", "LandmarkAutoencoder", "AudioEncoder", "AudioAttention",
           "mouth_swap_loss", "info_nce", "cosine_logits", "MouthSwapStep"]

LANDMARK_POINTS = np.arange(17, 68)
"""iBUG-68 indices of the 51 points kept (all but the jaw contour 0-16), in this order."""
N_POINTS = 51
EYE_NOSE = slice(0, 31)
"""The 31 eye-nose points (brows, nose, eyes: iBUG 17-47) within the 51."""
MOUTH = slice(31, 51)
"""The 20 mouth points (iBUG 48-67) within the 51: the last 20."""

_SLOPE = 0.02
# eye centres in the 51-point order: left eye iBUG 36-41, right eye 42-47
_LEFT_EYE = slice(36 - 17, 42 - 17)
_RIGHT_EYE = slice(42 - 17, 48 - 17)


@functools.lru_cache(maxsize=1)
def _template_np() -> np.ndarray:
    from ..data.tracking import load_morphable_model

    mean = load_morphable_model(dtype=torch.float64).mean.numpy()[LANDMARK_POINTS, :2].copy()
    mean[:, 1] *= -1.0                      # 3DMM y up -> image y down
    mean -= mean[EYE_NOSE].mean(0)
    iod = np.linalg.norm(mean[_LEFT_EYE].mean(0) - mean[_RIGHT_EYE].mean(0))
    return (mean / iod).astype(np.float64)


def landmark_template() -> torch.Tensor:
    """The canonical frontal 51-point template of :func:`normalize_landmarks`: float32 [51, 2]
    (x right, y down; eye-nose centroid at the origin, eye-centre distance 1), from the
    vendored 3DMM mean shape."""
    return torch.from_numpy(_template_np().astype(np.float32))


def normalize_landmarks(points, *, template=None) -> torch.Tensor:
    """Per-frame similarity (Procrustes) normalisation of iBUG-68 landmarks (JEAN Sec. 3.1).

    For each frame, the rotation, isotropic scale and translation that best map (least
    squares) its 31 eye-nose points (iBUG 17-47) onto the template's are found in closed form
    (Umeyama 1991, no reflection) and applied to the 51 non-jaw points (iBUG 17-67). The mouth
    does not take part in the fit. See the module docstring for the template and the units.

    Args:
        points: float [T, 68, 2] or [68, 2] (numpy or torch), iBUG-68 pixel coordinates
            (x right, y down). Already-reduced [T, 51, 2] / [51, 2] input (iBUG 17-67 in
            order) is accepted too.
        template: float [51, 2] target shape (default :func:`landmark_template`).

    Returns:
        float32 tensor [T, 51, 2] (or [51, 2] for a single frame) in template units
        (inter-ocular distance 1), on the input's device (CPU for numpy).

    Raises:
        BadInputError: wrong shape, non-finite values, or a degenerate frame (all eye-nose
            points at one place).
    """
    x = torch.from_numpy(np.asarray(points)) if not isinstance(points, torch.Tensor) else points
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise BadInputError(f"landmarks must be numeric, got {x.dtype}")
    single = x.dim() == 2
    if single:
        x = x[None]
    if x.dim() != 3 or x.shape[1] not in (68, N_POINTS) or x.shape[2] != 2:
        raise BadInputError(f"landmarks must be [T, 68, 2] (iBUG-68) or [T, 51, 2], got "
                            f"{list(x.shape) if not single else list(x.shape[1:])}")
    dev = x.device
    x = x.to(torch.float64)
    if x.shape[1] == 68:
        x = x[:, torch.as_tensor(LANDMARK_POINTS, device=dev)]
    if not bool(torch.isfinite(x).all()):
        raise BadInputError("landmarks contain NaN or infinite values")
    tmpl = torch.from_numpy(_template_np()) if template is None else torch.as_tensor(template)
    tmpl = tmpl.to(device=dev, dtype=torch.float64)
    if tuple(tmpl.shape) != (N_POINTS, 2):
        raise BadInputError(f"template must be [51, 2], got {list(tmpl.shape)}")
    if x.shape[0] == 0:
        out = x.new_zeros(0, N_POINTS, 2).float()
        return out[0] if single else out
    src = x[:, EYE_NOSE]                                      # [T, 31, 2]
    dst = tmpl[EYE_NOSE]                                      # [31, 2]
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum((1, 2))                             # [T]
    if bool((var_s <= 1e-12).any()):
        bad = torch.nonzero(var_s <= 1e-12).flatten()[:5].tolist()
        raise BadInputError(f"degenerate landmarks (all eye-nose points at one place) in "
                            f"frame(s) {bad}")
    cov = torch.einsum("pi,tpj->tij", d0, s0)                 # [T, 2, 2] = dst^T src
    u, sv, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vh))
    sgn = torch.stack([torch.ones_like(d), d], -1)            # [T, 2]
    rot = u @ (sgn[:, :, None] * vh)                          # R = U diag(1, d) V^T
    scale = (sv * sgn).sum(-1) / var_s                        # [T]
    out = scale[:, None, None] * torch.einsum("tij,tpj->tpi", rot, x - mu_s) + mu_d
    out = out.float()
    return out[0] if single else out


# ---------------------------------------------------------------------------------------------
# landmark autoencoder
# ---------------------------------------------------------------------------------------------

class LandmarkAutoencoder(nn.Module):
    """LE / LD of JEAN Sec. 3.1 (suppl. 8.1): normalised 51-point landmarks <-> (e_f, e_m).

    Args:
        n_points: points per frame (51: iBUG 17-67); the last ``n_mouth`` are the mouth.
        hidden: encoder hidden widths (256, 256, 128); the decoder uses them reversed.
        code_dim: width of each code, e_f and e_m (64).
        slope: LeakyReLU negative slope (0.02).
        n_mouth: mouth points at the end of the point list (20).

    Raises:
        ConfigError: a width < 1, an empty ``hidden``, n_mouth not in [1, n_points).
    """

    def __init__(self, n_points: int = 51, hidden=(256, 256, 128), code_dim: int = 64,
                 slope: float = 0.02, n_mouth: int = 20):
        super().__init__()
        self.n_points = check_int("n_points", n_points, 2)
        self.hidden = tuple(check_int("hidden", h) for h in hidden)
        if not self.hidden:
            raise ConfigError("hidden must list at least one width")
        self.code_dim = check_int("code_dim", code_dim)
        self.n_mouth = check_int("n_mouth", n_mouth)
        if self.n_mouth >= self.n_points:
            raise ConfigError(f"n_mouth ({n_mouth}) must be < n_points ({n_points})")
        if not float(slope) >= 0:
            raise ConfigError(f"slope must be >= 0, got {slope!r}")
        self.slope = float(slope)
        n_in = 2 * self.n_points
        layers, w = [], n_in
        for h in self.hidden:
            layers += [nn.Linear(w, h), nn.LeakyReLU(self.slope)]
            w = h
        layers.append(nn.Linear(w, 2 * self.code_dim))
        self.encoder = nn.Sequential(*layers)
        layers, w = [], 2 * self.code_dim
        for h in reversed(self.hidden):
            layers += [nn.Linear(w, h), nn.LeakyReLU(self.slope)]
            w = h
        layers.append(nn.Linear(w, n_in))
        self.decoder = nn.Sequential(*layers)
        # data statistics: the networks see (pts - mean) / std; set by set_normalization
        self.register_buffer("point_mean", torch.zeros(self.n_points, 2))
        self.register_buffer("point_std", torch.ones(self.n_points, 2))

    @torch.no_grad()
    def set_normalization(self, pts: torch.Tensor, min_std: float = 1e-3) -> None:
        """Sets the input standardisation from training landmarks float [N, 51, 2]: the
        per-coordinate mean and standard deviation (at least ``min_std``). The networks work
        on ``(pts - mean) / std`` and the decoder's output is mapped back, so inputs, outputs
        and losses stay in normalised-landmark units. Stored in the state dict."""
        pts = self._check_pts(pts)
        if pts.shape[0] < 2:
            raise BadInputError("set_normalization needs at least 2 frames")
        self.point_mean.copy_(pts.mean(0))
        self.point_std.copy_(pts.std(0).clamp_min(min_std))

    @torch.no_grad()
    def center_codes(self, pts: torch.Tensor, scale: bool = True, min_std: float = 1e-6
                     ) -> None:
        """Re-parametrises the codes so that over ``pts`` (float [N, 51, 2], training
        landmarks) each code channel has mean 0 (and, with ``scale``, standard deviation 1).

        ``e' = (e - mu) / s`` is folded into the encoder's last layer and ``e = s e' + mu``
        into the decoder's first layer, so LD(LE(x)) -- swaps included -- is unchanged
        (up to rounding); only the coordinates of e_f and e_m change. Centred codes make the
        cosine similarity of Eq. 2 measure the *variation* of the mouth rather than being
        dominated by the codes' common mean direction (before centring, the cosine between
        the mouth codes of two random frames of a clip is about 0.8).
        """
        e = torch.cat(self.encode(pts), 1)                         # [N, 2C]
        mu = e.mean(0)
        sd = e.std(0).clamp_min(min_std) if scale else torch.ones_like(mu)
        last, first = self.encoder[-1], self.decoder[0]
        last.weight.div_(sd[:, None])
        last.bias.sub_(mu).div_(sd)
        first.bias.add_(first.weight @ mu)
        first.weight.mul_(sd[None, :])

    def config(self) -> dict:
        """Constructor arguments (plain Python types), stored in checkpoints."""
        return {"n_points": self.n_points, "hidden": list(self.hidden),
                "code_dim": self.code_dim, "slope": self.slope, "n_mouth": self.n_mouth}

    @classmethod
    def from_config(cls, config: dict) -> LandmarkAutoencoder:
        """A new model from :meth:`config`'s dict (unknown keys raise ConfigError)."""
        return cls(**known_settings(config, ("n_points", "hidden", "code_dim", "slope", "n_mouth"),
                                    "landmark-autoencoder"))

    @property
    def mouth(self) -> slice:
        """Mouth points within the point list (the last ``n_mouth``)."""
        return slice(self.n_points - self.n_mouth, self.n_points)

    def _check_pts(self, pts) -> torch.Tensor:
        if not isinstance(pts, torch.Tensor) or not pts.is_floating_point():
            raise BadInputError("landmarks must be a float torch tensor [B, 51, 2] (use "
                                "normalize_landmarks on iBUG-68 points first)")
        if pts.dim() != 3 or pts.shape[1:] != (self.n_points, 2):
            raise BadInputError(f"landmarks must be [B, {self.n_points}, 2] (normalised, see "
                                f"normalize_landmarks), got {list(pts.shape)}")
        p = self.encoder[0].weight
        return pts.to(device=p.device, dtype=p.dtype)

    def encode(self, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LE: normalised landmarks float [B, 51, 2] -> (e_f [B, code_dim], e_m [B, code_dim]).

        Raises:
            BadInputError: not a float tensor [B, n_points, 2].
        """
        x = (self._check_pts(pts) - self.point_mean) / self.point_std
        h = self.encoder(x.flatten(1))
        return h[:, : self.code_dim], h[:, self.code_dim:]

    def decode(self, e_f: torch.Tensor, e_m: torch.Tensor) -> torch.Tensor:
        """LD: (e_f [B, code_dim], e_m [B, code_dim]) -> landmarks float [B, 51, 2].

        Raises:
            BadInputError: codes of the wrong width or different batch sizes.
        """
        if e_f.dim() != 2 or e_m.dim() != 2 or e_f.shape != e_m.shape \
                or e_f.shape[1] != self.code_dim:
            raise BadInputError(f"codes must both be [B, {self.code_dim}], got "
                                f"{list(e_f.shape)} and {list(e_m.shape)}")
        out = self.decoder(torch.cat([e_f, e_m], 1)).view(-1, self.n_points, 2)
        return out * self.point_std + self.point_mean

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        """Plain reconstruction LD(LE(pts)), float [B, 51, 2]."""
        return self.decode(*self.encode(pts))

    def swap_forward(self, pts_a: torch.Tensor, pts_b: torch.Tensor, swap=None):
        """The two decodes of Eq. 1 with optional mouth swapping.

        Args:
            pts_a, pts_b: float [B, 51, 2], frames A and B (same video).
            swap: bool [B] (True: exchange e_m between A and B), a Python bool for all, or
                None (no swap). Drawn by the caller with probability 0.8 in training.

        Returns:
            (recon_a, recon_b, target_a, target_b), float [B, 51, 2] each:
            ``recon_a = LD(e_f^A, e_m^A or e_m^B)``, target_a = A's eye-nose points with the
            mouth points of the frame whose mouth code was used; likewise for B.

        Raises:
            BadInputError: shapes disagree.
        """
        pts_a, pts_b = self._check_pts(pts_a), self._check_pts(pts_b)
        if pts_a.shape != pts_b.shape:
            raise BadInputError(f"A and B must have the same shape, got {list(pts_a.shape)} "
                                f"and {list(pts_b.shape)}")
        b = pts_a.shape[0]
        swap = swap_flags(swap, b, pts_a.device)
        e_f, e_m = self.encode(torch.cat([pts_a, pts_b]))
        f_a, f_b, m_a, m_b = e_f[:b], e_f[b:], e_m[:b], e_m[b:]
        s = swap[:, None]
        m_for_a, m_for_b = torch.where(s, m_b, m_a), torch.where(s, m_a, m_b)
        recon = self.decode(torch.cat([f_a, f_b]), torch.cat([m_for_a, m_for_b]))
        s3 = swap[:, None, None]
        mouth = self.mouth
        tgt_a, tgt_b = pts_a.clone(), pts_b.clone()
        tgt_a[:, mouth] = torch.where(s3, pts_b[:, mouth], pts_a[:, mouth])
        tgt_b[:, mouth] = torch.where(s3, pts_a[:, mouth], pts_b[:, mouth])
        return recon[:b], recon[b:], tgt_a, tgt_b


def mouth_swap_loss(recon_a, recon_b, target_a, target_b) -> torch.Tensor:
    """Eq. 1: ``mean|recon_a - target_a| + mean|recon_b - target_b|`` (L1, means over points
    and coordinates), a 0-d tensor in template units."""
    return (recon_a - target_a).abs().mean() + (recon_b - target_b).abs().mean()


# ---------------------------------------------------------------------------------------------
# audio encoder
# ---------------------------------------------------------------------------------------------

class AudioEncoder(nn.Module):
    """AD-NeRF's AudioNet: a window of speech features -> e_a (JEAN Sec. 3.1, suppl. 8.2).

    Args:
        in_dim: feature width D (80 log-mel bands; 29 for DeepSpeech).
        window: feature steps per window (16).
        out_dim: code width (64).
        slope: LeakyReLU negative slope (0.02).

    Attributes: ``in_dim``, ``window``, ``out_dim``.

    Raises:
        ConfigError: a width < 1.
    """

    _CHANNELS = (32, 32, 64, 64)

    def __init__(self, in_dim: int, window: int = 16, out_dim: int = 64, slope: float = 0.02):
        super().__init__()
        self.in_dim = check_int("in_dim", in_dim)
        self.window = check_int("window", window)
        self.out_dim = check_int("out_dim", out_dim)
        self.slope = float(slope)
        layers, c, length, i = [], self.in_dim, self.window, 0
        while length > 1:
            c_out = self._CHANNELS[min(i, len(self._CHANNELS) - 1)]
            layers += [nn.Conv1d(c, c_out, 3, stride=2, padding=1), nn.LeakyReLU(self.slope)]
            c, length, i = c_out, (length + 1) // 2, i + 1
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c, 64), nn.LeakyReLU(self.slope),
                                nn.Linear(64, self.out_dim))

    def config(self) -> dict:
        """Constructor arguments (plain Python types), stored in checkpoints."""
        return {"in_dim": self.in_dim, "window": self.window, "out_dim": self.out_dim,
                "slope": self.slope}

    @classmethod
    def from_config(cls, config: dict) -> AudioEncoder:
        """A new model from :meth:`config`'s dict (unknown keys raise ConfigError)."""
        return cls(**known_settings(config, ("in_dim", "window", "out_dim", "slope"),
                                    "audio-encoder"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows of features float [B, window, in_dim] -> e_a float [B, out_dim].

        Raises:
            BadInputError: not a float tensor of that shape (the message names both widths:
                features of another kind or width need another encoder).
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise BadInputError("audio features must be a float torch tensor [B, window, D]")
        if x.dim() != 3 or x.shape[1] != self.window or x.shape[2] != self.in_dim:
            raise BadInputError(f"audio features must be [B, window={self.window}, "
                                f"D={self.in_dim}], got {list(x.shape)}")
        p = self.fc[0].weight
        h = self.conv(x.to(device=p.device, dtype=p.dtype).transpose(1, 2))   # [B, C, 1]
        return self.fc(h.flatten(1))


class AudioAttention(nn.Module):
    """AD-NeRF's AudioAttNet: temporal smoothing of per-frame audio codes (optional).

    A 1-D conv net (channels dim -> 16 -> 8 -> 4 -> 2 -> 1, kernel 3, LeakyReLU(0.02)) over
    the codes of ``seq_len`` consecutive frames, then ``Linear(seq_len, seq_len)`` and a
    softmax give one weight per frame; the output is the weighted sum of the codes.

    Args:
        dim: code width (64).
        seq_len: frames per smoothing window (8).
    """

    def __init__(self, dim: int = 64, seq_len: int = 8):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.seq_len = check_int("seq_len", seq_len)
        chans = (self.dim, 16, 8, 4, 2, 1)
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv1d(a, b, 3, padding=1), nn.LeakyReLU(_SLOPE)]
        self.conv = nn.Sequential(*layers)
        self.att = nn.Linear(self.seq_len, self.seq_len)

    def config(self) -> dict:
        return {"dim": self.dim, "seq_len": self.seq_len}

    @classmethod
    def from_config(cls, config: dict) -> AudioAttention:
        return cls(**config)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes float [B, seq_len, dim] -> smoothed float [B, dim] (weights sum to 1).

        Raises:
            BadInputError: wrong shape.
        """
        if codes.dim() != 3 or codes.shape[1:] != (self.seq_len, self.dim):
            raise BadInputError(f"codes must be [B, {self.seq_len}, {self.dim}], got "
                                f"{list(codes.shape)}")
        w = self.conv(codes.transpose(1, 2)).squeeze(1)            # [B, seq_len]
        w = torch.softmax(self.att(w), dim=1)
        return (w[:, :, None] * codes).sum(1)

    def smooth(self, codes: torch.Tensor) -> torch.Tensor:
        """Smooth a whole sequence: float [T, dim] -> [T, dim]; frame t uses the window
        ``t - seq_len//2 .. t - seq_len//2 + seq_len - 1`` (edge frames repeated)."""
        if codes.dim() != 2 or codes.shape[1] != self.dim:
            raise BadInputError(f"codes must be [T, {self.dim}], got {list(codes.shape)}")
        t = codes.shape[0]
        left = self.seq_len // 2
        idx = (torch.arange(t, device=codes.device)[:, None] - left
               + torch.arange(self.seq_len, device=codes.device)).clamp(0, max(t - 1, 0))
        return self(codes[idx])


# ---------------------------------------------------------------------------------------------
# InfoNCE
# ---------------------------------------------------------------------------------------------

def cosine_logits(anchor: torch.Tensor, others: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """``d(x, y) = <x, y> / (tau |x| |y|)`` of Eq. 2.

    Args:
        anchor: float [B, C].
        others: float [B, K, C] (per-anchor candidates) or [N, C] (shared candidates).
        tau: temperature (0.1).

    Returns:
        float [B, K] or [B, N].
    """
    a = F.normalize(anchor, dim=-1)
    o = F.normalize(others, dim=-1)
    if o.dim() == 3:
        return torch.einsum("bc,bkc->bk", a, o) / tau
    return a @ o.t() / tau


def info_nce(e_m: torch.Tensor, e_pos: torch.Tensor, e_neg: torch.Tensor | None = None, *,
             tau: float = 0.1, in_batch: bool = False) -> torch.Tensor:
    """InfoNCE of JEAN Eq. 2 (van den Oord et al. 2018), mean over the batch.

    ``-log( exp d(e_m, e_a+) / (exp d(e_m, e_a+) + sum_k exp d(e_m, e_a-_k)) )`` with the
    cosine similarity over temperature of :func:`cosine_logits`.

    Args:
        e_m: anchors float [B, C] (mouth codes of the frozen landmark encoder).
        e_pos: positives float [B, C] (audio codes of the same frames).
        e_neg: negatives float [B, K, C] (K audio codes per anchor: Eq. 2 has K = 1, same
            identity, another video or a distant moment) or None.
        tau: temperature (0.1).
        in_batch: also use the other anchors' positives as negatives (B - 1 more per anchor).

    Returns:
        0-d tensor.

    Raises:
        BadInputError: shapes disagree, or no negative at all (e_neg None and not in_batch).
    """
    if e_m.dim() != 2 or e_pos.shape != e_m.shape:
        raise BadInputError(f"e_m and e_pos must both be [B, C], got {list(e_m.shape)} and "
                            f"{list(e_pos.shape)}")
    parts = [cosine_logits(e_m, e_pos[:, None], tau)]                # [B, 1]
    if e_neg is not None:
        if e_neg.dim() != 3 or e_neg.shape[0] != e_m.shape[0] or e_neg.shape[2] != e_m.shape[1]:
            raise BadInputError(f"e_neg must be [B={e_m.shape[0]}, K, C={e_m.shape[1]}], got "
                                f"{list(e_neg.shape)}")
        parts.append(cosine_logits(e_m, e_neg, tau))
    if in_batch:
        full = cosine_logits(e_m, e_pos, tau)                        # [B, B]
        eye = torch.eye(e_m.shape[0], dtype=torch.bool, device=e_m.device)
        parts.append(full.masked_fill(eye, -math.inf))
    if len(parts) == 1:
        raise BadInputError("InfoNCE needs negatives: pass e_neg or in_batch=True")
    logits = torch.cat(parts, 1)
    return -torch.log_softmax(logits, 1)[:, 0].mean()


class MouthSwapStep(nn.Module):
    """:meth:`LandmarkAutoencoder.swap_forward` as a module's ``forward``, so that
    ``DistributedDataParallel`` can wrap the training step of Eq. 1 (its parameters are the
    autoencoder's)."""

    def __init__(self, ae: LandmarkAutoencoder):
        super().__init__()
        self.ae = ae

    def forward(self, pts_a, pts_b, swap):
        return self.ae.swap_forward(pts_a, pts_b, swap)
