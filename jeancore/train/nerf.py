"""Training of JEAN's dynamic NeRF on one preprocessed video (Sec. 3.3, Eq. 6; suppl. 8.4).

One step (AD-NeRF's scheme, JEAN suppl. 8.4.3): pick a training frame at random; draw
``n_rays`` (2048) pixels, a fraction ``face_fraction`` of them inside the frame's face box
(from the landmarks, :func:`jeancore.nerf.data.face_rects`) and the rest from the rest of the
image; cast their rays in the canonical head space from the frame's tracked camera-to-head
transform and intrinsics; condition on e_in = concat(e_a, e_e) of the frame (audio: the
fine-tuned audio encoder, a projection to 32-d and attention smoothing over 8 frames;
expression: the frozen expression transformer's windowed code, precomputed); render the rays
through the backbone (AD-NeRF: coarse and fine, last sample = the background pixel); minimise
its photometric loss terms (Eq. 6; AD-NeRF: the MSE of both passes) against the head image
(the head composited over the background). Adam, learning rate 5e-4
decaying exponentially to 5e-5 at ``iters`` (the audio encoder: 5e-6, same decay).

Outputs in ``out_dir``: ``checkpoint.pt`` (atomic; every ``checkpoint_every`` steps, at the
end, and on Ctrl-C; loadable with ``torch.load(weights_only=True)``; also what
:func:`jeancore.nerf.load_nerf_run` renders from; format ``jeancore.nerf`` version 2,
:mod:`jeancore.checkpoints`), TensorBoard logs in ``tb/`` (losses, PSNR,
learning rate, it/s, rays/s; validation PSNR / SSIM and prediction | ground-truth images),
side-by-side validation PNGs in ``val/``, ``metrics.json``.

Exact resume: every random draw of a step (frame, pixels, depth jitter, inverse transform
sampling uniforms, density noise) comes from one torch.Generator on the training device whose
state is in the checkpoint, with the model, the optimizer and the step (the learning rate is a
function of the step), so a resumed run takes the same steps as an uninterrupted one. The
checkpoint, TensorBoard, progress bar and Ctrl-C handling are the run skeleton's
(:mod:`jeancore.train._run`); the settings are :mod:`jeancore.train.nerf_config`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import ops
from .._io import read_image, save_image, save_json
from ..checkpoints import NERF, NERF_CHECKPOINT_NAME, cpu_state, plain, read_nerf_checkpoint
from ..errors import BadInputError, ConfigError
from ..metrics import face as face_metrics
from ..models.backbone import StepContext, build_backbone
from ..models.conditioning import AudioConditioner, smoothing_indices
from ..nerf.data import NerfData, load_nerf_data
from ..nerf.volume_rendering import RayOps, render_image
from ._run import (TrainingRun, check_unchanged, isolated_rng, resolve_device, rng_state,
                   set_rng_state)
from .nerf_config import PRESETS, NerfTrainConfig, preset_config

__all__ = ["CHECKPOINT_NAME", "PRESETS", "NerfTrainConfig", "NerfTrainer", "preset_config",
           "train_nerf"]

CHECKPOINT_NAME = NERF_CHECKPOINT_NAME

# run settings that fix what a step draws and computes: a resume must keep them (with the
# backbone's own, its config's resume_order_keys)
_ORDER_KEYS = ("n_rays", "face_fraction", "mouth_fraction", "head_fraction", "frames_per_step",
               "mouth_expression_swap", "resolution", "seed", "random_background")
# settings of the conditioner's widths (with the backbone's other settings)
_WIDTH_KEYS = ("audio_code_dim", "audio_smoothing")


# ---------------------------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------------------------

def resolve_audio_encoder(audio_encoder, dataset_root=None):
    """The :class:`~jeancore.models.AudioEncoder` to start from: a module as it is, an
    ``AudioModel`` (its ``audio_encoder``, after ``check_dataset``), or a path / None / "generic"
    through :func:`jeancore.checkpoints.load_audio_model` (None: the shipped generic weights)."""
    from torch import nn

    from ..checkpoints import load_audio_model

    if isinstance(audio_encoder, nn.Module):
        return audio_encoder
    model = audio_encoder if hasattr(audio_encoder, "audio_encoder") else \
        load_audio_model(audio_encoder)
    if dataset_root is not None and hasattr(model, "check_dataset"):
        model.check_dataset(dataset_root)
    return model.audio_encoder


def resolve_expression_model(expression_model):
    """The frozen :class:`~jeancore.models.ExpressionTransformer`: a module as it is, else a
    run directory / checkpoint / None (shipped generic model) through
    :func:`jeancore.checkpoints.load_expression_model`."""
    from torch import nn

    from ..checkpoints import load_expression_model

    if isinstance(expression_model, nn.Module):
        return expression_model
    return load_expression_model(expression_model)


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------

def _check_resume(ckpt: dict, path, config: NerfTrainConfig, data: NerfData) -> None:
    ds = ckpt.get("dataset", {})
    if ds.get("fingerprint") != data.fingerprint:
        raise BadInputError(f"cannot resume from {path}: it was trained on another dataset "
                            f"({ds.get('root')}); this is {data.root}. Use another --out.")
    if ckpt.get("backbone") != config.backbone:
        raise ConfigError(f"cannot resume from {path}: it has the {ckpt.get('backbone')!r} "
                          f"backbone (now {config.backbone!r})")
    old, old_b = ckpt.get("train_config", {}), ckpt.get("backbone_config", {})
    new_b = dataclasses.asdict(config.backbone_config())
    # the backbone config's settings that fix what a step draws (the others are widths)
    order_b = getattr(type(config.backbone_config()), "resume_order_keys", ())
    check_unchanged(path, "network widths",
                    {**{k: old.get(k) for k in _WIDTH_KEYS}, **old_b},
                    {**{k: getattr(config, k) for k in _WIDTH_KEYS},
                     **{k: v for k, v in new_b.items() if k not in order_b}})
    defaults = {f.name: f.default for f in dataclasses.fields(NerfTrainConfig)}
    check_unchanged(path, "sampling settings",
                    {**{k: old.get(k, defaults[k]) for k in _ORDER_KEYS}, **old_b},
                    {**{k: getattr(config, k) for k in _ORDER_KEYS},
                     **{k: new_b[k] for k in order_b}})


# ---------------------------------------------------------------------------------------------
# one step
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class StepRays:
    """The rays of one training step (:meth:`NerfTrainer.step_rays`).

    Attributes:
        rays_o, rays_d: float [N, 3] in the canonical head space (``generate_rays``).
        target: float [N, 3] in [0, 1], the colours the rays should get.
        background: float [N, 3] in [0, 1], the colour behind each ray.
        cond: e_in, float [cond_dim] (one frame and no swap) or [N, cond_dim] per ray.
        frames: the step's dataset frames (the rays are grouped by frame, in this order).
        in_mouth: bool [N], rays inside their frame's mouth box.
    """

    rays_o: torch.Tensor
    rays_d: torch.Tensor
    target: torch.Tensor
    background: torch.Tensor
    cond: torch.Tensor
    frames: list
    in_mouth: torch.Tensor


class NerfTrainer:
    """The state of a NeRF training run and one training step (also used by
    ``benchmarks/bench_nerf.py`` to time steps).

    Args:
        data: the dataset at the training resolution (:func:`jeancore.nerf.load_nerf_data`).
        config: :class:`NerfTrainConfig` (validated by the caller).
        device: the training device.
        audio_encoder: the :class:`~jeancore.models.AudioEncoder` to fine-tune.
        expression_model: the frozen expression transformer.
        expression_codes: its per-frame codes float [T, 64] if already known (else computed).

    Attributes:
        backbone, conditioner, expression: the networks; opt: Adam over the backbone's
        parameter groups, the conditioner's projection and attention (lr) and the audio
        encoder (lr_audio); gen: the generator of every random draw; step: steps done.

    Raises:
        BadInputError: an audio encoder for other features than the dataset's.
    """

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
        self.backbone = build_backbone(config.backbone, config.backbone_config(), cond_dim,
                                       data.head_center, data.head_radius,
                                       audio_dim=config.audio_code_dim).to(device)
        self.backbone.observe_cameras(
            data.camera_to_head[data.train_idx], data.intrinsics, data.size, data.near, data.far,
            masks=None if data.head_mask is None else data.head_mask[data.train_idx])
        self.ray_ops = RayOps(config.ops)
        self.amp = bool(config.amp and device.type == "cuda")
        enc_params = list(self.conditioner.encoder.parameters())
        enc_ids = {id(p) for p in enc_params}
        groups = self.backbone.param_groups(config.lr) + [
            {"params": [p for p in self.conditioner.parameters() if id(p) not in enc_ids],
             "lr": config.lr},
            {"params": enc_params, "lr": config.lr_audio}]
        self.opt = torch.optim.Adam(groups)
        self.base_lrs = [g["lr"] for g in groups]
        # device copies of the per-frame data
        self.images = data.images.to(device)
        self.head_mask = None if data.head_mask is None else data.head_mask.to(device)
        self.background = data.background.to(device)
        self.c2w = data.camera_to_head.to(device)
        self.audio = data.audio.to(device)
        self.train_idx = torch.as_tensor(data.train_idx, device=device)
        self.rects = data.rects.tolist()
        self.mouth = data.mouth.tolist()
        self.step = 0
        self._context = StepContext(0, self.gen, device, self._random_conditions, data.near,
                                    data.far)

    def lr_factor(self, step: int) -> float:
        """Exponential decay: lr(step) = lr (lr_final / lr)^(step / iters)."""
        c = self.config
        return (c.lr_final / c.lr) ** (min(step, c.iters) / max(c.iters, 1))

    def cond(self, frames: torch.Tensor) -> torch.Tensor:
        """e_in of frames [B] (dataset indices): float [B, cond_dim]."""
        idx = smoothing_indices(frames, self.data.n_frames, self.conditioner.seq_len)
        e_a = self.conditioner(self.audio[idx])
        return torch.cat([e_a, self.expr_codes[frames]], dim=-1)

    @torch.no_grad()
    def _random_conditions(self, n: int) -> torch.Tensor:
        k = torch.randint(len(self.train_idx), (int(n),), generator=self.gen,
                          device=self.device)
        return self.cond(self.train_idx[k]).float()

    @staticmethod
    def _in_box(box, n: int, g, dev) -> tuple[torch.Tensor, torch.Tensor]:
        """n pixels uniformly inside box (x0, y0, x1, y1): rows, cols int64 [n]."""
        x0, y0, x1, y1 = box
        u = torch.rand((2, n), generator=g, device=dev)
        return (y0 + (u[0] * (y1 - y0)).long().clamp_(max=y1 - y0 - 1),
                x0 + (u[1] * (x1 - x0)).long().clamp_(max=x1 - x0 - 1))

    def sample_pixels(self, j: int, n_rays: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pixels of a step's rays in frame j: rows, cols int64 [n_rays].

        AD-NeRF's choice: round(face_fraction n) uniformly inside the face box, the rest
        uniformly outside it; with ``mouth_fraction`` / ``head_fraction``, that many more
        inside the mouth box / over the head mask (taken from the outside share)."""
        c, g, dev = self.config, self.gen, self.device
        n_rays = c.n_rays if n_rays is None else int(n_rays)
        size = self.data.size
        x0, y0, x1, y1 = self.rects[j]
        rw, rh = x1 - x0, y1 - y0
        n_out_pix = size * size - rw * rh
        n_in = n_rays if n_out_pix == 0 else int(round(n_rays * c.face_fraction))
        n_mouth = int(round(n_rays * c.mouth_fraction))
        n_head = int(round(n_rays * c.head_fraction)) if self.head_mask is not None else 0
        n_mouth = min(n_mouth, n_rays - n_in)
        n_head = min(n_head, n_rays - n_in - n_mouth)
        n_out = n_rays - n_in - n_mouth - n_head
        rows_in, cols_in = self._in_box(self.rects[j], n_in, g, dev)
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
        rows, cols = [rows_in, rows_out], [cols_in, cols_out]
        if n_mouth:
            r, q = self._in_box(self.mouth[j], n_mouth, g, dev)
            rows.append(r)
            cols.append(q)
        if n_head:
            pix = self.head_mask[j].reshape(-1).nonzero()[:, 0]
            if len(pix) == 0:
                pix = torch.arange(size * size, device=dev)
            pick = pix[torch.randint(len(pix), (n_head,), generator=g, device=dev)]
            rows.append(pick // size)
            cols.append(pick % size)
        return torch.cat(rows), torch.cat(cols)

    def step_frames(self) -> list[int]:
        """The training frames of a step (``frames_per_step`` draws with replacement)."""
        k = torch.randint(len(self.train_idx), (self.config.frames_per_step,),
                          generator=self.gen, device=self.device)
        return [int(self.data.train_idx[int(i)]) for i in k]

    def step_rays(self) -> StepRays:
        """A step's rays, drawn from its frames (:meth:`step_frames`, :meth:`sample_pixels`),
        with their targets (random background colours outside the head when
        ``random_background``) and conditions (:class:`StepRays`)."""
        c = self.config
        frames = self.step_frames()
        counts = [c.n_rays // len(frames) + (i < c.n_rays % len(frames))
                  for i in range(len(frames))]
        parts = []
        for j, n in zip(frames, counts):
            rows, cols = self.sample_pixels(j, n)
            rays_o, rays_d = self.rays(j, rows, cols)
            target = self.images[j, rows, cols].float() / 255.0
            bg = self.background[rows, cols].float() / 255.0
            if c.random_background and self.head_mask is not None:
                bg = torch.rand(bg.shape, generator=self.gen, device=self.device)
                outside = ~self.head_mask[j, rows, cols]
                target = torch.where(outside[:, None], bg, target)
            x0, y0, x1, y1 = self.mouth[j]
            mouth = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
            parts.append((rays_o, rays_d, target, bg, mouth))
        rays_o, rays_d, target, bg, mouth = (torch.cat(x) for x in zip(*parts))
        frame_t = torch.tensor(frames, device=self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else \
                contextlib.nullcontext():
            conds = self.cond(frame_t).float()                      # [F, cond_dim]
        if len(frames) == 1 and c.mouth_expression_swap == 0:
            return StepRays(rays_o, rays_d, target, bg, conds[0], frames, mouth)
        owner = torch.repeat_interleave(torch.arange(len(frames), device=self.device),
                                        torch.tensor(counts, device=self.device))
        cond = conds[owner]
        if c.mouth_expression_swap > 0:
            a = self.conditioner.code_dim
            swap = mouth & (torch.rand(len(mouth), generator=self.gen, device=self.device)
                            < c.mouth_expression_swap)
            other = self.train_idx[torch.randint(len(self.train_idx), (len(mouth),),
                                                 generator=self.gen, device=self.device)]
            expr = torch.where(swap[:, None], self.expr_codes[other], cond[:, a:])
            cond = torch.cat([cond[:, :a], expr], -1)
        return StepRays(rays_o, rays_d, target, bg, cond, frames, mouth)

    def rays(self, j: int, rows, cols):
        """Rays of the pixels (rows, cols) of frame j: (rays_o, rays_d) float [N, 3]."""
        fx, fy, cx, cy = self.data.intrinsics
        pix = torch.stack([cols.float() + 0.5, rows.float() + 0.5], -1)
        return ops.generate_rays(self.c2w[j, :3, :4], fx, fy, cx, cy, pix)

    def train_step(self) -> dict:
        """One optimisation step; returns its values (Python floats): ``loss`` (the sum of
        the backbone's terms), ``loss_<term>`` each (AD-NeRF: ``loss_coarse``,
        ``loss_fine``), ``mse`` and ``psnr`` of the rendered colour, ``frame``, ``lr``."""
        c = self.config
        self.backbone.train()
        self.conditioner.train()
        self._context.step = self.step
        self.backbone.before_step(self.step, self._context)
        rays = self.step_rays()
        target, frames = rays.target, rays.frames
        result = self.backbone.render_rays(rays.rays_o, rays.rays_d, self.data.near,
                                           self.data.far, rays.cond, rays.background,
                                           training=True, generator=self.gen,
                                           ray_ops=self.ray_ops, amp=self.amp)
        terms = self.backbone.losses(result, target)
        loss = sum(terms.values())
        f = self.lr_factor(self.step)
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * f
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        values = {f"loss_{k}": float(v.detach()) for k, v in terms.items()}
        mse = float(F.mse_loss(result.rgb.detach(), target))
        return {"loss": sum(values.values()), **values, "mse": mse,
                "psnr": face_metrics.psnr_from_mse(mse), "frame": frames[0], "lr": c.lr * f,
                "samples_per_ray": float(result.samples_per_ray.float().mean())}

    # ------------------------------------------------------------------------------ validation

    def val_frame_indices(self) -> list[int]:
        v = self.data.val_idx
        n = len(v) if self.config.val_frames is None else min(len(v), self.config.val_frames)
        return [int(v[i]) for i in np.linspace(0, len(v) - 1, n).round().astype(int)]

    @torch.no_grad()
    def validate(self, stop=None) -> dict:
        """Render the chosen validation frames with their own audio, expression and pose.

        Returns: ``psnr`` and ``ssim`` on the head region (the face box crop), ``psnr_full``
        (whole frame), means over the frames (:mod:`jeancore.metrics.face`), and
        ``images``: [(prediction, ground truth)] uint8 [H, W, 3].
        """
        self.backbone.eval()
        self.conditioner.eval()
        frames = self.val_frame_indices()
        bg = self.background.float() / 255.0
        conds = self.cond(torch.tensor(frames, device=self.device)).float()
        psnrs, ssims, fulls, images = [], [], [], []
        for i, j in enumerate(frames):
            pred = render_image(self.backbone, self.c2w[j], self.data.intrinsics,
                                self.data.size, self.data.near, self.data.far, conds[i], bg,
                                chunk_rays=self.config.chunk_rays, ray_ops=self.ray_ops,
                                amp=self.amp, stop=stop)
            gt = self.images[j].float() / 255.0
            x0, y0, x1, y1 = self.rects[j]
            pc, gc = pred[y0:y1, x0:x1], gt[y0:y1, x0:x1]
            psnrs.append(face_metrics.psnr(pc, gc))
            fulls.append(face_metrics.psnr(pred, gt))
            if min(pc.shape[0], pc.shape[1]) >= 11:
                ssims.append(face_metrics.ssim(pc, gc))
            images.append(((pred * 255).round().byte().cpu().numpy(),
                           self.images[j].cpu().numpy()))
        self.backbone.train()
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
        return {"step": self.step, "train_config": plain(dataclasses.asdict(self.config)),
                "backbone": self.config.backbone, "backbone_config": self.backbone.config_dict(),
                "cond_dim": self.backbone.cond_dim, "model": cpu_state(self.backbone),
                "conditioner_config": self.conditioner.config(),
                "conditioner": cpu_state(self.conditioner),
                "expression_config": self.expression.config(),
                "expression": cpu_state(self.expression),
                "expression_codes": self.expr_codes.cpu(),
                "optimizer": self.opt.state_dict(), "rng": rng_state(self.device, self.gen),
                "dataset": ds, **extra}

    def load(self, ckpt: dict) -> None:
        """Continue from a checkpoint of :meth:`state` (weights, optimizer, step, RNG)."""
        self.backbone.load_state_dict(ckpt["model"])
        self.conditioner.load_state_dict(ckpt["conditioner"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        set_rng_state(ckpt["rng"], self.device, self.gen)


def _load_background(root) -> torch.Tensor:
    return torch.from_numpy(read_image(Path(root) / "background.png"))


def side_by_side(images) -> np.ndarray:
    """Rows of (prediction | ground truth), uint8 [n H, 2 W, 3]."""
    return np.concatenate([np.concatenate([p, g], 1) for p, g in images], 0)


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------

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
        resume: continue from ``out_dir/checkpoint.pt`` (same dataset, backbone, widths and
            sampling settings; ``iters``, learning rates' horizon, validation and bookkeeping
            may change). Checkpoints of format version 1 (before the backbone seam) resume
            as AD-NeRF.
        progress: tqdm progress bar (it/s and ETA).
        callback: optional ``callback(step, info)`` after every step (``info``: the step's
            losses, ``psnr``, ``seconds`` of training so far); it may raise to stop the run
            (KeyboardInterrupt saves a checkpoint first, other exceptions do not).

    Returns:
        dict: ``step``, ``loss`` (last step), ``history`` (this call's ``(step, loss, mse)``,
        mse: the photometric MSE of the rendered colour, AD-NeRF's fine pass), ``val`` (every
        validation of the run: ``step``, ``seconds``, ``psnr``, ``ssim``, ``psnr_full``),
        ``it_per_s`` and ``rays_per_s`` (this call, validation excluded), ``checkpoint``.

    Raises:
        BadInputError: not a dataset, no audio, features the audio encoder does not take; on
            resume, a checkpoint of another dataset.
        ConfigError: bad settings; an existing checkpoint in ``out_dir`` without ``resume``;
            on resume, another backbone, other widths or sampling settings.
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
    with isolated_rng(device):
        trainer = NerfTrainer(data, config, device, enc, expr, codes)
        if ckpt is not None:
            trainer.load(ckpt)
        return _loop(trainer, out_dir, ckpt_path, ckpt, progress, callback)


def _loop(tr: NerfTrainer, out_dir: Path, ckpt_path: Path, ckpt, progress, callback) -> dict:
    c = tr.config
    val_hist = list(ckpt.get("val_history", [])) if ckpt else []
    train_seconds = float(ckpt.get("train_seconds", 0.0)) if ckpt else 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    history: list = []
    call_seconds, call_steps = 0.0, 0
    run = TrainingRun(ckpt_path, NERF, lambda: tr.state({"val_history": val_hist,
                                                         "train_seconds": train_seconds}),
                      step=tr.step, total=c.iters, resumed=ckpt is not None, desc="NeRF",
                      unit="it", progress=progress, log_dir=out_dir / "tb")

    def run_val():
        v = tr.validate(lambda: run.interrupted)
        rec = {"step": tr.step, "seconds": round(train_seconds, 3), "psnr": v["psnr"],
               "ssim": v["ssim"], "psnr_full": v["psnr_full"]}
        val_hist.append(rec)
        run.scalars({k: v[k] for k in ("psnr", "ssim", "psnr_full")}, tr.step, "val/")
        img = side_by_side(v["images"][:4])
        run.writer.add_image("val/prediction_groundtruth", img, tr.step, dataformats="HWC")
        save_image(out_dir / "val" / f"step_{tr.step:07d}.png", img)
        run.writer.flush()
        return rec

    total = c.iters
    acc: dict = {}
    t_log = time.perf_counter()
    steps_log = 0
    info: dict = {}
    with run:
        if ckpt is None and c.val_at_start and tr.step == 0:
            run_val()
        while tr.step < total:
            if c.time_limit_s is not None and call_seconds >= c.time_limit_s:
                break
            if tr.device.type == "cuda":
                torch.cuda.synchronize(tr.device)
            t0 = time.perf_counter()
            with run.step():
                info = tr.train_step()
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
            history.append((tr.step, info["loss"], info["mse"]))
            for k, v in info.items():
                if k.startswith("loss") or k == "psnr":
                    acc[k] = acc.get(k, 0.0) + v
            acc["n"] = acc.get("n", 0) + 1
            if tr.step % c.log_every == 0 or tr.step == total:
                now = time.perf_counter()
                n = acc.pop("n")
                run.scalars({k: v / n for k, v in acc.items()}, tr.step, "train/")
                ips = steps_log / max(now - t_log, 1e-9)
                run.scalars({"train/lr": info["lr"], "speed/it_per_s": ips,
                             "speed/rays_per_s": ips * c.n_rays}, tr.step)
                acc = {}
                t_log, steps_log = now, 0
            run.advance(tr.step, loss=f"{info['loss']:.4f}", psnr=f"{info['psnr']:.2f}")
            if callback is not None:
                callback(tr.step, dict(info, seconds=train_seconds))
            run.check_interrupt()
            if c.val_every and tr.step % c.val_every == 0 and tr.step < total:
                run_val()
                t_log = time.perf_counter()
            if tr.step % c.checkpoint_every == 0:
                run.save()
        if not val_hist or val_hist[-1]["step"] != tr.step:
            run_val()
        run.save()
    ips = call_steps / call_seconds if call_seconds > 0 else float("nan")
    result = {"step": tr.step, "loss": info.get("loss", float("nan")), "history": history,
              "val": val_hist, "it_per_s": ips, "rays_per_s": ips * c.n_rays,
              "train_seconds": train_seconds, "checkpoint": str(ckpt_path),
              "device": str(tr.device), "ops": c.ops, "preset": c.preset,
              "backbone": c.backbone}
    save_json(out_dir / "metrics.json", {k: v for k, v in result.items() if k != "history"})
    return result
