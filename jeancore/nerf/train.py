"""Training of JEAN's dynamic NeRF on one preprocessed video (Sec. 3.3, Eq. 6; suppl. 8.4).

One step (AD-NeRF's scheme, JEAN suppl. 8.4.3): pick a training frame at random; draw
``n_rays`` (2048) pixels, a fraction ``face_fraction`` of them inside the frame's face box
(from the landmarks, :func:`jeancore.nerf.data.face_rects`) and the rest from the rest of the
image; cast their rays in the canonical head space from the frame's tracked camera-to-head
transform and intrinsics; condition on e_in = concat(e_a, e_e) of the frame (audio: the
fine-tuned audio encoder, a projection to 32-d and attention smoothing over 8 frames;
expression: the frozen expression transformer's windowed code, precomputed); render coarse
and fine (last sample = the background pixel); minimise the photometric MSE (Eq. 6) of both
against the head image (the head composited over the background). Adam, learning rate 5e-4
decaying exponentially to 5e-5 at ``iters`` (the audio encoder: 5e-6, same decay).

Outputs in ``out_dir``: ``checkpoint.pt`` (atomic; every ``checkpoint_every`` steps, at the
end, and on Ctrl-C; loadable with ``torch.load(weights_only=True)``; also what
:func:`jeancore.nerf.load_nerf_run` renders from), TensorBoard logs in ``tb/`` (losses, PSNR,
learning rate, it/s, rays/s; validation PSNR / SSIM and prediction | ground-truth images),
side-by-side validation PNGs in ``val/``, ``metrics.json``.

Exact resume: every random draw of a step (frame, pixels, depth jitter, inverse transform
sampling uniforms, density noise) comes from one torch.Generator on the training device whose
state is in the checkpoint, with the model, the optimizer and the step (the learning rate is a
function of the step), so a resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import ops
from .._io import atomic_path, save_image, save_json
from ..errors import BadInputError, ConfigError
from ..train._common import check_ints, resolve_device
from .conditioning import AudioConditioner, smoothing_indices
from .data import NerfData, load_nerf_data
from .model import NerfModel
from .renderer import OPS_BACKENDS, RayOps, render_image, render_rays

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "PRESETS", "NerfTrainConfig",
           "preset_config", "train_nerf", "read_nerf_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "jeancore.nerf"
CHECKPOINT_VERSION = 1

# settings that fix what a step draws and computes: a resume must keep them
_ORDER_KEYS = ("n_rays", "face_fraction", "n_coarse", "n_fine", "resolution", "seed",
               "density_noise", "random_background")
_MODEL_KEYS = ("depth", "width", "skips", "pos_freqs", "dir_freqs", "density_activation",
               "audio_code_dim", "audio_smoothing")


@dataclass
class NerfTrainConfig:
    """Settings of :func:`train_nerf`. Defaults: the paper (the ``full`` preset).

    Rays and samples: ``n_rays`` per step (2048) from one frame, ``face_fraction`` of them in
    the face box (0.95); ``n_coarse`` (64) evenly spaced (stratified) depths and ``n_fine``
    (128) inverse-transform samples per ray (AD-NeRF's 64 + 128); ``resolution``: image side
    to train and validate at (None: the dataset's).

    Network: ``depth`` (8), ``width`` (128), ``skips`` ((4,)), ``pos_freqs`` (10),
    ``dir_freqs`` (4); ``audio_code_dim`` (32) and ``audio_smoothing`` frames (8; 1 = off).
    ``density_noise``: std of noise on the density in training (0);
    ``density_activation``: "softplus" (default) or "relu" (AD-NeRF), see
    :class:`~jeancore.nerf.NerfMLP`.

    Optimisation: ``iters`` (400k in the paper), Adam ``lr`` 5e-4 decaying exponentially to
    ``lr_final`` 5e-5 at ``iters``; ``lr_audio`` 5e-6 for the audio encoder; ``amp``: bfloat16
    autocast of the MLPs on CUDA; ``time_limit_s``: stop after that many seconds of training
    (validation excluded) even before ``iters``.

    Bookkeeping: ``seed``; ``device`` ("auto": CUDA when available); ``ops``: "fused"
    (jeancore.ops kernels) or "reference" (pure PyTorch); ``log_every``; ``checkpoint_every``;
    ``val_every`` steps (0: only at the start and the end); ``val_frames``: how many
    validation frames to render (evenly spaced over the last 10%; None: all); ``val_at_start``;
    ``chunk_rays`` per rendering pass.
    """

    preset: str = "full"
    iters: int = 400_000
    n_rays: int = 2048
    face_fraction: float = 0.95
    n_coarse: int = 64
    n_fine: int = 128
    resolution: int | None = None
    depth: int = 8
    width: int = 128
    skips: tuple = (4,)
    pos_freqs: int = 10
    dir_freqs: int = 4
    audio_code_dim: int = 32
    audio_smoothing: int = 8
    density_noise: float = 0.0
    random_background: bool = True
    density_activation: str = "softplus"
    lr: float = 5e-4
    lr_final: float = 5e-5
    lr_audio: float = 5e-6
    amp: bool = True
    time_limit_s: float | None = None
    seed: int = 0
    device: str = "auto"
    ops: str = "fused"
    log_every: int = 50
    checkpoint_every: int = 2000
    val_every: int = 5000
    val_frames: int | None = 8
    val_at_start: bool = True
    chunk_rays: int = 16384

    def validate(self) -> None:
        """Raises ConfigError for out-of-range settings."""
        check_ints(self, ("n_rays", "depth", "width", "audio_code_dim", "audio_smoothing",
                          "log_every", "checkpoint_every", "chunk_rays"))
        check_ints(self, ("n_coarse",), 3)
        check_ints(self, ("iters", "n_fine", "val_every", "pos_freqs", "dir_freqs", "seed"), 0)
        if self.resolution is not None and int(self.resolution) < 8:
            raise ConfigError(f"resolution must be None or >= 8 pixels, got {self.resolution}")
        if self.val_frames is not None and int(self.val_frames) < 1:
            raise ConfigError(f"val_frames must be None or >= 1, got {self.val_frames}")
        if not 0.0 <= self.face_fraction <= 1.0:
            raise ConfigError(f"face_fraction must be in [0, 1], got {self.face_fraction}")
        if not (self.lr > 0 and self.lr_final > 0 and self.lr_audio >= 0):
            raise ConfigError("lr and lr_final must be > 0, lr_audio >= 0")
        if self.density_noise < 0:
            raise ConfigError(f"density_noise must be >= 0, got {self.density_noise}")
        if self.ops not in OPS_BACKENDS:
            raise ConfigError(f"ops must be one of {OPS_BACKENDS}, got {self.ops!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ConfigError(f"time_limit_s must be None or > 0, got {self.time_limit_s}")

    def mlp_config(self, cond_dim: int) -> dict:
        return {"cond_dim": cond_dim, "depth": self.depth, "width": self.width,
                "skips": list(self.skips), "pos_freqs": self.pos_freqs,
                "dir_freqs": self.dir_freqs, "density_activation": self.density_activation}


PRESETS = {
    # the paper (suppl. 8.4.3) with AD-NeRF's sample counts; for a GPU
    "full": {},
    # learns a recognisable blurry face in a few minutes on 2 CPU cores: 256 rays of 24 + 24
    # samples at 96 px, a half-width network, 500 iterations with a 2x higher learning rate
    # (1e-3 -> 1e-4, so that it decays within the run), small validation renders
    "cpu-smoke": dict(iters=500, n_rays=256, n_coarse=24, n_fine=24, resolution=96,
                      width=64, lr=1e-3, lr_final=1e-4, log_every=10, checkpoint_every=100,
                      val_every=100, val_frames=3, chunk_rays=4096),
}


def preset_config(name: str | None = None, device: str = "auto", **overrides) -> NerfTrainConfig:
    """A :class:`NerfTrainConfig` from a preset: ``"full"`` (paper) or ``"cpu-smoke"``;
    None picks by device (``full`` with CUDA, ``cpu-smoke`` otherwise). ``overrides`` set
    any field.

    Raises:
        ConfigError: unknown preset or field.
    """
    dev = resolve_device(device)
    if name is None:
        name = "full" if dev.type == "cuda" else "cpu-smoke"
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(NerfTrainConfig)}
    bad = set(overrides) - fields
    if bad:
        raise ConfigError(f"unknown NeRF training settings {sorted(bad)}")
    return NerfTrainConfig(**{**PRESETS[name], "preset": name, "device": device, **overrides})


# ---------------------------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------------------------

def resolve_audio_encoder(audio_encoder, dataset_root=None):
    """The :class:`~jeancore.models.AudioEncoder` to start from: a module as it is, an
    ``AudioModel`` (its ``audio_encoder``, after ``check_dataset``), or a path / None / "generic"
    through ``jeancore.train.audio.load_audio_model`` (None: the shipped generic weights)."""
    from torch import nn

    if isinstance(audio_encoder, nn.Module):
        return audio_encoder
    if hasattr(audio_encoder, "audio_encoder"):
        model = audio_encoder
    else:
        try:
            from ..train.audio import load_audio_model
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ConfigError("loading an audio encoder needs jeancore.train.audio "
                              f"(not available: {e}); pass an AudioEncoder module") from e
        model = load_audio_model(audio_encoder)
    if dataset_root is not None and hasattr(model, "check_dataset"):
        model.check_dataset(dataset_root)
    return model.audio_encoder


def resolve_expression_model(expression_model):
    """The frozen :class:`~jeancore.models.ExpressionTransformer`: a module as it is, else a
    run directory / checkpoint / None (shipped generic model) through
    ``jeancore.train.expression.load_expression_model``."""
    from torch import nn

    if isinstance(expression_model, nn.Module):
        return expression_model
    from ..train.expression import load_expression_model

    return load_expression_model(expression_model)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------

def read_nerf_checkpoint(path) -> dict:
    """The dict stored by :func:`train_nerf` (``torch.load(weights_only=True)``).

    Raises:
        FileNotFoundError: no such file (a run directory is looked into for checkpoint.pt).
        BadInputError: not a NeRF checkpoint, or an unsupported version.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no NeRF checkpoint at {path} (train one with `jean train`)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is a bad input
        raise BadInputError(f"{path} is not a readable NeRF checkpoint ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(f"{path} is not a NeRF checkpoint (written by `jean train` / "
                            f"jeancore.nerf.train_nerf)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise BadInputError(f"{path}: unsupported NeRF checkpoint version "
                            f"{ckpt.get('version')!r}")
    return ckpt


def _gen_state(gen: torch.Generator) -> torch.Tensor:
    return gen.get_state()


def _check_resume(ckpt: dict, path, config: NerfTrainConfig, data: NerfData) -> None:
    ds = ckpt.get("dataset", {})
    if ds.get("fingerprint") != data.fingerprint:
        raise BadInputError(f"cannot resume from {path}: it was trained on another dataset "
                            f"({ds.get('root')}); this is {data.root}. Use another --out.")
    old = ckpt.get("train_config", {})
    diff = [f"{k}={old.get(k)!r} (now {getattr(config, k)!r})" for k in _MODEL_KEYS
            if _norm(old.get(k)) != _norm(getattr(config, k))]
    if diff:
        raise ConfigError(f"cannot resume from {path}: it has other network widths: "
                          + ", ".join(diff))
    diff = [f"{k}={old.get(k)!r} (now {getattr(config, k)!r})" for k in _ORDER_KEYS
            if _norm(old.get(k)) != _norm(getattr(config, k))]
    if diff:
        raise ConfigError(f"cannot resume from {path} with other sampling settings: "
                          + ", ".join(diff))


def _norm(v):
    return list(v) if isinstance(v, (tuple, list)) else v


# ---------------------------------------------------------------------------------------------
# one step
# ---------------------------------------------------------------------------------------------

class _Trainer:
    """The state of a run and one training step (shared with benchmarks/bench_nerf.py)."""

    def __init__(self, data: NerfData, config: NerfTrainConfig, device: torch.device,
                 audio_encoder, expression_model, expression_codes=None):
        self.data, self.config, self.device = data, config, device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(config.seed)
        torch.manual_seed(config.seed)  # initialisation of the new layers
        enc_dim = getattr(audio_encoder, "in_dim", None)
        if enc_dim is not None and data.audio is not None and enc_dim != data.audio.shape[-1]:
            raise BadInputError(f"the audio encoder takes {enc_dim}-d features; the dataset "
                                f"{data.root} has {data.audio.shape[-1]}-d "
                                f"({data.audio.shape[1]}-step windows): use an encoder trained "
                                f"on the same kind of features")
        enc_win = getattr(audio_encoder, "window", None)
        if enc_win is not None and enc_win != data.audio.shape[1]:
            raise BadInputError(f"the audio encoder takes {enc_win}-step windows; the dataset "
                                f"has {data.audio.shape[1]}")
        self.expression = expression_model.cpu().eval()
        for p in self.expression.parameters():
            p.requires_grad_(False)
        if expression_codes is None:
            expression_codes = self.expression.expression_codes(
                torch.from_numpy(data.emotion))
        self.expr_codes = torch.as_tensor(expression_codes, dtype=torch.float32).to(device)
        self.conditioner = AudioConditioner(audio_encoder, config.audio_code_dim,
                                            config.audio_smoothing).to(device)
        cond_dim = config.audio_code_dim + self.expr_codes.shape[1]
        self.model = NerfModel(config.mlp_config(cond_dim), data.head_center,
                               data.head_radius).to(device)
        self.ray_ops = RayOps(config.ops)
        self.amp = bool(config.amp and device.type == "cuda")
        enc_params = list(self.conditioner.encoder.parameters())
        enc_ids = {id(p) for p in enc_params}
        main = list(self.model.parameters()) + [p for p in self.conditioner.parameters()
                                                if id(p) not in enc_ids]
        self.opt = torch.optim.Adam([{"params": main, "lr": config.lr},
                                     {"params": enc_params, "lr": config.lr_audio}])
        self.base_lrs = [config.lr, config.lr_audio]
        # device copies of the per-frame data
        self.images = data.images.to(device)
        self.head_mask = None if data.head_mask is None else data.head_mask.to(device)
        self.background = data.background.to(device)
        self.c2w = data.camera_to_head.to(device)
        self.audio = data.audio.to(device)
        self.train_idx = torch.as_tensor(data.train_idx, device=device)
        self.rects = data.rects.tolist()
        self.step = 0

    def lr_factor(self, step: int) -> float:
        """Exponential decay: lr(step) = lr (lr_final / lr)^(step / iters)."""
        c = self.config
        return (c.lr_final / c.lr) ** (min(step, c.iters) / max(c.iters, 1))

    def cond(self, frames: torch.Tensor) -> torch.Tensor:
        """e_in of frames [B] (dataset indices): float [B, cond_dim]."""
        idx = smoothing_indices(frames, self.data.n_frames, self.conditioner.seq_len)
        e_a = self.conditioner(self.audio[idx])
        return torch.cat([e_a, self.expr_codes[frames]], dim=-1)

    def sample_pixels(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """AD-NeRF's pixel choice: rows, cols int64 [n_rays], round(face_fraction n_rays)
        uniformly inside the face box, the rest uniformly outside it."""
        c, g, dev = self.config, self.gen, self.device
        size = self.data.size
        x0, y0, x1, y1 = self.rects[j]
        rw, rh = x1 - x0, y1 - y0
        n_out_pix = size * size - rw * rh
        n_in = c.n_rays if n_out_pix == 0 else int(round(c.n_rays * c.face_fraction))
        n_out = c.n_rays - n_in
        u = torch.rand((2, n_in), generator=g, device=dev)
        rows_in = y0 + (u[0] * rh).long().clamp_(max=rh - 1)
        cols_in = x0 + (u[1] * rw).long().clamp_(max=rw - 1)
        k = (torch.rand(n_out, generator=g, device=dev, dtype=torch.float64)
             * n_out_pix).long().clamp_(max=max(n_out_pix - 1, 0))
        above, side_w = y0 * size, max(size - rw, 1)
        mid = rh * (size - rw)
        k2, k3 = (k - above).clamp(min=0), (k - above - mid).clamp(min=0)
        c2 = k2 % side_w
        rows_out = torch.where(k < above, k // size,
                               torch.where(k < above + mid, y0 + k2 // side_w, y1 + k3 // size))
        cols_out = torch.where(k < above, k % size,
                               torch.where(k < above + mid, torch.where(c2 < x0, c2, c2 + rw),
                                           k3 % size))
        return torch.cat([rows_in, rows_out]), torch.cat([cols_in, cols_out])

    def rays(self, j: int, rows, cols):
        fx, fy, cx, cy = self.data.intrinsics
        pix = torch.stack([cols.float() + 0.5, rows.float() + 0.5], -1)
        return ops.generate_rays(self.c2w[j, :3, :4], fx, fy, cx, cy, pix)

    def train_step(self) -> dict:
        """One optimisation step; returns the losses (Python floats) of the step."""
        c = self.config
        self.model.train()
        self.conditioner.train()
        k = int(torch.randint(len(self.train_idx), (1,), generator=self.gen,
                              device=self.device))
        j = int(self.data.train_idx[k])
        rows, cols = self.sample_pixels(j)
        rays_o, rays_d = self.rays(j, rows, cols)
        target = self.images[j, rows, cols].float() / 255.0
        bg = self.background[rows, cols].float() / 255.0
        if c.random_background and self.head_mask is not None:
            bg = torch.rand(bg.shape, generator=self.gen, device=self.device)
            outside = ~self.head_mask[j, rows, cols]
            target = torch.where(outside[:, None], bg, target)
        frames = torch.tensor([j], device=self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else _null():
            cond = self.cond(frames)[0]
        out = render_rays(self.model, rays_o, rays_d, self.data.near, self.data.far,
                          cond.float(), bg, n_coarse=c.n_coarse, n_fine=c.n_fine,
                          stratified=True, generator=self.gen, ray_ops=self.ray_ops,
                          amp=self.amp, density_noise=c.density_noise, fine=c.n_fine > 0)
        loss_c = F.mse_loss(out["rgb_coarse"], target)
        loss_f = F.mse_loss(out["rgb_fine"], target) if "rgb_fine" in out else loss_c * 0
        loss = loss_c + loss_f
        f = self.lr_factor(self.step)
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * f
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        lc, lf = float(loss_c.detach()), float(loss_f.detach())
        best = lf if "rgb_fine" in out else lc
        return {"loss": lc + lf, "loss_coarse": lc, "loss_fine": lf,
                "psnr": -10.0 * math.log10(max(best, 1e-12)), "frame": j,
                "lr": c.lr * f}

    # ------------------------------------------------------------------------------ validation

    def val_frame_indices(self) -> list[int]:
        v = self.data.val_idx
        n = len(v) if self.config.val_frames is None else min(len(v), self.config.val_frames)
        return [int(v[i]) for i in np.linspace(0, len(v) - 1, n).round().astype(int)]

    @torch.no_grad()
    def validate(self, stop=None) -> dict:
        """Render the chosen validation frames with their own audio, expression and pose.

        Returns: ``psnr`` and ``ssim`` on the head region (the face box crop), ``psnr_full``
        (whole frame), means over the frames, and ``images``: [(prediction, ground truth)]
        uint8 [H, W, 3].
        """
        from torchmetrics.functional.image import structural_similarity_index_measure as ssim

        self.model.eval()
        self.conditioner.eval()
        c = self.config
        frames = self.val_frame_indices()
        bg = self.background.float() / 255.0
        conds = self.cond(torch.tensor(frames, device=self.device)).float()
        psnrs, ssims, fulls, images = [], [], [], []
        for i, j in enumerate(frames):
            pred = render_image(self.model, self.c2w[j], self.data.intrinsics, self.data.size,
                                self.data.near, self.data.far, conds[i], bg,
                                n_coarse=c.n_coarse, n_fine=c.n_fine, chunk_rays=c.chunk_rays,
                                ray_ops=self.ray_ops, amp=self.amp, stop=stop)
            gt = self.images[j].float() / 255.0
            x0, y0, x1, y1 = self.rects[j]
            pc, gc = pred[y0:y1, x0:x1], gt[y0:y1, x0:x1]
            psnrs.append(_psnr(pc, gc))
            fulls.append(_psnr(pred, gt))
            if min(pc.shape[0], pc.shape[1]) >= 11:
                ssims.append(float(ssim(pc.permute(2, 0, 1)[None].cpu(),
                                        gc.permute(2, 0, 1)[None].cpu(), data_range=1.0)))
            images.append(((pred * 255).round().byte().cpu().numpy(),
                           self.images[j].cpu().numpy()))
        self.model.train()
        self.conditioner.train()
        return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)) if ssims else
                float("nan"), "psnr_full": float(np.mean(fulls)), "frames": frames,
                "images": images}

    # ----------------------------------------------------------------------------- checkpoints

    def state(self, extra: dict) -> dict:
        d = self.data
        ds = {"root": str(d.root), "fingerprint": d.fingerprint, "size": d.size,
              "dataset_size": d.dataset_size,
              "intrinsics": [v * d.dataset_size / d.size for v in d.intrinsics],
              "near": d.near, "far": d.far, "head_center": [float(v) for v in d.head_center],
              "head_radius": d.head_radius, "n_frames": d.n_frames,
              "val_start": int(d.val_idx[0]), "audio_window": int(d.audio.shape[1]),
              "audio_dim": int(d.audio.shape[2]),
              "background": _load_background(d.root)}
        rng = {"generator": _gen_state(self.gen), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": self.step,
            "train_config": _plain(dataclasses.asdict(self.config)),
            "mlp_config": self.model.config(), "conditioner_config": self.conditioner.config(),
            "model": _cpu(self.model.state_dict()),
            "conditioner": _cpu(self.conditioner.state_dict()),
            "expression_config": self.expression.config(),
            "expression": _cpu(self.expression.state_dict()),
            "expression_codes": self.expr_codes.cpu(),
            "optimizer": self.opt.state_dict(), "rng": rng, "dataset": ds}
        state.update(extra)
        return state

    def load(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.conditioner.load_state_dict(ckpt["conditioner"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        rng = ckpt["rng"]
        self.gen.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)


def _null():
    import contextlib

    return contextlib.nullcontext()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a - b) ** 2))
    return -10.0 * math.log10(max(mse, 1e-12))


def _cpu(sd: dict) -> dict:
    return {k: v.detach().cpu() for k, v in sd.items()}


def _plain(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _load_background(root) -> torch.Tensor:
    from .._io import read_image

    return torch.from_numpy(read_image(Path(root) / "background.png"))


def side_by_side(images) -> np.ndarray:
    """Rows of (prediction | ground truth), uint8 [n H, 2 W, 3]."""
    return np.concatenate([np.concatenate([p, g], 1) for p, g in images], 0)


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------

class _SigInt:
    """Ctrl-C during training: the first one finishes the current step, saves a checkpoint and
    raises KeyboardInterrupt; a second one interrupts at once (the last checkpoint stays)."""

    def __init__(self):
        self.hit = False
        self.old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False


def train_nerf(dataset_dir, out_dir, config: NerfTrainConfig | None = None, *,
               audio_encoder=None, expression_model=None, resume: bool = False,
               progress: bool = True, callback=None) -> dict:
    """Train JEAN's dynamic NeRF on one preprocessed video (Sec. 3.3, suppl. 8.4).

    Args:
        dataset_dir: folder made by ``jean preprocess`` (with audio features).
        out_dir: run directory (created): ``checkpoint.pt``, ``tb/``, ``val/``, ``metrics.json``.
        config: :class:`NerfTrainConfig` (default: the preset for the device,
            :func:`preset_config`).
        audio_encoder: the pre-trained audio encoder to fine-tune: an ``AudioEncoder`` module,
            an ``AudioModel``, a run directory / checkpoint of the audio training, or None (the
            shipped generic weights). Ignored on resume (the checkpoint has the fine-tuned one).
        expression_model: the frozen expression transformer: a module, a run directory /
            checkpoint of ``jean train-expression``, or None (shipped generic model). Ignored
            on resume.
        resume: continue from ``out_dir/checkpoint.pt`` (same dataset, widths and sampling
            settings; ``iters``, learning rates' horizon, validation and bookkeeping may change).
        progress: tqdm progress bar (it/s and ETA).
        callback: optional ``callback(step, info)`` after every step (``info``: the step's
            losses, ``psnr``, ``seconds`` of training so far); it may raise to stop the run
            (KeyboardInterrupt saves a checkpoint first, other exceptions do not).

    Returns:
        dict: ``step``, ``loss`` (last step), ``history`` (this call's ``(step, loss,
        loss_fine)``), ``val`` (every validation of the run: ``step``, ``seconds``, ``psnr``,
        ``ssim``, ``psnr_full``), ``it_per_s`` and ``rays_per_s`` (this call, validation
        excluded), ``checkpoint``.

    Raises:
        BadInputError: not a dataset, no audio, features the audio encoder does not take; on
            resume, a checkpoint of another dataset.
        ConfigError: bad settings; an existing checkpoint in ``out_dir`` without ``resume``;
            on resume, other widths or sampling settings.
        FileNotFoundError: resume without a checkpoint.
        KeyboardInterrupt: Ctrl-C (after saving a checkpoint of the last finished step).
    """
    config = preset_config() if config is None else config
    if not isinstance(config, NerfTrainConfig):
        raise ConfigError(f"config must be a NerfTrainConfig, got {type(config).__name__}")
    config.validate()
    device = resolve_device(config.device)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if not resume and ckpt_path.exists():
        raise ConfigError(f"{out_dir} already has a NeRF checkpoint: pass --resume to continue "
                          f"it, or choose another --out")
    ckpt = read_nerf_checkpoint(ckpt_path) if resume else None
    data = load_nerf_data(dataset_dir, config.resolution)
    if ckpt is not None:
        _check_resume(ckpt, ckpt_path, config, data)
        from ..models.audio import AudioEncoder
        from ..models.expression import ExpressionTransformer

        enc = AudioEncoder.from_config(ckpt["conditioner_config"]["encoder"])
        expr = ExpressionTransformer.from_config(ckpt["expression_config"])
        expr.load_state_dict(ckpt["expression"])
        codes = ckpt["expression_codes"]
    else:
        enc = resolve_audio_encoder(audio_encoder, dataset_dir)
        expr = resolve_expression_model(expression_model)
        codes = None
        if getattr(expr, "in_dim", data.emotion.shape[1]) != data.emotion.shape[1]:
            raise BadInputError(f"the expression transformer takes {expr.in_dim}-d features; "
                                f"the dataset has {data.emotion.shape[1]}-d emotion features")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        trainer = _Trainer(data, config, device, enc, expr, codes)
        if ckpt is not None:
            trainer.load(ckpt)
        return _loop(trainer, out_dir, ckpt_path, ckpt, progress, callback)


def _loop(tr: _Trainer, out_dir: Path, ckpt_path: Path, ckpt, progress, callback) -> dict:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    c = tr.config
    val_hist = list(ckpt.get("val_history", [])) if ckpt else []
    train_seconds = float(ckpt.get("train_seconds", 0.0)) if ckpt else 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=tr.step + 1 if ckpt else 0)
    history: list = []
    call_seconds, call_steps = 0.0, 0

    saved = {"step": tr.step if ckpt is not None else -1}
    in_step = [False]

    def save():
        state = tr.state({"val_history": val_hist, "train_seconds": train_seconds})
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)
        saved["step"] = tr.step

    def run_val(stop=None):
        v = tr.validate(stop)
        rec = {"step": tr.step, "seconds": round(train_seconds, 3), "psnr": v["psnr"],
               "ssim": v["ssim"], "psnr_full": v["psnr_full"]}
        val_hist.append(rec)
        for key in ("psnr", "ssim", "psnr_full"):
            writer.add_scalar(f"val/{key}", v[key], tr.step)
        img = side_by_side(v["images"][:4])
        writer.add_image("val/prediction_groundtruth", img, tr.step, dataformats="HWC")
        save_image(out_dir / "val" / f"step_{tr.step:07d}.png", img)
        writer.flush()
        return rec

    total = c.iters
    bar = tqdm(total=total, initial=min(tr.step, total), disable=not progress, unit="it",
               desc="NeRF", dynamic_ncols=True)
    acc = {"loss": 0.0, "loss_coarse": 0.0, "loss_fine": 0.0, "psnr": 0.0, "n": 0}
    t_log = time.perf_counter()
    steps_log = 0
    info: dict = {}
    try:
        with _SigInt() as sig:
            if ckpt is None and c.val_at_start and tr.step == 0:
                run_val(lambda: sig.hit)
            while tr.step < total:
                if c.time_limit_s is not None and call_seconds >= c.time_limit_s:
                    break
                if tr.device.type == "cuda":
                    torch.cuda.synchronize(tr.device)
                t0 = time.perf_counter()
                in_step[0] = True
                info = tr.train_step()
                in_step[0] = False
                if tr.device.type == "cuda" and (tr.step % c.log_every == 0):
                    torch.cuda.synchronize(tr.device)
                dt = time.perf_counter() - t0
                train_seconds += dt
                call_seconds += dt
                call_steps += 1
                steps_log += 1
                if not math.isfinite(info["loss"]):
                    raise FloatingPointError(f"non-finite loss at step {tr.step}; lower the "
                                             f"learning rate")
                history.append((tr.step, info["loss"], info["loss_fine"]))
                for k in ("loss", "loss_coarse", "loss_fine", "psnr"):
                    acc[k] += info[k]
                acc["n"] += 1
                if tr.step % c.log_every == 0 or tr.step == total:
                    now = time.perf_counter()
                    n = acc.pop("n")
                    for k, v in acc.items():
                        writer.add_scalar(f"train/{k}", v / n, tr.step)
                    ips = steps_log / max(now - t_log, 1e-9)
                    writer.add_scalar("train/lr", info["lr"], tr.step)
                    writer.add_scalar("speed/it_per_s", ips, tr.step)
                    writer.add_scalar("speed/rays_per_s", ips * c.n_rays, tr.step)
                    acc = {"loss": 0.0, "loss_coarse": 0.0, "loss_fine": 0.0, "psnr": 0.0,
                           "n": 0}
                    t_log, steps_log = now, 0
                bar.update(1)
                bar.set_postfix(loss=f"{info['loss']:.4f}", psnr=f"{info['psnr']:.2f}")
                if callback is not None:
                    callback(tr.step, dict(info, seconds=train_seconds))
                if sig.hit:
                    save()
                    raise KeyboardInterrupt
                if c.val_every and tr.step % c.val_every == 0 and tr.step < total:
                    run_val(lambda: sig.hit)
                    t_log = time.perf_counter()
                if tr.step % c.checkpoint_every == 0:
                    save()
            if not val_hist or val_hist[-1]["step"] != tr.step:
                run_val(lambda: sig.hit)
            save()
    except KeyboardInterrupt:
        # Ctrl-C during validation or from the callback: keep the finished steps (a second
        # Ctrl-C inside a step leaves the last checkpoint: the model may be half updated)
        if not in_step[0] and saved["step"] != tr.step:
            save()
        raise
    finally:
        bar.close()
        writer.close()
    ips = call_steps / call_seconds if call_seconds > 0 else float("nan")
    result = {"step": tr.step, "loss": info.get("loss", float("nan")), "history": history,
              "val": val_hist, "it_per_s": ips, "rays_per_s": ips * c.n_rays,
              "train_seconds": train_seconds, "checkpoint": str(ckpt_path),
              "device": str(tr.device), "ops": c.ops, "preset": c.preset}
    save_json(out_dir / "metrics.json", {k: v for k, v in result.items() if k != "history"})
    return result
