"""The trained audio side of JEAN as one object for inference (Sec. 3.1): the audio encoder,
the landmark autoencoder and the kind of speech features they take.

:func:`jeancore.checkpoints.load_audio_model` loads one (a run of ``jean train-audio`` or the
shipped generic model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checkpoints import AUDIO_MODEL, cpu_state, plain, write_checkpoint
from ..errors import BadInputError
from .audio import AudioEncoder, LandmarkAutoencoder, normalize_landmarks

__all__ = ["FEATURE_KEYS", "AudioModel", "audio_features_of"]

FEATURE_KEYS = ("kind", "dim", "n_mels", "rate", "window")
"""The speech-feature settings a model and a dataset must share."""


def audio_features_of(meta: dict, where) -> dict:
    """The speech-feature description of a dataset's meta.json: ``kind``, ``dim``, ``n_mels``,
    ``rate`` (steps per second), ``window`` (steps per frame window).

    Raises:
        BadInputError: the dataset has no audio features (``--no-audio``).
    """
    audio = meta.get("audio")
    if not audio or not audio.get("features"):
        raise BadInputError(f"{where} has no audio features (it was preprocessed with "
                            f"--no-audio, e.g. a MEAD clip for the expression side); "
                            f"preprocess it again with its speech (`jean preprocess VIDEO "
                            f"--audio SPEECH`)")
    f = audio["features"]
    return {"kind": f.get("kind"), "dim": int(f.get("dim", audio["shape"][-1])),
            "n_mels": f.get("n_mels"), "rate": float(f.get("rate", 0.0)),
            "window": int(audio.get("window", audio["shape"][1]))}


@dataclass
class AudioModel:
    """The trained audio side of JEAN: audio encoder, landmark autoencoder and the kind of
    speech features they were trained on.

    Attributes:
        audio_encoder: :class:`~jeancore.models.audio.AudioEncoder` (e_a, Eq. 2).
        landmark_ae: :class:`~jeancore.models.audio.LandmarkAutoencoder` (e_f, e_m, Eq. 1).
        features: ``kind`` (e.g. "logmel"), ``dim`` (width D), ``n_mels``, ``rate`` (feature
            steps per second), ``window`` (steps per frame window), from the training
            datasets' meta.json.
        info: free-form provenance (training datasets, settings, metrics).
    """

    audio_encoder: AudioEncoder
    landmark_ae: LandmarkAutoencoder
    features: dict
    info: dict = field(default_factory=dict)

    def check_dataset(self, meta_or_dir) -> None:
        """Checks that a dataset's speech features are the kind this model takes.

        Args:
            meta_or_dir: a dataset folder (path) or its parsed meta.json (dict).

        Raises:
            BadInputError: the dataset has no audio features (``--no-audio``), or features of
                another kind, width, step rate or window than the model's.
        """
        if isinstance(meta_or_dir, dict):
            meta, where = meta_or_dir, "the dataset"
        else:
            from ..data.dataset import read_meta
            meta, where = read_meta(meta_or_dir), str(meta_or_dir)
        have = audio_features_of(meta, where)
        diff = []
        for k in FEATURE_KEYS:
            a, b = have.get(k), self.features.get(k)
            if a is None or b is None:
                continue
            if (isinstance(a, float) or isinstance(b, float)) and math.isclose(a, b):
                continue
            if a != b:
                diff.append(f"{k} {a!r} (model: {b!r})")
        if diff:
            raise BadInputError(f"{where} has other audio features than the audio model: "
                                + ", ".join(diff) + "; preprocess it with the model's "
                                f"features (--audio-features {self.features.get('kind')}) or "
                                "train an audio model on features like it")

    def to(self, device) -> AudioModel:
        self.audio_encoder.to(device)
        self.landmark_ae.to(device)
        return self

    def eval(self) -> AudioModel:
        self.audio_encoder.eval()
        self.landmark_ae.eval()
        return self

    @torch.no_grad()
    def audio_codes(self, features, batch_size: int = 4096) -> torch.Tensor:
        """e_a per frame: float [T, window, D] (numpy or torch) -> float32 tensor [T, 64] on
        the model's device (eval mode).

        Raises:
            BadInputError: features of another shape than the encoder's.
        """
        x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor)
                            else features)
        enc = self.audio_encoder
        was = enc.training
        enc.eval()
        try:
            if x.dim() != 3:
                raise BadInputError(f"audio features must be [T, window, D], got "
                                    f"{list(x.shape)}")
            return torch.cat([enc(x[s:s + batch_size].float())
                              for s in range(0, max(len(x), 1), batch_size)]) if len(x) \
                else torch.zeros(0, enc.out_dim)
        finally:
            enc.train(was)

    @torch.no_grad()
    def mouth_codes(self, landmarks) -> torch.Tensor:
        """e_m per frame: iBUG-68 landmarks float [T, 68, 2] (pixels) -> float32 [T, 64]."""
        pts = normalize_landmarks(landmarks)
        ae = self.landmark_ae
        was = ae.training
        ae.eval()
        try:
            return ae.encode(pts)[1]
        finally:
            ae.train(was)

    def state(self) -> dict:
        """The checkpoint dict of :meth:`save` (``torch.load(weights_only=True)``-safe)."""
        return {"audio_encoder": {"config": self.audio_encoder.config(),
                                  "state": cpu_state(self.audio_encoder)},
                "landmark_ae": {"config": self.landmark_ae.config(),
                                "state": cpu_state(self.landmark_ae)},
                "features": dict(self.features), "info": plain(self.info)}

    def save(self, path) -> None:
        """Writes the model atomically to ``path`` (a ``.pt`` file,
        :data:`jeancore.checkpoints.AUDIO_MODEL` format)."""
        write_checkpoint(path, AUDIO_MODEL, self.state())
