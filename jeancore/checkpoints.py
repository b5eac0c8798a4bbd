"""Checkpoint files: the one place that writes and reads them, and the loaders of trained and
shipped models.

Every file jeancore writes with weights is a dict with ``format`` (a name) and ``version``,
saved atomically (:func:`write_checkpoint`: a crash or Ctrl-C leaves the old file or the new
one) and read with ``torch.load(weights_only=True)`` (:func:`read_checkpoint`: no pickled
code runs; an unreadable file, another format or an unknown version is a one-line
:class:`~jeancore.errors.BadInputError`). The formats:

| format | written by | file |
|---|---|---|
| :data:`NERF` (``jeancore.nerf`` v2; v1 read and upgraded) | ``jean train`` | ``RUN/checkpoint.pt`` |
| :data:`EXPRESSION` (``jeancore.expression_transformer`` v1) | ``jean train-expression``, :func:`export_expression_model` | ``RUN/checkpoint.pt``, shipped ``expression_generic.pt`` |
| :data:`AUDIO_MODEL` (``jeancore.audio_model`` v1) | ``jean train-audio`` | ``RUN/model.pt``, shipped ``audio_generic.pt`` |
| :data:`AUDIO_STAGE` (``jeancore.audio_training`` v1) | ``jean train-audio`` | ``RUN/landmark_ae.pt``, ``RUN/audio_encoder.pt`` |

Loaders for inference (none of them imports :mod:`jeancore.train`):
:func:`load_audio_model`, :func:`load_expression_model` (and :func:`export_expression_model`),
:func:`read_nerf_checkpoint` (:func:`jeancore.nerf.load_nerf_run` builds a renderable run from
it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._assets import pretrained_path
from ._io import atomic_path
from .errors import BadInputError, ConfigError

__all__ = ["AUDIO_MODEL", "AUDIO_MODEL_NAME", "AUDIO_STAGE", "CheckpointFormat", "EXPRESSION",
           "GENERIC", "GENERIC_AUDIO_MODEL", "NERF", "NERF_CHECKPOINT_NAME", "check_expected",
           "cpu_state",
           "export_expression_model", "load_audio_model", "load_expression_model", "plain",
           "read_checkpoint", "read_nerf_checkpoint", "resolve_expression_path",
           "write_checkpoint"]


@dataclass(frozen=True)
class CheckpointFormat:
    """A kind of checkpoint file.

    Attributes:
        name: stored under ``"format"``.
        version: the version written.
        what: what the file is, for messages ("NeRF checkpoint").
        writer: what writes it, for messages ("`jean train`").
        readable: older versions :func:`read_checkpoint` accepts too (the caller upgrades).
        missing_hint: appended to the message of a missing file.
    """

    name: str
    version: int
    what: str
    writer: str
    readable: tuple = ()
    missing_hint: str = ""


NERF = CheckpointFormat("jeancore.nerf", 2, "NeRF checkpoint",
                        "`jean train` / jeancore.train.train_nerf", readable=(1,),
                        missing_hint=" (train one with `jean train`)")
EXPRESSION = CheckpointFormat("jeancore.expression_transformer", 1,
                              "expression-transformer checkpoint",
                              "jeancore.train.train_expression")
AUDIO_MODEL = CheckpointFormat("jeancore.audio_model", 1, "audio model",
                               "jeancore.train.train_audio")
AUDIO_STAGE = CheckpointFormat("jeancore.audio_training", 1, "audio training checkpoint",
                               "`jean train-audio`")

NERF_CHECKPOINT_NAME = "checkpoint.pt"
EXPRESSION_CHECKPOINT_NAME = "checkpoint.pt"
AUDIO_MODEL_NAME = "model.pt"
GENERIC = "generic"
"""Name of the shipped generic models (``load_audio_model(GENERIC)``,
``load_expression_model(GENERIC)``), see ``jeancore/pretrained/README.md``."""
GENERIC_AUDIO_MODEL = Path(__file__).resolve().parent / "pretrained" / "audio_generic.pt"
GENERIC_EXPRESSION_FILE = "expression_generic.pt"


# ---------------------------------------------------------------------------------------------
# writing and reading
# ---------------------------------------------------------------------------------------------

def write_checkpoint(path, fmt: CheckpointFormat, state: dict) -> Path:
    """Writes ``{"format": fmt.name, "version": fmt.version, **state}`` to ``path`` atomically
    (``torch.save`` to a temporary name beside it, then a rename); the folder is created.

    ``state`` must hold only tensors and plain Python types (see :func:`plain`), so that
    :func:`read_checkpoint` can load it with ``weights_only=True``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": fmt.name, "version": fmt.version, **state}, tmp)
    return path


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def read_checkpoint(path, fmt: CheckpointFormat) -> dict:
    """The dict in a checkpoint file of format ``fmt`` (``torch.load(weights_only=True)``, on
    the CPU).

    Raises:
        FileNotFoundError: no such file.
        BadInputError: not loadable with ``weights_only`` ("not a readable ..."), another
            format, or a version other than ``fmt.version`` and ``fmt.readable``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {fmt.what} at {path}{fmt.missing_hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is a bad input
        msg = str(e).splitlines()[0] if str(e) else ""
        raise BadInputError(f"{path} is not a readable {fmt.what} ({type(e).__name__}: {msg})"
                            ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt.name:
        raise BadInputError(f"{path} is not {_article(fmt.what)} {fmt.what} (written by "
                            f"{fmt.writer})")
    if ckpt.get("version") not in (fmt.version, *fmt.readable):
        raise BadInputError(f"{path}: unsupported {fmt.what} version {ckpt.get('version')!r}")
    return ckpt


def cpu_state(module: torch.nn.Module) -> dict:
    """A module's state dict with every tensor detached and on the CPU."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def plain(x):
    """A copy with only plain types (dicts, lists, numbers, strings): tuples become lists,
    numpy scalars numbers, paths strings (safe for ``weights_only`` loading)."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def _module_from(cls, config, state, path, name: str):
    """``cls.from_config(config)`` with ``state`` loaded; mismatches are BadInputError."""
    if not isinstance(config, dict):
        raise BadInputError(f"{path}: no valid {name} in the checkpoint")
    m = cls.from_config(config)
    try:
        m.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        raise BadInputError(f"{path}: the stored {name} weights do not fit its stored "
                            f"widths {config}: {str(e).splitlines()[0]}") from e
    return m


def check_expected(have: dict, expected: dict, path, what: str) -> None:
    """ConfigError when ``expected`` names unknown keys or values other than ``have``'s."""
    unknown = set(expected) - set(have)
    if unknown:
        raise ConfigError(f"unknown {what} settings {sorted(unknown)}; known: {sorted(have)}")
    diff = {k: (have[k], v) for k, v in expected.items() if plain(v) != plain(have[k])}
    if diff:
        raise ConfigError(f"{path} has other {what} widths than expected: " + ", ".join(
            f"{k}={h} (expected {w})" for k, (h, w) in diff.items()))


