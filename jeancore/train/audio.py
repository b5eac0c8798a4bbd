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
exact resume), ``model.pt`` (the trained :class:`AudioModel`), ``tb/`` (TensorBoard),
``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_path, save_json
from ..errors import BadInputError, ConfigError
from ._common import check_ints, resolve_device, rng_state, set_rng_state
from ..models.audio import (AudioEncoder, LandmarkAutoencoder, info_nce, mouth_swap_loss,
                            normalize_landmarks)

__all__ = ["AudioModel", "AudioTrainConfig", "AudioDataset", "load_audio_model",
           "load_audio_datasets", "train_audio", "evaluate_audio", "MODEL_NAME",
           "GENERIC_MODEL"]

MODEL_NAME = "model.pt"
MODEL_FORMAT = "jeancore.audio_model"
STAGE_FORMAT = "jeancore.audio_training"
CHECKPOINT_VERSION = 1
_STAGE_FILES = {"landmark": "landmark_ae.pt", "audio": "audio_encoder.pt"}
_FEATURE_KEYS = ("kind", "dim", "n_mels", "rate", "window")
_PKG = Path(__file__).resolve().parents[1]
GENERIC_MODEL = _PKG / "pretrained" / "audio_generic.pt"
"""The shipped generic model (see jeancore/pretrained/README.md)."""


# ---------------------------------------------------------------------------------------------
# the model bundle
# ---------------------------------------------------------------------------------------------

def _features_of(meta: dict, where) -> dict:
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
        have = _features_of(meta, where)
        diff = []
        for k in _FEATURE_KEYS:
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
        return {"format": MODEL_FORMAT, "version": CHECKPOINT_VERSION,
                "audio_encoder": {"config": self.audio_encoder.config(),
                                  "state": _cpu_state(self.audio_encoder)},
                "landmark_ae": {"config": self.landmark_ae.config(),
                                "state": _cpu_state(self.landmark_ae)},
                "features": dict(self.features), "info": _plain(self.info)}

    def save(self, path) -> None:
        """Writes the model atomically to ``path`` (a ``.pt`` file)."""
        with atomic_path(Path(path)) as tmp:
            torch.save(self.state(), tmp)


