"""The condition vector e_in = concat(e_a, e_e) of JEAN's NeRF (Sec. 3.3; suppl. 8.4.2).

* Audio: the audio encoder of Sec. 3.1 (AD-NeRF's AudioNet, 64-d e_a, fine-tuned with the
  NeRF at a learning rate of 5e-6), a linear projection to the 32-d audio code the NeRF reads
  (the paper's "32 (audio)"), and AD-NeRF's attention smoothing (AudioAttNet) over the codes of
  8 neighbouring frames: frame t uses frames t - 4 .. t + 3, indices clamped to the sequence
  (AD-NeRF pads with zeros; repeating the edge frame keeps the first and last frames' codes
  in the range the network saw).
* Expression: the frozen expression transformer's per-frame e_e (64-d, the middle output of a
  window of omega = 8 frames), computed once per sequence
  (:meth:`jeancore.models.ExpressionTransformer.expression_codes`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import BadInputError, ConfigError
from .audio import AudioAttention, AudioEncoder

__all__ = ["AudioConditioner", "smoothing_indices"]


def smoothing_indices(frames: torch.Tensor, n_frames: int, seq_len: int = 8) -> torch.Tensor:
    """Frame indices of the smoothing windows: int64 [B, seq_len], row b =
    ``frames[b] - seq_len // 2 + (0 .. seq_len - 1)`` clamped to 0 .. n_frames - 1."""
    frames = torch.as_tensor(frames, dtype=torch.int64)
    off = torch.arange(seq_len, device=frames.device) - seq_len // 2
    return (frames.reshape(-1, 1) + off).clamp_(0, max(n_frames - 1, 0))


class AudioConditioner(nn.Module):
    """Audio part of e_in: windows of speech features -> the 32-d audio code e_a.

    Args:
        encoder: the (pre-trained) :class:`~jeancore.models.AudioEncoder` (fine-tuned here).
        code_dim: width of the audio code given to the NeRF (32).
        seq_len: frames of the attention smoothing (8); 1 switches smoothing off.

    Raises:
        ConfigError: code_dim or seq_len < 1.
    """

    def __init__(self, encoder: AudioEncoder, code_dim: int = 32, seq_len: int = 8):
        super().__init__()
        if int(code_dim) < 1 or int(seq_len) < 1:
            raise ConfigError(f"code_dim and seq_len must be >= 1, got {code_dim}, {seq_len}")
        self.encoder = encoder
        self.code_dim = int(code_dim)
        self.seq_len = int(seq_len)
        self.proj = nn.Linear(encoder.out_dim, self.code_dim)
        self.attention = AudioAttention(self.code_dim, self.seq_len) if self.seq_len > 1 else None

    def config(self) -> dict:
        return {"code_dim": self.code_dim, "seq_len": self.seq_len,
                "encoder": self.encoder.config()}

    @classmethod
    def from_config(cls, config: dict) -> AudioConditioner:
        return cls(AudioEncoder.from_config(config["encoder"]), config["code_dim"],
                   config["seq_len"])

    def frame_codes(self, windows: torch.Tensor) -> torch.Tensor:
        """Unsmoothed per-frame codes: feature windows float [B, window, D] -> [B, code_dim]."""
        return self.proj(self.encoder(windows))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Smoothed code of the middle frame of each window of frames.

        Args:
            windows: float [B, seq_len, window, D]: the speech-feature windows of frames
                t - seq_len//2 .. t + seq_len//2 - 1 (:func:`smoothing_indices`) for B frames t.

        Returns:
            e_a float [B, code_dim].

        Raises:
            BadInputError: wrong shape (or features the encoder does not take).
        """
        if windows.dim() != 4 or windows.shape[1] != self.seq_len:
            raise BadInputError(f"audio windows must be [B, seq_len={self.seq_len}, window, D],"
                                f" got {list(windows.shape)}")
        b = windows.shape[0]
        codes = self.frame_codes(windows.flatten(0, 1)).reshape(b, self.seq_len, -1)
        if self.attention is None:
            return codes[:, 0]
        return self.attention(codes)

    def sequence(self, audio: torch.Tensor, batch: int = 1024) -> torch.Tensor:
        """Smoothed codes of a whole sequence: float [T, window, D] -> [T, code_dim], frame t
        smoothed over its clamped neighbours (as in training)."""
        if audio.dim() != 3:
            raise BadInputError(f"audio windows must be [T, window, D], got {list(audio.shape)}")
        codes = torch.cat([self.frame_codes(audio[s:s + batch])
                           for s in range(0, audio.shape[0], batch)]) if len(audio) else \
            audio.new_zeros(0, self.code_dim)
        if self.attention is None or len(codes) == 0:
            return codes
        idx = smoothing_indices(torch.arange(len(codes), device=codes.device), len(codes),
                                self.seq_len)
        return self.attention(codes[idx])