# ---------------------------------------------------------------------------------------------
# the expression transformer (Sec. 3.2)
# ---------------------------------------------------------------------------------------------

def resolve_expression_path(path=None) -> Path:
    """The checkpoint file meant by ``path``: None / ``"generic"`` -> the shipped generic
    model; a run directory -> its ``checkpoint.pt``; a file -> itself."""
    if path is None or str(path) == GENERIC:
        return pretrained_path(GENERIC_EXPRESSION_FILE)
    path = Path(path)
    return path / EXPRESSION_CHECKPOINT_NAME if path.is_dir() else path


def load_expression_model(path=None, *, device="cpu", **expected):
    """The trained :class:`~jeancore.models.ExpressionTransformer` of a checkpoint, in eval
    mode.

    Args:
        path: ``checkpoint.pt`` written by ``jeancore.train.train_expression`` (or its
            ``out_dir``), a file written by :func:`export_expression_model`, or None /
            ``"generic"``: the generic model shipped with jeancore (trained on the MEAD clips
            of M030 and W011; the paper trains one per identity -- fine-tune it with
            ``init="generic"`` when the identity has emotion pairs; see
            ``jeancore/pretrained/README.md``).
        device: where to put the model.
        **expected: widths the caller needs (e.g. ``in_dim=128, lip_dim=64``); a checkpoint
            with other values raises ConfigError.

    Raises:
        FileNotFoundError: no such file.
        BadInputError: not an expression-transformer checkpoint, or weights that do not fit
            its stored widths.
        ConfigError: unknown keys in ``expected``, or widths other than ``expected``.
    """
    from .models.expression import MODEL_CONFIG_KEYS, ExpressionTransformer

    path = resolve_expression_path(path)
    unknown = set(expected) - set(MODEL_CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"unknown model settings {sorted(unknown)}; known: "
                          f"{list(MODEL_CONFIG_KEYS)}")
    ckpt = read_checkpoint(path, EXPRESSION)
    cfg = ckpt.get("model_config")
    if not isinstance(cfg, dict) or set(cfg) != set(MODEL_CONFIG_KEYS):
        raise BadInputError(f"{path}: checkpoint has no valid model_config")
    model = _module_from(ExpressionTransformer, cfg, ckpt.get("model"), path,
                         "expression-transformer")
    check_expected(model.config(), expected, path, "model")
    return model.to(device).eval()