def _plain(x):
    """JSON-like copy with only plain types (safe for weights_only loading)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def _cpu_state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _torch_load(path: Path, what: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is a bad input
        msg = str(e).splitlines()[0] if str(e) else ""
        raise BadInputError(f"{path} is not a readable {what} ({type(e).__name__}: {msg})"
                            ) from e


def _module_from(entry, cls, path, name):
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise BadInputError(f"{path}: no valid {name} in the checkpoint")
    m = cls.from_config(entry["config"])
    try:
        m.load_state_dict(entry["state"])
    except (RuntimeError, KeyError) as e:
        raise BadInputError(f"{path}: the stored {name} weights do not fit its stored "
                            f"widths: {str(e).splitlines()[0]}") from e
    return m


def load_audio_model(path=None, *, device="cpu") -> AudioModel:
    """Loads an :class:`AudioModel` (eval mode).

    Args:
        path: None or ``"generic"``: the shipped generic model
            (``jeancore/pretrained/audio_generic.pt``); a run directory of
            :func:`train_audio` (its ``model.pt``); or a model file.
        device: where to put the networks.

    Raises:
        FileNotFoundError: no such file / no ``model.pt`` in the run directory (an unfinished
            run: finish it with ``--resume``).
        BadInputError: not an audio-model file, or weights that do not fit their widths.
    """
    if path is None or str(path) == "generic":
        path = GENERIC_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"the shipped generic audio model {path} is missing; "
                                    "reinstall jeancore")
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_NAME).is_file():
            raise FileNotFoundError(f"{path} holds no {MODEL_NAME}: not a finished "
                                    "`jean train-audio` run (rerun it with --resume)")
        path = path / MODEL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no audio model at {path}")
    ckpt = _torch_load(path, "audio model")
    if not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT:
        raise BadInputError(f"{path} is not an audio model (written by jeancore.train."
                            f"train_audio)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise BadInputError(f"{path}: unsupported audio-model version {ckpt.get('version')!r}")
    model = AudioModel(_module_from(ckpt.get("audio_encoder"), AudioEncoder, path,
                                    "audio encoder"),
                       _module_from(ckpt.get("landmark_ae"), LandmarkAutoencoder, path,
                                    "landmark autoencoder"),
                       dict(ckpt.get("features") or {}), dict(ckpt.get("info") or {}))
    if model.features.get("dim") not in (None, model.audio_encoder.in_dim):
        raise BadInputError(f"{path}: feature width {model.features.get('dim')} does not match "
                            f"the encoder's {model.audio_encoder.in_dim}")
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

@dataclass
class AudioDataset:
    """One preprocessed video for the audio training (all frames loaded).

    Attributes:
        root: dataset folder; ``name``: its folder name; ``identity``: the speaker.
        landmarks: float32 [T, 51, 2] normalised landmarks (all frames).
        audio: float32 [T, window, D] speech-feature windows.
        val_start: first validation frame (frames ``val_start ..`` are the validation split).
        fps: frames per second; ``features``: see :class:`AudioModel`.
    """

    root: Path
    name: str
    identity: str
    landmarks: np.ndarray
    audio: np.ndarray
    val_start: int
    fps: float
    features: dict

    def split(self, which: str) -> np.ndarray:
        """Frame indices of ``"train"``, ``"val"`` or ``"all"``."""
        t = len(self.landmarks)
        return {"train": np.arange(0, self.val_start), "val": np.arange(self.val_start, t),
                "all": np.arange(t)}[which]


def _parse_source(src):
    """(path, identity or None) from a path, ``IDENTITY=PATH``, a (path, identity) pair or a
    dict with ``path`` / ``identity``."""
    if isinstance(src, dict):
        return Path(src["path"]), src.get("identity")
    if isinstance(src, (tuple, list)) and len(src) == 2:
        return Path(src[0]), src[1]
    s = str(src)
    if "=" in s and not Path(s).exists():
        ident, p = s.split("=", 1)
        if ident and p:
            return Path(p), ident
    return Path(s), None


def load_audio_datasets(sources) -> list[AudioDataset]:
    """Reads preprocessed datasets for the audio training / evaluation.

    Args:
        sources: dataset folders, as paths, ``"IDENTITY=PATH"`` strings, (path, identity)
            pairs, dicts or loaded :class:`AudioDataset` objects (kept as they are); a folder with a MEAD index (``mead_index.json``, written by
            ``jean preprocess-mead``) stands for all its clips with their identities. The
            identity of a plain folder defaults to its name.

    Returns:
        the datasets, in order.

    Raises:
        BadInputError: not a dataset, no audio features, files missing or inconsistent,
            datasets with different feature kinds / widths, no source.
    """
    from ..data.dataset import DatasetReader
    from ..data.mead import read_mead_index

    if isinstance(sources, (str, Path)):
        sources = [sources]
    items, ready = [], {}
    for src in sources:
        if isinstance(src, AudioDataset):  # already loaded (e.g. with another split point)
            ready[len(items)] = src
            items.append((src.root, src.identity))
            continue
        path, ident = _parse_source(src)
        if path.is_dir() and (path / "mead_index.json").is_file() \
                and not (path / "meta.json").is_file():
            for e in read_mead_index(path):
                items.append((path / e["dataset"], ident or e["identity"]))
        else:
            items.append((path, ident))
    if not items:
        raise BadInputError("no datasets given")
    out = []
    for i, (path, ident) in enumerate(items):
        if i in ready:
            out.append(ready[i])
            continue
        ds = DatasetReader(path)
        meta = ds.meta
        feats = _features_of(meta, path)
        n = ds.n_frames
        pts = np.asarray(ds.landmarks(), np.float32)
        audio = ds.audio_features().astype(np.float32, copy=False)
        if len(pts) != n or audio.shape[0] != n:
            raise BadInputError(f"{path}: landmarks ({len(pts)}) / audio features "
                                f"({audio.shape[0]}) do not have n_frames={n} rows")
        if audio.ndim != 3 or audio.shape[2] != feats["dim"] \
                or audio.shape[1] != feats["window"]:
            raise BadInputError(f"{path}: audio_features.npy is {list(audio.shape)}, meta.json "
                                f"says window {feats['window']} x {feats['dim']}")
        if not np.isfinite(audio).all():
            raise BadInputError(f"{path}: audio features contain NaN or infinite values")
        out.append(AudioDataset(path, path.name, str(ident or path.name),
                                normalize_landmarks(pts).numpy(), audio,
                                int(meta["split"]["val_start"]), float(meta["fps"]), feats))
    ref = out[0].features
    for d in out[1:]:
        diff = [f"{k}: {d.features[k]!r} vs {ref[k]!r}" for k in _FEATURE_KEYS
                if d.features.get(k) != ref.get(k)]
        if diff:
            raise BadInputError(f"datasets {out[0].root} and {d.root} have different audio "
                                f"features ({'; '.join(diff)}); preprocess them with the same "
                                "--audio-features")
    return out


class _Frames:
    """The training frames of all datasets, concatenated."""

    def __init__(self, datasets: list[AudioDataset], split: str = "train"):
        pts, aud, clip, frame = [], [], [], []
        for i, d in enumerate(datasets):
            idx = d.split(split)
            if len(idx) < 2:
                raise BadInputError(f"{d.root}: its {split} split has {len(idx)} frame(s); "
                                    "need at least 2")
            pts.append(d.landmarks[idx])
            aud.append(d.audio[idx])
            clip.append(np.full(len(idx), i))
            frame.append(idx)
        self.pts = torch.from_numpy(np.concatenate(pts))
        self.audio = torch.from_numpy(np.concatenate(aud))
        self.clip = np.concatenate(clip)
        self.frame = np.concatenate(frame)
        self.n = len(self.clip)
        starts = np.cumsum([0] + [len(d.split(split)) for d in datasets])
        self.ranges = [(int(starts[i]), int(starts[i + 1])) for i in range(len(datasets))]
        self.fps = [d.fps for d in datasets]
        ids = [d.identity for d in datasets]
        # global indices of the other videos of the same identity, per clip
        self.other = []
        for i, ident in enumerate(ids):
            others = [np.arange(*self.ranges[j]) for j in range(len(ids))
                      if j != i and ids[j] == ident]
            self.other.append(np.concatenate(others) if others else None)
        h = hashlib.sha256()
        for d in datasets:
            h.update(f"{d.root.resolve()}|{d.identity}|{len(d.landmarks)}|{d.val_start}".encode())
        h.update(self.pts.numpy().tobytes())
        self.fingerprint = h.hexdigest()

    def to(self, device):
        self.pts, self.audio = self.pts.to(device), self.audio.to(device)
        return self

    def partners(self, rng, anchors: np.ndarray) -> np.ndarray:
        """A random other frame of the same video for each anchor (global indices)."""
        out = np.empty_like(anchors)
        for i, (s, e) in enumerate(self.ranges):
            sel = self.clip[anchors] == i
            k = int(sel.sum())
            if not k:
                continue
            pos = anchors[sel] - s
            q = rng.integers(0, e - s - 1, size=k)
            out[sel] = s + q + (q >= pos)
        return out

    def negatives(self, rng, anchors: np.ndarray, k: int, gap_s: float):
        """K negatives per anchor: [n, K] global indices and per-anchor kind codes
        (0 other video, 1 same video >= gap, 2 same video, farthest frame: too short)."""
        out = np.empty((len(anchors), k), np.int64)
        kind = np.empty(len(anchors), np.int64)
        for i, (s, e) in enumerate(self.ranges):
            sel = np.nonzero(self.clip[anchors] == i)[0]
            if not len(sel):
                continue
            if self.other[i] is not None:
                pool = self.other[i]
                out[sel] = pool[rng.integers(0, len(pool), size=(len(sel), k))]
                kind[sel] = 0
                continue
            n = e - s
            gap = max(1, int(round(gap_s * self.fps[i])))
            p = (anchors[sel] - s)[:, None]
            left = np.maximum(p - gap + 1, 0)
            right = np.maximum(n - p - gap, 0)
            count = left + right
            u = np.floor(rng.random((len(sel), k)) * np.maximum(count, 1)).astype(np.int64)
            q = np.where(u < left, u, p + gap + (u - left))
            far = np.where(p >= n - 1 - p, 0, n - 1)
            ok = count > 0
            q = np.where(ok, q, far)
            out[sel] = s + q
            kind[sel] = np.where(ok[:, 0], 1, 2)
        return out, kind


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------

@dataclass
class AudioTrainConfig:
    """Settings of :func:`train_audio` (paper values where the paper gives them).

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


