"""Settings of the audio training (``jean train-audio``, JEAN Sec. 3.1)."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from .._run import check_ints

__all__ = ["AudioTrainConfig"]


@dataclass
class AudioTrainConfig:
    """Settings of :func:`~jeancore.train.train_audio` (paper values where the paper gives them).

    Stage 1, landmark autoencoder (Eq. 1): ``ae_epochs`` (15), ``ae_lr`` (1e-3, Adam
    default), ``ae_weight_decay`` (1e-5), ``swap_prob`` (0.8).

    Stage 2, audio encoder (Eq. 2): ``audio_epochs`` (30), ``lr`` (1e-3) decaying
    exponentially to ``lr_end`` (5e-6) over the stage, ``audio_weight_decay`` (0), ``tau``
    (0.1), ``negatives`` K per anchor (1), ``in_batch`` (False: also use the other anchors'
    positives as negatives), ``min_negative_gap_s`` (1.0: same-video negatives are at least
    this far from the anchor), ``center_codes`` (False; True: after stage 1 the codes are centred
    over the training frames -- and with ``scale_codes`` scaled to unit variance -- an exact
    re-parametrisation of the autoencoder, see :meth:`~jeancore.models.audio.LandmarkAutoencoder.center_codes`; not in
    the paper).

    Both: ``batch_size`` global batch (256), ``max_steps`` per stage (None: full epochs),
    widths ``code_dim`` (64), ``hidden`` (256, 256, 128), ``audio_dim`` (64).

    Bookkeeping: ``seed``; ``device`` ("auto": CUDA when available, else CPU; under torchrun
    on CUDA, the local rank's GPU); ``log_every``; ``checkpoint_every`` steps;
    ``eval_trials`` candidate sets per validation clip of the retrieval metric.
    """

    ae_epochs: int = 15
    ae_lr: float = 1e-3
    ae_weight_decay: float = 1e-5
    swap_prob: float = 0.8
    audio_epochs: int = 30
    lr: float = 1e-3
    lr_end: float = 5e-6
    audio_weight_decay: float = 0.0
    tau: float = 0.1
    negatives: int = 1
    in_batch: bool = False
    min_negative_gap_s: float = 1.0
    center_codes: bool = False
    scale_codes: bool = False
    batch_size: int = 256
    max_steps: int | None = None
    code_dim: int = 64
    hidden: tuple = (256, 256, 128)
    audio_dim: int = 64
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 200
    eval_trials: int = 10

    def validate(self) -> None:
        """Raises ConfigError for out-of-range settings."""
        check_ints(self, ("ae_epochs", "audio_epochs", "seed"), 0)
        check_ints(self, ("batch_size", "negatives", "code_dim", "audio_dim", "log_every",
                          "checkpoint_every", "eval_trials"))
        check_ints(self, ("max_steps",), 0, optional=True)
        if not 0.0 <= self.swap_prob <= 1.0:
            raise ConfigError(f"swap_prob must be in [0, 1], got {self.swap_prob!r}")
        if not (self.ae_lr > 0 and self.lr > 0 and 0 < self.lr_end <= self.lr):
            raise ConfigError("ae_lr, lr must be > 0 and 0 < lr_end <= lr")
        if not (self.ae_weight_decay >= 0 and self.audio_weight_decay >= 0):
            raise ConfigError("weight decays must be >= 0")
        if not self.tau > 0:
            raise ConfigError(f"tau must be > 0, got {self.tau!r}")
        if not self.min_negative_gap_s >= 0:
            raise ConfigError("min_negative_gap_s must be >= 0")