def export_expression_model(path, dst, *, half: bool = True, provenance: dict | None = None
                            ) -> Path:
    """Writes the weights of a trained expression transformer without the training state
    (optimizer, RNG): a small file for shipping or sharing, loadable by
    :func:`load_expression_model`.

    Args:
        path: a checkpoint or run directory (as :func:`load_expression_model`).
        dst: output file (written atomically).
        half: store the weights as float16 (half the size; loading converts back to
            float32; the codes change by about 1e-3 relative).
        provenance: free-form facts stored with the weights (training data, metrics).

    Raises:
        as :func:`load_expression_model`.
    """
    model = load_expression_model(path)
    dtype = torch.float16 if half else torch.float32
    return write_checkpoint(dst, EXPRESSION, {
        "model_config": model.config(),
        "model": {k: v.detach().to(dtype) if v.is_floating_point() else v
                  for k, v in model.state_dict().items()},
        "provenance": provenance or {}})


# ---------------------------------------------------------------------------------------------
# the audio side (Sec. 3.1)
# ---------------------------------------------------------------------------------------------

def load_audio_model(path=None, *, device="cpu"):
    """Loads an :class:`~jeancore.models.AudioModel` (eval mode).

    Args:
        path: None or ``"generic"``: the shipped generic model
            (``jeancore/pretrained/audio_generic.pt``); a run directory of
            ``jean train-audio`` (its ``model.pt``); or a model file.
        device: where to put the networks.

    Raises:
        FileNotFoundError: no such file / no ``model.pt`` in the run directory (an unfinished
            run: finish it with ``--resume``).
        BadInputError: not an audio-model file, or weights that do not fit their widths.
    """
    from .models.audio import AudioEncoder, LandmarkAutoencoder
    from .models.audio_model import AudioModel

    if path is None or str(path) == GENERIC:
        path = GENERIC_AUDIO_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"the shipped generic audio model {path} is missing; "
                                    "reinstall jeancore")
    path = Path(path)
    if path.is_dir():
        if not (path / AUDIO_MODEL_NAME).is_file():
            raise FileNotFoundError(f"{path} holds no {AUDIO_MODEL_NAME}: not a finished "
                                    "`jean train-audio` run (rerun it with --resume)")
        path = path / AUDIO_MODEL_NAME
    ckpt = read_checkpoint(path, AUDIO_MODEL)
    parts = []
    for key, cls, name in (("audio_encoder", AudioEncoder, "audio encoder"),
                           ("landmark_ae", LandmarkAutoencoder, "landmark autoencoder")):
        entry = ckpt.get(key)
        if not isinstance(entry, dict):
            raise BadInputError(f"{path}: no valid {name} in the checkpoint")
        parts.append(_module_from(cls, entry.get("config"), entry.get("state"), path, name))
    model = AudioModel(*parts, dict(ckpt.get("features") or {}), dict(ckpt.get("info") or {}))
    if model.features.get("dim") not in (None, model.audio_encoder.in_dim):
        raise BadInputError(f"{path}: feature width {model.features.get('dim')} does not match "
                            f"the encoder's {model.audio_encoder.in_dim}")
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# the NeRF (Sec. 3.3)
# ---------------------------------------------------------------------------------------------