# ---------------------------------------------------------------------------------------------
# distributed helpers
# ---------------------------------------------------------------------------------------------

def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def _setup_distributed(device_name: str):
    """Initialises the process group under torchrun; returns (rank, world, device, created)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        use_cuda = device_name != "cpu" and not device_name.startswith("cpu") \
            and torch.cuda.is_available()
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        created = True
    else:
        created = False
    d = _dist()
    rank, world = (d.get_rank(), d.get_world_size()) if d else (0, 1)
    if device_name == "auto":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) \
            if torch.cuda.is_available() else torch.device("cpu")
    else:
        device = resolve_device(device_name)
        if device.type == "cuda" and d is not None and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return rank, world, device, created


def _allreduce_sum(values: list[float], device) -> list[float]:
    d = _dist()
    if d is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    d.all_reduce(t)
    return t.tolist()


def evaluate_audio(model: AudioModel, datasets, *, split: str = "val", n_candidates: int = 32,
                   trials: int = 10, seed: int = 0) -> dict:
    """Audio-to-mouth retrieval and the landmark-autoencoder swap test on a split.

    Retrieval (:func:`jeancore.metrics.audio.retrieval_accuracy`): per dataset, the audio
    code e_a of each frame of the split queries the mouth codes e_m of ``n_candidates``
    frames of the same split (all of them when fewer), top-1 / top-5 accuracy vs chance.
    Swap test (:func:`jeancore.metrics.audio.swap_errors`): frame A = each frame of the split,
    B = a random other frame of the same split; errors in inter-ocular units.

    Args:
        model: :class:`AudioModel`.
        datasets: sources as :func:`load_audio_datasets` takes, or loaded
            :class:`AudioDataset` objects.
        split: "val" (default: speech not seen in training), "train" or "all".

    Returns:
        dict: ``datasets`` (per dataset: frames, top1, top5, chance_top1, chance_top5,
        n_candidates, swap errors), ``overall`` (query-weighted means, ``top1_over_chance``),
        ``swap`` (frame-weighted means).

    Raises:
        BadInputError: see :func:`load_audio_datasets`; a dataset whose features differ from
            the model's; a split with fewer than 2 frames.
    """
    from ..metrics.audio import retrieval_accuracy, swap_errors

    if not (isinstance(datasets, (list, tuple)) and datasets
            and all(isinstance(d, AudioDataset) for d in datasets)):
        datasets = load_audio_datasets(datasets)
    p = next(model.audio_encoder.parameters())
    per, sums, swap_sums, n_q, n_f = {}, {}, {}, 0, 0
    rng = np.random.default_rng(seed)
    for d in datasets:
        model.check_dataset({"audio": {"features": d.features, "window": d.features["window"],
                                       "shape": list(d.audio.shape)}})
        idx = d.split(split)
        if len(idx) < 2:
            raise BadInputError(f"{d.root}: its {split} split has {len(idx)} frame(s)")
        e_a = model.audio_codes(torch.from_numpy(d.audio[idx]).to(p.device))
        pts = torch.from_numpy(d.landmarks[idx]).to(p.device)
        ae = model.landmark_ae
        was = ae.training
        ae.eval()
        e_m = ae.encode(pts)[1]
        ae.train(was)
        r = retrieval_accuracy(e_a, e_m, n_candidates=n_candidates, trials=trials, seed=seed)
        q = rng.integers(0, len(idx) - 1, size=len(idx))
        partner = q + (q >= np.arange(len(idx)))
        s = swap_errors(ae, pts, pts[torch.from_numpy(partner).to(p.device)])
        key = d.name if d.name not in per else f"{d.name}#{len(per)}"
        per[key] = {"identity": d.identity, "frames": int(len(idx)), **r, **s}
        for k in ("top1", "top5", "chance_top1", "chance_top5"):
            sums[k] = sums.get(k, 0.0) + r[k] * r["queries"]
        for k, v in s.items():
            swap_sums[k] = swap_sums.get(k, 0.0) + v * len(idx)
        n_q += r["queries"]
        n_f += len(idx)
    overall = {k: v / n_q for k, v in sums.items()}
    overall["top1_over_chance"] = overall["top1"] / overall["chance_top1"]
    overall["queries"] = n_q
    return {"split": split, "datasets": per, "overall": overall,
            "swap": {k: v / n_f for k, v in swap_sums.items()}}


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------

def train_audio(datasets, out_dir, config: AudioTrainConfig | None = None, *,
                resume: bool = False, progress: bool = True, evaluate: bool = True) -> dict:
    """Trains the landmark autoencoder (stage 1, Eq. 1) then the audio encoder (stage 2,
    InfoNCE, Eq. 2) on the training splits of ``datasets``; see the module docstring.

    Runs as one process, or under ``torchrun --nproc_per_node=K`` with DDP (every process
    calls this with the same arguments).

    Args:
        datasets: sources as :func:`load_audio_datasets` takes (at least one).
        out_dir: run directory (created).
        config: :class:`AudioTrainConfig` (default: paper settings).
        resume: continue from the checkpoints in ``out_dir`` (same datasets, widths, batch
            size, seed; epochs and max_steps may grow).
        progress: tqdm progress bars (rank 0).
        evaluate: evaluate on the validation splits at the end and write ``metrics.json``.

    Returns:
        dict: per stage ``step``, ``loss`` (last logged global mean), ``history`` (this call's
        ``(step, loss)``), negative kinds used, ``seconds``; ``model`` (path of model.pt);
        ``metrics`` (the evaluation, when ``evaluate``).

    Raises:
        BadInputError: see :func:`load_audio_datasets`.
        ConfigError: bad settings; resume with other widths / order settings.
        FileNotFoundError: resume without checkpoints.
    """
    config = AudioTrainConfig() if config is None else config
    if not isinstance(config, AudioTrainConfig):
        raise ConfigError(f"config must be an AudioTrainConfig, got {type(config).__name__}")
    config.validate()
    data = load_audio_datasets(datasets)
    out_dir = Path(out_dir)
    if resume and not any((out_dir / f).is_file() for f in _STAGE_FILES.values()):
        raise FileNotFoundError(f"nothing to resume in {out_dir}: no {_STAGE_FILES['landmark']}")
    rank, world, device, created = _setup_distributed(config.device)
    if config.batch_size < world:
        raise ConfigError(f"batch_size ({config.batch_size}) must be >= the number of "
                          f"processes ({world})")
    caller_np, caller_py = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return _train_all(data, out_dir, config, resume, progress, evaluate, rank, world,
                              device)
    finally:
        np.random.set_state(caller_np)
        random.setstate(caller_py)
        if created:
            import torch.distributed as dist
            dist.destroy_process_group()


def _train_all(data, out_dir, config, resume, progress, evaluate, rank, world, device):
    import time

    frames = _Frames(data, "train")
    frames.to(device)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    result = {"datasets": [{"path": str(d.root), "identity": d.identity,
                            "train_frames": int(d.val_start),
                            "val_frames": int(len(d.landmarks) - d.val_start)} for d in data],
              "world_size": world}
    features = data[0].features
    in_dim, window = features["dim"], features["window"]

    # ---- stage 1: landmark autoencoder
    torch.manual_seed(config.seed)
    ae = LandmarkAutoencoder(hidden=tuple(config.hidden), code_dim=config.code_dim).to(device)
    ae.set_normalization(frames.pts)  # data statistics (a resume loads the same from the ckpt)
    t0 = time.time()
    result["landmark"] = _run_stage(
        "landmark", ae, frames, config, out_dir, resume, progress, rank, world, device, data)
    result["landmark"]["seconds"] = time.time() - t0

    # ---- stage 2: audio encoder on the frozen landmark encoder's mouth codes
    ae.eval()
    if config.center_codes:  # exact re-parametrisation, redone identically on resume
        ae.center_codes(frames.pts, scale=config.scale_codes)
    for prm in ae.parameters():
        prm.requires_grad_(False)
    with torch.no_grad():
        e_m = torch.cat([ae.encode(frames.pts[s:s + 8192])[1]
                         for s in range(0, frames.n, 8192)])
    torch.manual_seed(config.seed + 1)
    enc = AudioEncoder(in_dim, window, config.audio_dim).to(device)
    t0 = time.time()
    result["audio"] = _run_stage(
        "audio", enc, frames, config, out_dir, resume, progress, rank, world, device, data,
        e_m=e_m, ae=ae)
    result["audio"]["seconds"] = time.time() - t0

    model = AudioModel(enc, ae, dict(features), {
        "datasets": result["datasets"], "config": dataclasses.asdict(config),
        "negatives_used": result["audio"].get("negative_kinds")})
    model_path = out_dir / MODEL_NAME
    if rank == 0:
        model.save(model_path)
    result["model"] = str(model_path)
    if evaluate:
        metrics = evaluate_audio(model.eval(), data, trials=config.eval_trials)
        result["metrics"] = metrics
        if rank == 0:
            save_json(out_dir / "metrics.json", {
                "evaluation": metrics, "datasets": result["datasets"],
                "training": {s: {k: v for k, v in result[s].items() if k != "history"}
                             for s in ("landmark", "audio")},
                "world_size": world, "config": dataclasses.asdict(config)})
    d = _dist()
    if d is not None:
        d.barrier()
    return result


def _stage_total(stage, config, n, world):
    bs = config.batch_size
    spe = n // bs + (1 if n % bs >= world else 0)  # a tail smaller than the world is dropped
    spe = max(spe, 1)
    epochs = config.ae_epochs if stage == "landmark" else config.audio_epochs
    total = epochs * spe
    if config.max_steps is not None:
        total = min(total, int(config.max_steps))
    return spe, total


def _read_stage(path: Path, stage: str) -> dict:
    ckpt = _torch_load(path, "audio training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != STAGE_FORMAT \
            or ckpt.get("stage") != stage:
        raise BadInputError(f"{path} is not a {stage}-stage checkpoint of jean train-audio")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise BadInputError(f"{path}: unsupported checkpoint version {ckpt.get('version')!r}")
    return ckpt


def _run_stage(stage, model, frames, config, out_dir, resume, progress, rank, world, device,
               data, e_m=None, ae=None):
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    from ..metrics.audio import retrieval_accuracy, swap_errors

    ckpt_path = out_dir / _STAGE_FILES[stage]
    spe, total = _stage_total(stage, config, frames.n, world)
    bs = config.batch_size
    if stage == "landmark":
        opt = torch.optim.Adam(model.parameters(), lr=config.ae_lr,
                               weight_decay=config.ae_weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=config.lr,
                               weight_decay=config.audio_weight_decay)
    step = 0
    kinds = np.zeros(3, np.int64)
    last: dict = {}
    ckpt = _read_stage(ckpt_path, stage) if resume and ckpt_path.is_file() else None
    anchors = None
    if e_m is not None:
        anchors = hashlib.sha256(e_m.detach().cpu().numpy().tobytes()).hexdigest()
        if ckpt is not None and ckpt.get("anchor_fingerprint") != anchors:
            # stage 1 changed since (it was resumed further): the old stage 2 is stale
            ckpt = None
    if ckpt is not None:
        if ckpt.get("model_config") != model.config():
            raise ConfigError(f"cannot resume from {ckpt_path}: other widths "
                              f"{ckpt.get('model_config')} (now {model.config()})")
        old = ckpt.get("order", {})
        now = {"batch_size": bs, "seed": config.seed, "n_frames": frames.n}
        if old != now:
            raise ConfigError(f"cannot resume from {ckpt_path} with other sample-order "
                              f"settings or data: {old} (now {now})")
        if ckpt.get("data_fingerprint") != frames.fingerprint:
            raise BadInputError(f"cannot resume from {ckpt_path}: the training data differ "
                                "from the checkpoint's")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        kinds = np.asarray(ckpt.get("negative_kinds", [0, 0, 0]), np.int64)
        last = dict(ckpt.get("metrics", {}))
        set_rng_state(ckpt["rng"], device)
    for g in opt.param_groups:  # settings may change on resume
        g["weight_decay"] = config.ae_weight_decay if stage == "landmark" \
            else config.audio_weight_decay

    wrapped = _SwapStep(model) if stage == "landmark" else model
    train_model = DDP(wrapped) if _dist() is not None else wrapped
    # one TensorBoard folder per stage (purge_step hides events of a killed run logged after
    # the checkpoint, or all old events of a fresh run)
    writer = SummaryWriter(str(out_dir / "tb" / stage), purge_step=step + 1 if step else 0) \
        if rank == 0 else None

    def save():
        if rank != 0:
            return
        state = {"format": STAGE_FORMAT, "version": CHECKPOINT_VERSION, "stage": stage,
                 "model_config": model.config(), "model": _cpu_state(model),
                 "optimizer": opt.state_dict(), "step": step, "total": total,
                 "steps_per_epoch": spe,
                 "order": {"batch_size": bs, "seed": config.seed, "n_frames": frames.n},
                 "data_fingerprint": frames.fingerprint, "rng": rng_state(device),
                 "negative_kinds": [int(k) for k in kinds], "metrics": dict(last),
                 "anchor_fingerprint": anchors,
                 "features": data[0].features,
                 "train_config": _plain(dataclasses.asdict(config))}
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    # validation data (rank 0 only, no collectives)
    val_pts, val_aud = [], []
    if rank == 0:
        for d in data:
            idx = d.split("val")
            if len(idx) >= 2:
                val_pts.append(torch.from_numpy(d.landmarks[idx]).to(device))
                val_aud.append(torch.from_numpy(d.audio[idx]).to(device))

    def validate():
        if rank != 0 or not val_pts:
            return {}
        model.eval()
        try:
            with torch.no_grad():
                if stage == "landmark":
                    res = [swap_errors(model, p, p.roll(len(p) // 2, 0)) for p in val_pts]
                    return {f"val_{k}": float(np.mean([r[k] for r in res]))
                            for k in ("mouth_error", "eye_error", "recon_error")}
                top1 = []
                for p, a in zip(val_pts, val_aud):
                    r = retrieval_accuracy(model(a), ae.encode(p)[1], trials=3,
                                           seed=config.seed)
                    top1.append(r["top1"] / r["chance_top1"])
                return {"val_top1_over_chance": float(np.mean(top1))}
        finally:
            model.train()

    history = []
    acc_loss, acc_n = 0.0, 0
    perm_epoch = -1
    plan = None
    model.train()
    lr0, lr1 = config.lr, config.lr_end
    bar = tqdm(total=total, initial=min(step, total), disable=not progress or rank != 0,
               unit="step", desc="landmark autoencoder" if stage == "landmark"
               else "audio encoder", dynamic_ncols=True)
    try:
        while step < total:
            epoch, k = divmod(step, spe)
            if epoch != perm_epoch:
                rng = np.random.default_rng([config.seed, 1 if stage == "landmark" else 2,
                                             epoch])
                order = rng.permutation(frames.n)
                if stage == "landmark":
                    plan = (order, frames.partners(rng, order),
                            rng.random(frames.n) < config.swap_prob)
                else:
                    neg, kind = frames.negatives(rng, order, config.negatives,
                                                 config.min_negative_gap_s)
                    plan = (order, neg, kind)
                perm_epoch = epoch
            lo, hi = k * bs, min((k + 1) * bs, frames.n)
            n_global = hi - lo
            parts = np.array_split(np.arange(lo, hi), world)
            mine = parts[rank]
            n_local = len(mine)
            weight = n_local / n_global * world
            if stage == "landmark":
                order, partner, swap = plan
                a = torch.from_numpy(order[mine]).to(device)
                b = torch.from_numpy(partner[mine]).to(device)
                s = torch.from_numpy(swap[mine]).to(device)
                ra, rb, ta, tb = train_model(frames.pts[a], frames.pts[b], s)
                loss = mouth_swap_loss(ra, rb, ta, tb)
            else:
                for g in opt.param_groups:
                    g["lr"] = lr0 * (lr1 / lr0) ** (step / max(total - 1, 1))
                order, neg, kind = plan
                a = torch.from_numpy(order[mine]).to(device)
                ng = torch.from_numpy(neg[mine]).to(device)          # [n, K]
                kk = ng.shape[1]
                codes = train_model(torch.cat([frames.audio[a],
                                               frames.audio[ng.flatten()]]))
                e_pos, e_neg = codes[:n_local], codes[n_local:].view(n_local, kk, -1)
                loss = info_nce(e_m[a], e_pos, e_neg, tau=config.tau, in_batch=config.in_batch)
                kinds += np.bincount(kind[lo:hi], minlength=3)  # global batch, every rank
            opt.zero_grad(set_to_none=True)
            (loss * weight).backward()
            opt.step()
            step += 1
            lsum, = _allreduce_sum([float(loss.detach()) * n_local], device)
            lval = lsum / n_global
            if not math.isfinite(lval):
                raise FloatingPointError(f"non-finite loss at step {step} of the {stage} "
                                         "stage; lower the learning rate or check the data")
            history.append((step, lval))
            acc_loss, acc_n = acc_loss + lval, acc_n + 1
            last["loss"] = lval
            if writer is not None and (step % config.log_every == 0 or step == total):
                writer.add_scalar(f"{stage}/loss", acc_loss / acc_n, step)
                if stage == "audio":
                    writer.add_scalar("audio/lr", opt.param_groups[0]["lr"], step)
                acc_loss, acc_n = 0.0, 0
            if k + 1 == spe or step == total:
                v = validate()
                last.update(v)
                if writer is not None:
                    for key, val in v.items():
                        writer.add_scalar(f"{stage}/{key}", val, step)
            bar.update(1)
            bar.set_postfix(loss=f"{lval:.4f}", epoch=epoch + 1)
            if step % config.checkpoint_every == 0 or step == total:
                save()
        if step == 0 and ckpt is None:
            save()  # max_steps=0: still leave a loadable (untrained) checkpoint
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    d = _dist()
    if d is not None:  # every rank's model is the same; make sure the checkpoint is written
        d.barrier()
    out = {"step": step, "steps_per_epoch": spe, "history": history, **last}
    if stage == "audio":
        total_k = int(kinds.sum()) or 1
        out["negative_kinds"] = {"other_video": int(kinds[0]), "same_video_far": int(kinds[1]),
                                 "same_video_farthest": int(kinds[2]),
                                 "fraction_other_video": float(kinds[0] / total_k)}
    return out


class _SwapStep(torch.nn.Module):
    """``LandmarkAutoencoder.swap_forward`` as a module's forward, so DDP can wrap it."""

    def __init__(self, ae: LandmarkAutoencoder):
        super().__init__()
        self.ae = ae

    def forward(self, pts_a, pts_b, swap):
        return self.ae.swap_forward(pts_a, pts_b, swap)
