"""Training of the landmark autoencoder and the contrastive audio encoder (JEAN Sec. 3.1,
suppl. 8.1-8.2, Eqs. 1-2), on any number of preprocessed datasets.

Stage 1 (``landmark``): the landmark autoencoder on normalised 51-point landmarks
(:func:`jeancore.models.audio.normalize_landmarks`). Each training frame is an anchor A once
per epoch; its partner B is a random other training frame of the same video; with
probability ``swap_prob`` (0.8) the mouth codes are exchanged and Eq. 1's L1 is taken against
the mixed ground truths. Adam (lr 1e-3, weight decay 1e-5), batch 256, 15 epochs.

Stage 2 (``audio``): the landmark encoder is frozen; its mouth code e_m of each training frame
is the anchor of InfoNCE (Eq. 2), the audio code e_a of the same frame the positive, and
``negatives`` (K, paper 1) audio codes per anchor the negatives: from the same identity in
*another video* when the identity has several videos in the training set, otherwise from the
same video at least ``min_negative_gap_s`` (1 s) away (the counts of each kind are recorded
in the checkpoint and ``metrics.json``). ``in_batch`` adds the other anchors' positives of the
same step (on the same process) as negatives. Adam, lr 1e-3 decaying exponentially to 5e-6
over the stage, batch 256, 30 epochs.

Identities: a dataset's identity is given by the caller (``IDENTITY=DIR`` on the command line),
by a MEAD index (:mod:`jeancore.data.mead`), or defaults to its folder name; datasets of one
identity are its videos.

Distributed data parallel: under ``torchrun`` (env ``WORLD_SIZE`` > 1) each stage wraps its
model in ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA). All random draws of an
epoch (order, partners, swaps, negatives) are made for the whole *global* batch from a
generator seeded by ``(seed, stage, epoch)``; each process takes a contiguous slice of every
global batch and its loss is weighted so that DDP's gradient average equals the gradient of
the global batch's mean loss. So K processes take the same steps as one process on the same
global batch (up to floating-point summation order), except that ``in_batch`` negatives are
the process's own slice. Rank 0 writes checkpoints, TensorBoard and metrics.

Outputs in ``out_dir``: ``landmark_ae.pt`` and ``audio_encoder.pt`` (training checkpoints:
atomic, loadable with ``torch.load(weights_only=True)``, with optimizer and RNG states for an
exact resume; saved on Ctrl-C too), ``model.pt`` (the trained
:class:`~jeancore.models.AudioModel`, loaded with :func:`jeancore.checkpoints.load_audio_model`),
``tb/`` (TensorBoard), ``metrics.json``.

Modules: :mod:`.config` (:class:`AudioTrainConfig`), :mod:`.dataset` (:class:`AudioDataset`,
:func:`load_audio_datasets`), :mod:`.frames` (the frames and the random draws of an epoch),
:mod:`.ddp` (torchrun), :mod:`.stages` (the two stages on one loop), :mod:`.training`
(:func:`train_audio`). The evaluation is :func:`jeancore.metrics.audio.evaluate_audio`.
"""

from __future__ import annotations

from ...checkpoints import AUDIO_MODEL_NAME as MODEL_NAME
from ...checkpoints import GENERIC_AUDIO_MODEL as GENERIC_MODEL
from ...checkpoints import load_audio_model
from ...metrics.audio import evaluate_audio
from ...models.audio_model import AudioModel
from .config import AudioTrainConfig
from .dataset import AudioDataset, load_audio_datasets
from .training import train_audio

# AudioModel, load_audio_model (inference: jeancore.models, jeancore.checkpoints) and
# evaluate_audio (jeancore.metrics.audio) are re-exported for the training side's callers
__all__ = ["AudioModel", "AudioTrainConfig", "AudioDataset", "load_audio_model",
           "load_audio_datasets", "train_audio", "evaluate_audio", "MODEL_NAME",
           "GENERIC_MODEL"]
