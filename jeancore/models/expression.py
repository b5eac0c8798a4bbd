"""Expression transformer: disentangles expression from speech-specific lip motion (JEAN Sec. 3.2,
suppl. 8.3, Eq. 4).

Per-frame emotion features ``e_emo`` (paper: 2048-d ResNet-50 features; here the 128-d
mini-Xception features of :mod:`jeancore.data.emotion`) are encoded in windows of omega frames
by the expression encoder EE into a speech-specific lip-motion code ``e_l`` and an expression
code ``e_e`` per frame. An autoregressive expression decoder ED reconstructs the emotion
features from both. Training uses pairs of DTW-aligned windows A and B of one identity saying
the same sentence in two emotions; with probability delta the expression codes are exchanged
between A and B before decoding (the training loop draws the swaps, see
:mod:`jeancore.train.expression`).

Architecture (paper defaults; every width is a constructor argument):

* EE: ``Linear(in_dim, hidden) -> LeakyReLU(0.02) -> Linear(hidden, d_model)``, plus the
  sinusoidal positional encoding of Vaswani et al., then an ``nn.TransformerEncoder``
  (``n_layers`` post-norm layers, ``n_heads`` heads, feed-forward ``ff_dim``, ``dropout``,
  batch first). Output [B, w, d_model] is split along the channels: ``e_l`` = the first
  ``lip_dim`` channels, ``e_e`` = the remaining ``d_model - lip_dim``.
* ED: an ``nn.TransformerDecoder`` (same depth and heads) whose memory is
  ``concat(e_l, e_e)`` [B, w, d_model] (after any swap). Its input sequence is
  ``[START, emb(x_1), ..., emb(x_w)]`` (w + 1 tokens; ``START`` a learned d_model vector,
  ``emb`` = the same 2-layer MLP shape as EE's input layers, own weights, plus positional
  encoding), under a causal mask. Output position i (0-based) predicts frame x_{i+1} for
  i < w through the output MLP ``Linear(d_model, hidden) -> LeakyReLU(0.02) ->
  Linear(hidden, in_dim)``; the start token is thus stripped from the outputs.
* END token: modelled as a **stop logit**. A linear head on every decoder output gives the
  logit of "the sequence ends here" (the END token). Its target is 1 at output position
  ``n`` (the position after the last valid frame: n = w for a full window, n = number of
  valid frames for a window padded at the end) and 0 at positions 0..n-1; positions after n
  are ignored. :func:`expression_loss` adds ``end_weight * BCE`` to the L1 of Eq. 4.
  :meth:`ExpressionTransformer.generate` reports the stop logits of every step (fixed-length
  windows always decode w frames; a caller may cut at the first positive logit).

Padding convention: ``pad_mask`` is a bool tensor [B, w], **True = padded** (a frame that does
not exist, e.g. past the end of a sequence shorter than w, or before/after a sequence's ends
in :meth:`ExpressionTransformer.frame_codes`). Padded frames are ignored as attention keys
(encoder self-attention, decoder memory attention and decoder self-attention) and in the
loss; their values do not matter (zeros by convention), and the outputs *at* padded
positions are meaningless. The encoder accepts padding anywhere; the decoder (teacher
forcing, loss) needs the padding at the end of the window (valid frames first), which is
what windows running past the end of a sequence give. Every window needs at least one valid
frame.

Mixed ground truth of Eq. 4 (our reading of Sec. 3.2). A and B are DTW-aligned windows of the
same sentence in two emotions, so frame t of A and frame t of B show the same speech content
(lip motion) by construction, and differ in expression. The decoder reconstructs
``ED(e_l, e_e)``; the target is the sequence whose *expression* code was used:

* no swap: ``ED(e_l^A, e_e^A) -> x^A`` and ``ED(e_l^B, e_e^B) -> x^B``;
* swap: ``ED(e_l^A, e_e^B) -> x^B`` and ``ED(e_l^B, e_e^A) -> x^A`` (A's lip content, which
  equals B's, with B's expression is B's features).

So Eq. 4's ``e'_emo_A`` is "the decode carrying expression A" whatever lip code it used.
This forces the expression difference between the two emotions into ``e_e`` and the shared
speech content into ``e_l``. Teacher forcing feeds each decode's own target frames.

Inference (suppl. 8.4): the expression code of frame t is the middle output (index
``w // 2``) of the window centred on t, frames t - w//2 .. t - w//2 + w - 1, with frames
outside the sequence padded (:meth:`ExpressionTransformer.expression_codes`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError, ConfigError
from ._checks import known_settings, swap_flags

__all__ = ["MODEL_CONFIG_KEYS", "ExpressionOutput", "ExpressionTransformer", "expression_loss",
           "sinusoidal_encoding"]

#: constructor arguments that fix the parameter shapes / behaviour (stored in checkpoints)
MODEL_CONFIG_KEYS = ("in_dim", "hidden", "d_model", "n_layers", "n_heads", "ff_dim", "dropout",
                     "window", "lip_dim")

_SLOPE = 0.02  # LeakyReLU negative slope (suppl. 8.3)


def sinusoidal_encoding(length: int, d_model: int, *, device=None,
                        dtype=torch.float32) -> torch.Tensor:
    """Sinusoidal positional encoding [length, d_model] (Vaswani et al. 2017):
    PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)); odd d_model drops
    the last cosine channel."""
    pos = torch.arange(length, device=device, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float64)
                    * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
    return pe.to(dtype)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(_SLOPE), nn.Linear(hidden, n_out))


def _causal_mask(n: int, device) -> torch.Tensor:
    """Bool [n, n], True = may not attend (key j > query i)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