# version 1 (before the backbone seam): AD-NeRF's settings were fields of the training config
# and the MLP's constructor arguments were stored as "mlp_config"
_V1_ADNERF_KEYS = ("n_coarse", "n_fine", "depth", "width", "skips", "pos_freqs", "dir_freqs",
                   "density_noise", "density_activation")
_V1_MODEL_BUFFERS = ("center", "radius")


def _upgrade_nerf_v1(ckpt: dict) -> dict:
    """A version-1 NeRF checkpoint in the version-2 layout (backbone ``"adnerf"``); the
    weights are unchanged (same module names)."""
    ckpt = dict(ckpt)
    tc = dict(ckpt["train_config"])
    adnerf = {k: tc.pop(k) for k in _V1_ADNERF_KEYS if k in tc}
    tc.update(backbone="adnerf", adnerf=adnerf)
    mlp = ckpt.pop("mlp_config")
    ckpt.update(version=NERF.version, upgraded_from=1, train_config=tc, backbone="adnerf",
                backbone_config=dict(adnerf), cond_dim=int(mlp["cond_dim"]))
    # one optimizer group held the NeRF and the conditioner's projection + attention; now the
    # backbone's groups come first, then the conditioner's: split the first group
    opt = ckpt.get("optimizer")
    if opt and len(opt.get("param_groups", ())) == 2:
        n = sum(1 for k in ckpt["model"] if k not in _V1_MODEL_BUFFERS)
        first, enc = opt["param_groups"]
        groups = [dict(first, params=first["params"][:n]),
                  dict(first, params=first["params"][n:]), enc]
        ckpt["optimizer"] = dict(opt, param_groups=groups)
    return ckpt


def read_nerf_checkpoint(path) -> dict:
    """The dict stored by ``jeancore.train.train_nerf`` (``torch.load(weights_only=True)``),
    in the version-2 layout: ``backbone`` (registry name), ``backbone_config``, ``cond_dim``,
    ``model`` (the backbone's state dict), ``conditioner_config`` / ``conditioner``,
    ``expression_config`` / ``expression`` / ``expression_codes``, ``train_config``,
    ``dataset``, ``step`` and the training state. Version-1 files (written before the
    backbone seam) are upgraded as AD-NeRF (``backbone="adnerf"``).

    Raises:
        FileNotFoundError: no such file (a run directory is looked into for checkpoint.pt).
        BadInputError: not a NeRF checkpoint, or an unsupported version.
    """
    path = Path(path)
    if path.is_dir():
        path = path / NERF_CHECKPOINT_NAME
    ckpt = read_checkpoint(path, NERF)
    if ckpt["version"] == 1:
        try:
            ckpt = _upgrade_nerf_v1(ckpt)
        except (KeyError, TypeError, ValueError) as e:
            raise BadInputError(f"{path}: a version-1 NeRF checkpoint without its "
                                f"{e} entry; train the run again") from e
    return ckpt
