"""Settings of the audio training (``jean train-audio``, JEAN Sec. 3.1)."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from .._run import check_ints

__all__ = ["AudioTrainConfig"]


@dataclass
class AudioTrainConfig:
    """Settings of :func:`~jeancore.train.train_audio` (paper values where the paper gives
    them): stage 1 trains the landmark autoencoder (Eq. 1), stage 2 the audio encoder
    (InfoNCE, Eq. 2) against the frozen mouth codes."""

    ae_epochs: int = 15
    """Stage 1: epochs of the landmark autoencoder."""
    ae_lr: float = 1e-3
    """Stage 1: Adam learning rate (Adam's default, as the paper)."""
    ae_weight_decay: float = 1e-5
    """Stage 1: Adam weight decay."""
    swap_prob: float = 0.8
    """Stage 1: probability of exchanging the mouth codes of A and B (Eq. 1)."""
    audio_epochs: int = 30
    """Stage 2: epochs of the audio encoder."""
    lr: float = 1e-3
    """Stage 2: learning rate at the start, decaying exponentially to lr_end."""
    lr_end: float = 5e-6
    """Stage 2: learning rate at the last step."""
    audio_weight_decay: float = 0.0
    """Stage 2: Adam weight decay."""
    tau: float = 0.1
    """Stage 2: InfoNCE temperature."""
    negatives: int = 1
    """Stage 2: InfoNCE negatives K per anchor (Eq. 2: 1)."""
    in_batch: bool = False
    """Stage 2: also use the other anchors' positives of the step as negatives."""
    min_negative_gap_s: float = 1.0
    """Stage 2: same-video negatives are at least this many seconds from the anchor."""
    center_codes: bool = False
    """After stage 1, centre the codes over the training frames (an exact
    re-parametrisation of the autoencoder, LandmarkAutoencoder.center_codes; not in the
    paper)."""
    scale_codes: bool = False
    """With center_codes: also scale the codes to unit variance."""
    batch_size: int = 256
    """Global batch of both stages (split over the processes under torchrun)."""
    max_steps: int | None = None
    """Stop each stage after this many steps (None: full epochs)."""
    code_dim: int = 64
    """Width of the landmark codes e_f and e_m."""
    hidden: tuple[int, ...] = (256, 256, 128)
    """Hidden widths of the landmark encoder (the decoder uses them reversed)."""
    audio_dim: int = 64
    """Width of the audio code e_a."""
    seed: int = 0
    """Seed of the initialisation and of every epoch's draws."""
    device: str = "auto"
    """Torch device ('auto': CUDA when available, else CPU; under torchrun on CUDA, the local
    rank's GPU)."""
    log_every: int = 10
    """Steps between TensorBoard scalars."""
    checkpoint_every: int = 200
    """Steps between stage checkpoints (also at the end and on Ctrl-C)."""
    eval_trials: int = 10
    """Candidate sets per validation clip of the retrieval metric."""

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