class ExpressionOutput(NamedTuple):
    """Result of :meth:`ExpressionTransformer.forward` (B windows of w frames, D = in_dim).

    recon_a, recon_b: float [B, w, D], decodes of slot A (lip code of A, expression code of A,
        or of B where swapped) and slot B.
    target_a, target_b: float [B, w, D], their ground truth (x_a / x_b, exchanged where
        swapped: the sequence whose expression code was decoded).
    end_a, end_b: float [B, w + 1], stop (END) logits of the two decodes.
    lip_a, expr_a, lip_b, expr_b: encoder codes before the swap, [B, w, lip_dim] and
        [B, w, d_model - lip_dim].
    swap: bool [B], the swap decisions used.
    """

    recon_a: torch.Tensor
    recon_b: torch.Tensor
    target_a: torch.Tensor
    target_b: torch.Tensor
    end_a: torch.Tensor
    end_b: torch.Tensor
    lip_a: torch.Tensor
    expr_a: torch.Tensor
    lip_b: torch.Tensor
    expr_b: torch.Tensor
    swap: torch.Tensor


class ExpressionTransformer(nn.Module):
    """EE + ED of JEAN Sec. 3.2 (see the module docstring for the architecture, the END token,
    the padding convention and the swap targets).

    Args:
        in_dim: per-frame emotion-feature width D (paper 2048; 128 for the mini-Xception).
        hidden: hidden width of the input/output MLPs (512).
        d_model: transformer width (128); ``e_l`` + ``e_e`` widths.
        n_layers: encoder and decoder depth (3 each).
        n_heads: attention heads (8); must divide d_model.
        ff_dim: transformer feed-forward width (2048, PyTorch's default; the paper does not
            give it).
        dropout: transformer dropout (0.2).
        window: omega, frames per window (8); the default window of :meth:`frame_codes`.
        lip_dim: width of ``e_l`` (64); ``e_e`` gets ``d_model - lip_dim`` (64).

    Raises:
        ConfigError: a width < 1, n_heads not dividing d_model, lip_dim not in [1, d_model),
            dropout outside [0, 1).
    """

    def __init__(self, in_dim: int = 128, hidden: int = 512, d_model: int = 128,
                 n_layers: int = 3, n_heads: int = 8, ff_dim: int = 2048, dropout: float = 0.2,
                 window: int = 8, lip_dim: int = 64):
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hidden", hidden), ("d_model", d_model),
                        ("n_layers", n_layers), ("n_heads", n_heads), ("ff_dim", ff_dim),
                        ("window", window)):
            if int(v) != v or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if d_model % n_heads:
            raise ConfigError(f"n_heads ({n_heads}) must divide d_model ({d_model})")
        if not 1 <= lip_dim < d_model or int(lip_dim) != lip_dim:
            raise ConfigError(f"lip_dim must be an integer in [1, d_model={d_model}), got "
                              f"{lip_dim!r} (the expression code gets d_model - lip_dim)")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_dim, self.hidden, self.d_model = int(in_dim), int(hidden), int(d_model)
        self.n_layers, self.n_heads, self.ff_dim = int(n_layers), int(n_heads), int(ff_dim)
        self.dropout, self.window, self.lip_dim = float(dropout), int(window), int(lip_dim)
        self.expr_dim = self.d_model - self.lip_dim

        self.enc_in = _mlp(self.in_dim, self.hidden, self.d_model)
        enc_layer = nn.TransformerEncoderLayer(self.d_model, self.n_heads, self.ff_dim,
                                               self.dropout, batch_first=True)
        # no nested-tensor fast path: padded positions get ordinary (ignored) outputs
        self.encoder = nn.TransformerEncoder(enc_layer, self.n_layers,
                                             enable_nested_tensor=False)
        self.dec_in = _mlp(self.in_dim, self.hidden, self.d_model)
        dec_layer = nn.TransformerDecoderLayer(self.d_model, self.n_heads, self.ff_dim,
                                               self.dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(dec_layer, self.n_layers)
        self.dec_out = _mlp(self.d_model, self.hidden, self.in_dim)
        self.end_head = nn.Linear(self.d_model, 1)
        self.start_token = nn.Parameter(torch.randn(self.d_model) * 0.02)

    # ----------------------------------------------------------------------------- config

    def config(self) -> dict:
        """The constructor arguments (plain Python types), e.g. for checkpoints."""
        return {k: getattr(self, k) for k in MODEL_CONFIG_KEYS}

    @classmethod
    def from_config(cls, config: dict) -> ExpressionTransformer:
        """A new model from :meth:`config`'s dict (unknown keys raise ConfigError)."""
        return cls(**known_settings(config, MODEL_CONFIG_KEYS, "expression-transformer"))

    # ----------------------------------------------------------------------------- checks

    def _param(self) -> torch.Tensor:
        return self.start_token

    def _check_x(self, name: str, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise BadInputError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[1] < 1 or x.shape[2] != self.in_dim:
            raise BadInputError(f"{name} must be [B, w >= 1, in_dim={self.in_dim}], got "
                                f"{list(x.shape)}")
        if not x.is_floating_point():
            raise BadInputError(f"{name} must be a float tensor, got {x.dtype}")
        p = self._param()
        return x.to(device=p.device, dtype=p.dtype)

    def _check_mask(self, pad_mask, shape, *, trailing: bool) -> torch.Tensor | None:
        if pad_mask is None:
            return None
        if not isinstance(pad_mask, torch.Tensor) or pad_mask.dtype != torch.bool:
            raise BadInputError("pad_mask must be a bool tensor (True = padded)")
        if tuple(pad_mask.shape) != tuple(shape):
            raise BadInputError(f"pad_mask must be [B, w] = {list(shape)}, got "
                                f"{list(pad_mask.shape)}")
        pad_mask = pad_mask.to(self._param().device)
        if bool(pad_mask.all(dim=1).any()):
            raise BadInputError("every window needs at least one valid (unpadded) frame")
        if trailing and bool((pad_mask[:, :-1] & ~pad_mask[:, 1:]).any()):
            raise BadInputError("the decoder needs padding at the end of each window "
                                "(valid frames first, then padded ones)")
        return pad_mask

    # ----------------------------------------------------------------------------- parts

    def encode(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """EE: windows of emotion features -> (e_l, e_e).

        Args:
            x: float [B, w, in_dim] (any w >= 1; converted to the model's dtype/device).
            pad_mask: bool [B, w], True = padded (anywhere in the window), or None.

        Returns:
            e_l float [B, w, lip_dim], e_e float [B, w, d_model - lip_dim].

        Raises:
            BadInputError: wrong shape/dtype, or a window with no valid frame.
        """
        x = self._check_x("x", x)
        pad_mask = self._check_mask(pad_mask, x.shape[:2], trailing=False)
        h = self.enc_in(x) + sinusoidal_encoding(x.shape[1], self.d_model, device=x.device,
                                                 dtype=x.dtype)
        h = self.encoder(h, src_key_padding_mask=pad_mask)
        return h[..., : self.lip_dim], h[..., self.lip_dim:]

    def memory(self, e_l: torch.Tensor, e_e: torch.Tensor) -> torch.Tensor:
        """Decoder memory: ``concat(e_l, e_e)`` along channels, [B, w, d_model]."""
        if e_l.shape[:-1] != e_e.shape[:-1] or e_l.shape[-1] != self.lip_dim \
                or e_e.shape[-1] != self.expr_dim:
            raise BadInputError(f"codes must be [B, w, {self.lip_dim}] and [B, w, "
                                f"{self.expr_dim}], got {list(e_l.shape)} and {list(e_e.shape)}")
        return torch.cat([e_l, e_e], dim=-1)

    def _decoder_tokens(self, prev: torch.Tensor | None, batch: int) -> torch.Tensor:
        """[START, emb(prev_1) ...] + positional encoding, [B, 1 + n, d_model]."""
        start = self.start_token.expand(batch, 1, self.d_model)
        tok = start if prev is None or prev.shape[1] == 0 else \
            torch.cat([start, self.dec_in(prev)], dim=1)
        return tok + sinusoidal_encoding(tok.shape[1], self.d_model, device=tok.device,
                                         dtype=tok.dtype)

    def _run_decoder(self, tokens, memory, memory_mask, token_mask):
        n = tokens.shape[1]
        return self.decoder(tokens, memory, tgt_mask=_causal_mask(n, tokens.device),
                            tgt_is_causal=True, tgt_key_padding_mask=token_mask,
                            memory_key_padding_mask=memory_mask)

    def decode(self, memory: torch.Tensor, target: torch.Tensor,
               pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ED with teacher forcing: input ``[START, emb(x_1) .. emb(x_w)]``, causal mask.

        Args:
            memory: float [B, w, d_model] (:meth:`memory`).
            target: float [B, w, in_dim], the frames x_1..x_w to reconstruct (fed shifted by
                one as decoder input).
            pad_mask: bool [B, w], True = padded, padding at the end only; or None.

        Returns:
            recon float [B, w, in_dim] (output i predicts x_{i+1} from START, x_1..x_i and the
            memory) and end logits float [B, w + 1] (see the module docstring).

        Raises:
            BadInputError: shapes disagree, padding not at the end, an all-padded window.
        """
        target = self._check_x("target", target)
        b, w = target.shape[:2]
        if memory.dim() != 3 or memory.shape[0] != b or memory.shape[2] != self.d_model:
            raise BadInputError(f"memory must be [B={b}, w, d_model={self.d_model}], got "
                                f"{list(memory.shape)}")
        if memory.shape[1] != w:
            raise BadInputError(f"memory has {memory.shape[1]} frames, target {w}")
        pad_mask = self._check_mask(pad_mask, (b, w), trailing=True)
        tokens = self._decoder_tokens(target, b)  # [B, w + 1, d]
        token_mask = None if pad_mask is None else torch.cat(
            [torch.zeros(b, 1, dtype=torch.bool, device=pad_mask.device), pad_mask], dim=1)
        h = self._run_decoder(tokens, memory, pad_mask, token_mask)
        return self.dec_out(h[:, :w]), self.end_head(h).squeeze(-1)

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, pad_mask: torch.Tensor | None = None,
                 length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy autoregressive decoding (no teacher forcing): starts from START and feeds
        back each predicted frame.

        Args:
            memory: float [B, w, d_model] (:meth:`memory`).
            pad_mask: bool [B, w], True = padded memory frames, or None.
            length: frames to generate (default w).

        Returns:
            frames float [B, length, in_dim] and stop (END) logits float [B, length + 1]
            (logit i is the decoder's END prediction after i frames). In eval mode,
            ``decode(memory, frames)`` reproduces both (up to rounding).
        """
        if memory.dim() != 3 or memory.shape[2] != self.d_model:
            raise BadInputError(f"memory must be [B, w, d_model={self.d_model}], got "
                                f"{list(memory.shape)}")
        b = memory.shape[0]
        pad_mask = self._check_mask(pad_mask, memory.shape[:2], trailing=False)
        length = memory.shape[1] if length is None else int(length)
        if length < 0:
            raise BadInputError(f"length must be >= 0, got {length}")
        frames = memory.new_zeros(b, 0, self.in_dim)
        ends = []
        for i in range(length + 1):
            h = self._run_decoder(self._decoder_tokens(frames, b), memory, pad_mask, None)
            ends.append(self.end_head(h[:, -1]).squeeze(-1))
            if i < length:
                frames = torch.cat([frames, self.dec_out(h[:, -1:])], dim=1)
        return frames, torch.stack(ends, dim=1)

    # ----------------------------------------------------------------------------- training

    def forward(self, xa: torch.Tensor, xb: torch.Tensor, pad_mask: torch.Tensor | None = None,
                swap: torch.Tensor | bool | None = None) -> ExpressionOutput:
        """Encode a pair of DTW-aligned windows, exchange expression codes where ``swap``,
        decode both with teacher forcing (Sec. 3.2; the targets are explained in the module
        docstring).

        Args:
            xa, xb: float [B, w, in_dim], frame t of xa aligned with frame t of xb.
            pad_mask: bool [B, w], True = padded, shared by both (aligned) windows, padding
                at the end; or None.
            swap: bool [B] (or a Python bool for all, or None = no swap). Drawn by the caller,
                True with probability delta = 0.8 in training.

        Returns:
            :class:`ExpressionOutput`; pass it to :func:`expression_loss` for Eq. 4.

        Raises:
            BadInputError: shapes disagree (xa vs xb, pad_mask, swap), bad padding.
        """
        xa = self._check_x("xa", xa)
        xb = self._check_x("xb", xb)
        if xa.shape != xb.shape:
            raise BadInputError(f"xa and xb must have the same shape (aligned windows), got "
                                f"{list(xa.shape)} and {list(xb.shape)}")
        b = xa.shape[0]
        pad_mask = self._check_mask(pad_mask, xa.shape[:2], trailing=True)
        swap = swap_flags(swap, b, xa.device)
        # one encoder pass for both windows
        e_l, e_e = self.encode(torch.cat([xa, xb]),
                               None if pad_mask is None else torch.cat([pad_mask, pad_mask]))
        lip_a, lip_b = e_l[:b], e_l[b:]
        expr_a, expr_b = e_e[:b], e_e[b:]
        s = swap[:, None, None]
        expr_for_a = torch.where(s, expr_b, expr_a)
        expr_for_b = torch.where(s, expr_a, expr_b)
        target_a = torch.where(s, xb, xa)
        target_b = torch.where(s, xa, xb)
        memory = torch.cat([self.memory(lip_a, expr_for_a), self.memory(lip_b, expr_for_b)])
        recon, end = self.decode(memory, torch.cat([target_a, target_b]),
                                 None if pad_mask is None else torch.cat([pad_mask, pad_mask]))
        return ExpressionOutput(recon[:b], recon[b:], target_a, target_b, end[:b], end[b:],
                                lip_a, expr_a, lip_b, expr_b, swap)

    # ----------------------------------------------------------------------------- inference

    @torch.no_grad()
    def frame_codes(self, features, window: int | None = None, batch_size: int = 4096
                    ) -> tuple:
        """Per-frame (e_l, e_e) of a whole sequence (inference, no DTW; suppl. 8.4).

        The codes of frame t are the middle output (index ``w // 2``) of EE on the window of
        frames ``t - w//2 .. t - w//2 + w - 1``; frames outside the sequence are padded
        (masked), so any T >= 1 works, T < w included, and a frame's codes depend only on the
        frames in its window. Runs in eval mode (no dropout); the training flag is restored.

        Args:
            features: float [T, in_dim], numpy or torch.
            window: w (default: the model's omega).
            batch_size: windows per encoder pass.

        Returns:
            (e_l [T, lip_dim], e_e [T, d_model - lip_dim]) float32: numpy arrays for numpy
            input, otherwise tensors on the model's device. T = 0 gives empty arrays.

        Raises:
            BadInputError: not [T, in_dim], non-float, non-finite values.
            ConfigError: window or batch_size < 1.
        """
        as_numpy = isinstance(features, np.ndarray)
        x = torch.from_numpy(np.ascontiguousarray(features)) if as_numpy else features
        if not isinstance(x, torch.Tensor):
            raise BadInputError(f"features must be a numpy array or tensor, got "
                                f"{type(features).__name__}")
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise BadInputError(f"features must be [T, in_dim={self.in_dim}], got "
                                f"{list(x.shape)}")
        if not x.is_floating_point():
            raise BadInputError(f"features must be float, got {x.dtype}")
        w = self.window if window is None else int(window)
        if w < 1 or int(batch_size) < 1:
            raise ConfigError(f"window and batch_size must be >= 1, got {w} and {batch_size}")
        p = self._param()
        x = x.to(device=p.device, dtype=p.dtype)
        if not bool(torch.isfinite(x).all()):
            raise BadInputError("features contain NaN or infinite values")
        t_len = x.shape[0]
        lip = torch.empty(t_len, self.lip_dim, device=p.device, dtype=p.dtype)
        expr = torch.empty(t_len, self.expr_dim, device=p.device, dtype=p.dtype)
        if t_len:
            left, right = w // 2, w - 1 - w // 2
            xp = F.pad(x, (0, 0, left, right))                       # [T + w - 1, D]
            valid = F.pad(torch.ones(t_len, dtype=torch.bool, device=p.device), (left, right))
            was_training = self.training
            self.eval()
            try:
                for s in range(0, t_len, int(batch_size)):
                    e = min(t_len, s + int(batch_size))
                    idx = torch.arange(s, e, device=p.device)[:, None] + \
                        torch.arange(w, device=p.device)
                    l_, e_ = self.encode(xp[idx], ~valid[idx])
                    lip[s:e], expr[s:e] = l_[:, left], e_[:, left]
            finally:
                self.train(was_training)
        lip, expr = lip.float(), expr.float()
        if as_numpy:
            return lip.cpu().numpy(), expr.cpu().numpy()
        return lip, expr

    def expression_codes(self, features, window: int | None = None, batch_size: int = 4096):
        """Per-frame expression codes e_e [T, d_model - lip_dim] (64 by default), float32;
        see :meth:`frame_codes` for the windowing, arguments and errors."""
        return self.frame_codes(features, window, batch_size)[1]

    def lip_codes(self, features, window: int | None = None, batch_size: int = 4096):
        """Per-frame speech-specific lip-motion codes e_l [T, lip_dim], float32; see
        :meth:`frame_codes`."""
        return self.frame_codes(features, window, batch_size)[0]


def expression_loss(out: ExpressionOutput, pad_mask: torch.Tensor | None = None,
                    end_weight: float = 0.1) -> dict:
    """Eq. 4 plus the END-token term.

    ``l1 = mean|recon_a - target_a| + mean|recon_b - target_b|`` (each mean over the valid
    frames and all channels: the sum of the two terms of Eq. 4 as mean absolute errors);
    ``end = BCE(end logits, END targets)`` averaged over the positions 0..n of both decodes
    (n = valid frames of the window); ``total = l1 + end_weight * end``.

    Args:
        out: :class:`ExpressionOutput`.
        pad_mask: bool [B, w], True = padded (padding at the end), or None.
        end_weight: weight of the END term (>= 0).

    Returns:
        dict of 0-d tensors: total, l1, l1_a, l1_b, end.
    """
    b, w = out.recon_a.shape[:2]
    dev = out.recon_a.device
    valid = torch.ones(b, w, dtype=torch.bool, device=dev) if pad_mask is None \
        else ~pad_mask.to(dev)
    vf = valid[..., None].to(out.recon_a.dtype)
    denom = vf.sum() * out.recon_a.shape[2]
    l1_a = ((out.recon_a - out.target_a).abs() * vf).sum() / denom
    l1_b = ((out.recon_b - out.target_b).abs() * vf).sum() / denom
    n_valid = valid.sum(1)                                            # [B]
    pos = torch.arange(w + 1, device=dev)
    end_target = (pos[None] == n_valid[:, None]).to(out.end_a.dtype)  # [B, w + 1]
    end_w = (pos[None] <= n_valid[:, None]).to(out.end_a.dtype)
    end = (F.binary_cross_entropy_with_logits(out.end_a, end_target, weight=end_w,
                                              reduction="sum")
           + F.binary_cross_entropy_with_logits(out.end_b, end_target, weight=end_w,
                                                reduction="sum")) / (2 * end_w.sum())
    l1 = l1_a + l1_b
    return {"total": l1 + float(end_weight) * end, "l1": l1, "l1_a": l1_a, "l1_b": l1_b,
            "end": end}
