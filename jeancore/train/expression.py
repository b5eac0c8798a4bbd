"""Training loop of the expression transformer (JEAN Sec. 3.2, Eq. 4; suppl. 8.3).

Input: pairs of per-frame emotion-feature sequences of one identity saying one sentence in two
emotions, already DTW-aligned to a common length (Eq. 3; see :mod:`jeancore.data.pairs`).
Training samples windows of omega consecutive aligned frames from every pair, draws the
expression swap of each window with probability delta, and minimises the L1 of Eq. 4 (plus a
small END-token term, see :mod:`jeancore.models.expression`) with Adam.

Outputs in ``out_dir``: ``checkpoint.pt`` (atomic, every ``checkpoint_every`` steps, at the
end and on Ctrl-C; loadable with ``torch.load(weights_only=True)``; format
``jeancore.expression_transformer``, :mod:`jeancore.checkpoints`), TensorBoard scalars in
``tb/`` (the run skeleton :mod:`jeancore.train._run`). The trained model loads with
:func:`jeancore.checkpoints.load_expression_model`.

Exact resume: the window order of epoch e is a permutation drawn from ``(seed, e)``; swaps and
dropout use the global torch RNG, whose state (with numpy's and Python's) is stored in the
checkpoint, so a run resumed from step k takes the same steps k+1, k+2, ... as an uninterrupted
run (bit-identical on one machine and device). The caller's RNG states are restored when
:func:`train_expression` returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import (EXPRESSION, EXPRESSION_CHECKPOINT_NAME, GENERIC, cpu_state,
                           export_expression_model, load_expression_model, read_checkpoint,
                           resolve_expression_path)
from ..errors import BadInputError, ConfigError
from ..models.expression import MODEL_CONFIG_KEYS, ExpressionTransformer, expression_loss
from ._run import (TrainingRun, check_ints, check_unchanged, isolated_rng, resolve_device,
                   rng_state, set_rng_state)

# export_expression_model, load_expression_model and resolve_expression_path live in
# jeancore.checkpoints (inference must not import training); re-exported here
__all__ = ["CHECKPOINT_NAME", "GENERIC", "ExpressionTrainConfig", "evaluate_expression",
           "export_expression_model", "load_expression_model", "resolve_expression_path",
           "train_expression"]

CHECKPOINT_NAME = EXPRESSION_CHECKPOINT_NAME

# settings that fix the order of the training samples: a resume must keep them
_ORDER_KEYS = ("window", "stride", "batch_size", "seed")


@dataclass
class ExpressionTrainConfig:
    """Settings of :func:`train_expression` (paper values where the paper gives them).

    Windows of ``window`` aligned frames start every ``stride`` frames of each pair (the last
    window of a pair always ends at its last frame; a pair shorter than omega gives one
    window padded at the end). The widths are those of
    :class:`~jeancore.models.ExpressionTransformer`; with ``init`` the model takes the
    checkpoint's widths instead (the width settings are ignored) and its ``in_dim`` must
    match the data.
    """

    epochs: int = 20
    """Training epochs (every window once per epoch)."""
    batch_size: int = 256
    """Windows per step."""
    lr: float = 1e-3
    """Adam learning rate (the paper: Adam "with default parameters")."""
    weight_decay: float = 1e-5
    """Adam weight decay."""
    swap_prob: float = 0.8
    """delta: probability of exchanging the expression codes of A and B (Eq. 4)."""
    end_weight: float = 0.1
    """Weight of the END-token BCE next to Eq. 4's L1."""
    max_steps: int | None = None
    """Stop after this many steps in all (None: epochs full epochs)."""
    window: int = 8
    """omega: frames per window."""
    stride: int = 1
    """Frames between the starts of consecutive windows of a pair."""
    in_dim: int | None = None
    """Width of the emotion features (None: the data's)."""
    hidden: int = 512
    """Width of the input / output MLPs."""
    d_model: int = 128
    """Transformer width (e_l and e_e together)."""
    n_layers: int = 3
    """Encoder and decoder layers."""
    n_heads: int = 8
    """Attention heads."""
    ff_dim: int = 2048
    """Transformer feed-forward width."""
    dropout: float = 0.2
    """Dropout of the transformer layers."""
    lip_dim: int = 64
    """Width of the lip-motion code e_l (e_e gets d_model - lip_dim)."""
    init: str | None = None
    """Weights to fine-tune from: None (random), 'generic' (the shipped model, trained on MEAD
    M030 + W011) or a checkpoint / run directory."""
    seed: int = 0
    """Seed of the initialisation, the window order, the swaps and the dropout."""
    device: str = "auto"
    """Torch device ('auto': CUDA when available, else CPU)."""
    log_every: int = 10
    """Steps between TensorBoard training scalars."""
    checkpoint_every: int = 200
    """Steps between checkpoints (also at the end and on Ctrl-C)."""
    eval_batch_size: int = 1024
    """Windows per validation pass."""

    def validate(self) -> None:
        """Raises ConfigError for out-of-range settings (widths are checked by the model)."""
        check_ints(self, ("epochs", "batch_size", "window", "stride", "log_every",
                          "checkpoint_every", "eval_batch_size"))
        check_ints(self, ("max_steps",), 0, optional=True)
        check_ints(self, ("seed",), 0)
        if not 0.0 <= self.swap_prob <= 1.0:
            raise ConfigError(f"swap_prob must be in [0, 1], got {self.swap_prob!r}")
        if not self.lr > 0 or not self.weight_decay >= 0 or not self.end_weight >= 0:
            raise ConfigError("lr must be > 0, weight_decay and end_weight >= 0")

    def model_config(self, in_dim: int) -> dict:
        """The model's constructor arguments for data of width ``in_dim``."""
        return {k: (in_dim if k == "in_dim" else getattr(self, k)) for k in MODEL_CONFIG_KEYS}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def _pair_arrays(pair, i: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    def get(key):
        if isinstance(pair, dict):
            if key not in pair:
                raise BadInputError(f"{what}[{i}] has no {key!r} entry (need aligned 'a' and "
                                    f"'b' feature arrays)")
            return pair[key]
        if not hasattr(pair, key):
            raise BadInputError(f"{what}[{i}] ({type(pair).__name__}) has no attribute "
                                f"{key!r} (need aligned 'a' and 'b' feature arrays)")
        return getattr(pair, key)

    out = []
    for key in ("a", "b"):
        v = get(key)
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise BadInputError(f"{what}[{i}].{key} is not a numeric array "
                                f"({type(v).__name__})") from e
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise BadInputError(f"{what}[{i}].{key} must be [N >= 1, D >= 1] features, got "
                                f"shape {list(arr.shape)}")
        if not np.isfinite(arr).all():
            raise BadInputError(f"{what}[{i}].{key} contains NaN or infinite values")
        out.append(arr)
    a, b = out
    if a.shape[1] != b.shape[1]:
        raise BadInputError(f"{what}[{i}]: a and b have different feature widths "
                            f"({a.shape[1]} and {b.shape[1]})")
    if a.shape[0] != b.shape[0]:
        raise BadInputError(f"{what}[{i}]: a and b have different lengths ({a.shape[0]} and "
                            f"{b.shape[0]}); align them with DTW first (jeancore.ops.align)")
    return a, b


class _Windows:
    """All windows of a list of aligned pairs: features packed in one tensor per side, each
    pair followed by ``window`` zero rows, windows as (start row, valid frames)."""

    def __init__(self, pairs, window: int, stride: int, what: str, in_dim: int | None):
        if pairs is None or isinstance(pairs, (str, bytes, dict, np.ndarray, torch.Tensor)):
            raise BadInputError(f"{what} must be a list of aligned pairs (dicts or objects "
                                f"with 'a' and 'b'), got {type(pairs).__name__}")
        pairs = list(pairs)
        if not pairs:
            raise BadInputError(f"{what} is empty: need at least one aligned pair")
        arrays = [_pair_arrays(p, i, what) for i, p in enumerate(pairs)]
        widths = {a.shape[1] for a, _ in arrays}
        if len(widths) > 1:
            raise BadInputError(f"{what} have different feature widths: {sorted(widths)}")
        self.dim = widths.pop()
        if in_dim is not None and self.dim != in_dim:
            raise BadInputError(f"{what} have {self.dim}-d features, the model takes "
                                f"{in_dim}-d")
        rows_a, rows_b, starts, n_valid = [], [], [], []
        h = hashlib.sha256()
        off = 0
        pad = np.zeros((window, self.dim), np.float32)
        for a, b in arrays:
            n = a.shape[0]
            s = list(range(0, max(n - window, 0) + 1, stride))
            if n > window and s[-1] != n - window:
                s.append(n - window)
            starts += [off + x for x in s]
            n_valid += [min(window, n - x) for x in s]
            rows_a += [a, pad]
            rows_b += [b, pad]
            off += n + window
            h.update(np.asarray(a.shape, np.int64).tobytes())
            h.update(a.tobytes())
            h.update(b.tobytes())
        self.a = torch.from_numpy(np.concatenate(rows_a))
        self.b = torch.from_numpy(np.concatenate(rows_b))
        self.starts = torch.tensor(starts, dtype=torch.int64)
        self.n_valid = torch.tensor(n_valid, dtype=torch.int64)
        self.window = window
        self.fingerprint = h.hexdigest()
        self.n_frames = int(sum(a.shape[0] for a, _ in arrays))

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def to(self, device) -> _Windows:
        self.a, self.b = self.a.to(device), self.b.to(device)
        self.starts, self.n_valid = self.starts.to(device), self.n_valid.to(device)
        return self

    def batch(self, idx: torch.Tensor):
        """(xa, xb [n, w, D], pad_mask [n, w] bool or None when nothing is padded)."""
        idx = idx.to(self.starts.device)
        ar = torch.arange(self.window, device=self.starts.device)
        rows = self.starts[idx][:, None] + ar
        pad = ar[None] >= self.n_valid[idx][:, None]
        return self.a[rows], self.b[rows], (pad if bool(pad.any()) else None)


@torch.no_grad()
def _evaluate(model: ExpressionTransformer, windows: _Windows, batch_size: int) -> dict:
    was_training = model.training
    model.eval()
    sums = {"l1": 0.0, "l1_swap": 0.0}
    total = 0
    try:
        for s in range(0, len(windows), batch_size):
            idx = torch.arange(s, min(len(windows), s + batch_size))
            xa, xb, pm = windows.batch(idx)
            n = float(windows.n_valid[idx.to(windows.n_valid.device)].sum())
            for key, swap in (("l1", False), ("l1_swap", True)):
                sums[key] += float(expression_loss(model(xa, xb, pm, swap), pm)["l1"]) * n
            total += n
    finally:
        model.train(was_training)
    return {k: v / total for k, v in sums.items()}


def evaluate_expression(model: ExpressionTransformer, pairs, *, window: int | None = None,
                        stride: int = 1, batch_size: int = 1024) -> dict:
    """Eq. 4's L1 of a model on aligned pairs, in eval mode (no dropout), teacher forcing.

    Returns:
        {"l1": no swap, "l1_swap": every window's expression code exchanged}: the sum of the
        A and B mean absolute errors, averaged over all valid frames of all windows.

    Raises:
        BadInputError: as :func:`train_expression` for bad pairs.
    """
    w = model.window if window is None else int(window)
    p = next(model.parameters())
    wins = _Windows(pairs, w, int(stride), "pairs", model.in_dim).to(p.device)
    return _evaluate(model, wins, int(batch_size))


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------

def train_expression(pairs, out_dir, config: ExpressionTrainConfig | None = None, *,
                     val_pairs=None, resume: bool = False, progress: bool = True) -> dict:
    """Trains one (identity-specific) expression transformer (Sec. 3.2, suppl. 8.3).

    Args:
        pairs: list of aligned pairs: dicts or objects with ``a`` and ``b``, float arrays
            [N, D] (numpy or torch) of equal shape, frame t of ``a`` aligned with frame t of
            ``b`` (Eq. 3); other keys (``emotion_a``, ``emotion_b``, ``identity``) are ignored.
        out_dir: output folder (created): ``checkpoint.pt``, ``tb/``.
        config: :class:`ExpressionTrainConfig` (default: paper settings).
        val_pairs: optional aligned pairs for validation (Eq. 4's L1 in eval mode, with and
            without swapping, after each epoch).
        resume: continue from ``out_dir/checkpoint.pt`` (same data and the same model
            widths, window, stride, batch size and seed; epochs, max_steps, lr and the
            bookkeeping settings may change).
        progress: show a tqdm progress bar.

    Returns:
        dict: ``step`` and ``epoch`` reached (steps are global, over all calls),
        ``train_l1`` (mean Eq. 4 L1 of the steps of the current epoch, train mode, as
        trained: with dropout and swaps), ``loss`` (last step's total), ``val_l1`` and
        ``val_l1_swap`` (when val_pairs), ``history`` (this call's per-step
        ``(step, l1, total)``), ``checkpoint`` (path), ``n_windows``, ``steps_per_epoch``.

    Raises:
        BadInputError: empty pairs, a and b of different lengths or widths, pairs of
            different widths, non-finite values; on resume, data with another number of
            windows than the checkpoint's.
        ConfigError: bad settings; on resume, other model widths or sample-order settings
            than the checkpoint's.
        FileNotFoundError: resume without a checkpoint.
    """
    config = ExpressionTrainConfig() if config is None else config
    if not isinstance(config, ExpressionTrainConfig):
        raise ConfigError(f"config must be an ExpressionTrainConfig, got "
                          f"{type(config).__name__}")
    config.validate()
    device = resolve_device(config.device)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME

    train_w = _Windows(pairs, config.window, config.stride, "pairs", config.in_dim)
    val_w = None if val_pairs is None else _Windows(val_pairs, config.window, config.stride,
                                                    "val_pairs", train_w.dim)
    model_cfg = config.model_config(train_w.dim)
    init_state = None
    if config.init is not None:
        init = load_expression_model(config.init)
        model_cfg = init.config()
        if model_cfg["in_dim"] != train_w.dim:
            raise BadInputError(f"init model {config.init!r} takes {model_cfg['in_dim']}-d "
                                f"features, the pairs have {train_w.dim}-d ones")
        init_state = init.state_dict()
    ckpt = read_checkpoint(ckpt_path, EXPRESSION) if resume else None  # before any state
    if ckpt is not None:
        _check_resume(ckpt, ckpt_path, model_cfg, config, train_w)
    with isolated_rng(device):
        return _train(config, device, out_dir, ckpt_path, train_w, val_w, model_cfg, ckpt,
                      progress, init_state)


def _check_resume(ckpt, path, model_cfg, config, train_w) -> None:
    check_unchanged(path, "model widths", ckpt.get("model_config", {}), model_cfg)
    check_unchanged(path, "sample-order settings", ckpt.get("train_config", {}),
                    {k: getattr(config, k) for k in _ORDER_KEYS})
    if ckpt.get("n_windows") != len(train_w):
        raise BadInputError(f"cannot resume from {path}: it was trained on "
                            f"{ckpt.get('n_windows')} windows, these pairs give "
                            f"{len(train_w)}")
    if ckpt.get("data_fingerprint") != train_w.fingerprint:
        warnings.warn(f"resuming from {path} with training pairs that differ from the "
                      f"checkpoint's (same number of windows): the run will not continue "
                      f"exactly", stacklevel=3)


def _train(config, device, out_dir, ckpt_path, train_w, val_w, model_cfg, ckpt, progress,
           init_state=None):
    n_win = len(train_w)
    spe = math.ceil(n_win / config.batch_size)
    total = config.epochs * spe
    if config.max_steps is not None:
        total = min(total, int(config.max_steps))

    if ckpt is None:
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
    model = ExpressionTransformer(**model_cfg).to(device)
    if init_state is not None and ckpt is None:
        model.load_state_dict(init_state)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step, epoch_sum, epoch_count = 0, 0.0, 0
    last_metrics: dict = {}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        for g in opt.param_groups:
            g["lr"], g["weight_decay"] = config.lr, config.weight_decay
        step = int(ckpt["step"])
        epoch_sum, epoch_count = float(ckpt["epoch_l1"][0]), int(ckpt["epoch_l1"][1])
        last_metrics = dict(ckpt.get("metrics", {}))
        set_rng_state(ckpt["rng"], device)
    train_w.to(device)
    if val_w is not None:
        val_w.to(device)

    def state():
        return {"model_config": model.config(), "model": cpu_state(model),
                "optimizer": opt.state_dict(), "step": step, "epoch": step // spe,
                "steps_per_epoch": spe, "n_windows": n_win,
                "data_fingerprint": train_w.fingerprint,
                "train_config": dataclasses.asdict(config), "rng": rng_state(device),
                "epoch_l1": [epoch_sum, epoch_count], "metrics": dict(last_metrics)}

    def validate():
        val = _evaluate(model, val_w, config.eval_batch_size)  # no RNG used
        last_metrics.update(val_l1=val["l1"], val_l1_swap=val["l1_swap"])
        return val

    out_dir.mkdir(parents=True, exist_ok=True)
    history = []
    log_acc: dict = {}
    perm_epoch, perm = -1, None
    model.train()
    with TrainingRun(ckpt_path, EXPRESSION, state, step=step, total=total,
                     resumed=ckpt is not None, desc="expression transformer",
                     progress=progress, log_dir=out_dir / "tb") as run:
        while step < total:
            epoch, k = divmod(step, spe)
            with run.step():
                if epoch != perm_epoch:
                    perm = torch.from_numpy(np.random.default_rng(
                        [config.seed, epoch]).permutation(n_win))
                    perm_epoch = epoch
                    if k == 0:
                        epoch_sum, epoch_count = 0.0, 0
                idx = perm[k * config.batch_size:(k + 1) * config.batch_size]
                xa, xb, pm = train_w.batch(idx)
                swap = (torch.rand(idx.shape[0]) < config.swap_prob).to(device)
                losses = expression_loss(model(xa, xb, pm, swap), pm, config.end_weight)
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                opt.step()
                step += 1
                l1, end, tot = (float(losses[key].detach()) for key in ("l1", "end", "total"))
                if not math.isfinite(tot):
                    raise FloatingPointError(f"non-finite loss at step {step}; lower the "
                                             f"learning rate or check the features")
                history.append((step, l1, tot))
                epoch_sum, epoch_count = epoch_sum + l1, epoch_count + 1
                last_metrics.update(train_l1=epoch_sum / epoch_count, loss=tot)
            for key, v in (("l1", l1), ("end", end), ("total", tot)):
                log_acc[key] = log_acc.get(key, 0.0) + v
            log_acc["n"] = log_acc.get("n", 0) + 1
            if step % config.log_every == 0 or step == total:
                n = log_acc.pop("n")
                run.scalars({key: v / n for key, v in log_acc.items()}, step, "train/")
                log_acc = {}
            if k + 1 == spe:  # end of an epoch
                run.scalars({"epoch_l1": epoch_sum / epoch_count}, step, "train/")
            if val_w is not None and (k + 1 == spe or step == total):
                run.scalars(validate(), step, "val/")
            run.advance(step, l1=f"{l1:.4f}", epoch=epoch + 1)
            run.check_interrupt()
            if step % config.checkpoint_every == 0 or step == total:
                run.save()
        if val_w is not None and "val_l1" not in last_metrics:  # no step taken in this call
            validate()
        if ckpt is None and step == 0:
            run.save()  # max_steps=0: still leave a loadable (untrained) checkpoint
    result = {"step": step, "epoch": step / spe, "n_windows": n_win, "steps_per_epoch": spe,
              "history": history, "checkpoint": str(ckpt_path)}
    result.update(last_metrics)
    return result
