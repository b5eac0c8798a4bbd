"""The two stages of the audio training (JEAN Sec. 3.1), on one shared loop.

* :class:`LandmarkStage` -- the landmark autoencoder with mouth swapping (Eq. 1): anchor A of
  every training frame once per epoch, partner B a random other frame of the same video,
  swap with probability ``swap_prob``; Adam (``ae_lr``, ``ae_weight_decay``).
* :class:`AudioStage` -- the audio encoder against the frozen landmark encoder's mouth codes
  (InfoNCE, Eq. 2): ``negatives`` per anchor from :class:`~.frames.TrainingFrames`; Adam,
  lr decaying exponentially from ``lr`` to ``lr_end`` over the stage.

:meth:`Stage.run` is the loop both share (on the run skeleton,
:class:`~jeancore.train._run.TrainingRun`): one generator seeded by ``(seed, stage, epoch)``
draws every random choice of an epoch for the *global* batch; each process takes a
contiguous slice of every global batch and weights its loss so that DDP's gradient average
is the gradient of the global batch's mean loss. Rank 0 writes the stage checkpoint
(``landmark_ae.pt`` / ``audio_encoder.pt``, format ``jeancore.audio_training``), TensorBoard
(``tb/<stage>``) and the progress bar; a Ctrl-C seen by any rank stops every rank after the
same step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import torch

from ...checkpoints import AUDIO_STAGE, cpu_state, plain, read_checkpoint
from ...errors import BadInputError
from ...metrics.audio import retrieval_accuracy, swap_errors
from ...models.audio import MouthSwapStep, info_nce, mouth_swap_loss
from .._run import TrainingRun, check_unchanged, rng_state, set_rng_state
from .ddp import allreduce_sum, dist_group

__all__ = ["AudioStage", "LandmarkStage", "Stage"]


class Stage:
    """One stage: its model, optimizer, epoch plan, step loss and validation; :meth:`run`
    trains it (resuming from its checkpoint when asked and still valid).

    Args:
        model: the module trained (its ``config()`` is stored and checked on resume).
        frames: :class:`~.frames.TrainingFrames` on the device.
        config: :class:`~.config.AudioTrainConfig`.
        data: the datasets (validation splits, feature description).
        out_dir: the run directory.
        rank, world, device: the process of a (possibly distributed) run.
    """

    name = ""
    file = ""
    desc = ""
    seed_key = 0   # second entry of the epoch generator's seed (seed, seed_key, epoch)
    # the AudioTrainConfig fields of the stage's epochs, learning rate and weight decay
    epochs_field = lr_field = weight_decay_field = ""

    def __init__(self, model, frames, config, data, out_dir, rank, world, device):
        self.model, self.frames, self.config, self.data = model, frames, config, data
        self.rank, self.world, self.device = rank, world, device
        self.epochs = getattr(config, self.epochs_field)
        self.weight_decay = getattr(config, self.weight_decay_field)
        self.path = out_dir / self.file
        self.log_dir = out_dir / "tb" / self.name
        self.opt = torch.optim.Adam(model.parameters(), lr=getattr(config, self.lr_field),
                                    weight_decay=self.weight_decay)
        self.kinds = np.zeros(3, np.int64)  # negative kinds drawn (audio stage)
        self.anchors = None                 # fingerprint of the anchors (audio stage)
        self.step, self.last = 0, {}
        bs, n = config.batch_size, frames.n
        spe = max(n // bs + (1 if n % bs >= world else 0), 1)  # a tail < world is dropped
        self.steps_per_epoch = spe
        self.total = self.epochs * spe
        if config.max_steps is not None:
            self.total = min(self.total, int(config.max_steps))
        self.val = []  # (landmarks, audio windows) of each validation split (rank 0 only)
        if rank == 0:
            for d in data:
                idx = d.split("val")
                if len(idx) >= 2:
                    self.val.append((torch.from_numpy(d.landmarks[idx]).to(device),
                                     torch.from_numpy(d.audio[idx]).to(device)))

    # ------------------------------------------------------------------ what each stage sets

    def plan(self, rng: np.random.Generator, order: np.ndarray) -> tuple:
        """The stage's random draws of an epoch beyond the anchor order."""
        raise NotImplementedError

    def loss(self, step_model, plan: tuple, mine: np.ndarray, lo: int, hi: int
             ) -> torch.Tensor:
        """This process's loss of the global batch ``lo:hi`` (``mine``: its rows of it)."""
        raise NotImplementedError

    def validate(self) -> dict:
        """Validation metrics (rank 0, eval mode, no gradient), ``val_*``."""
        raise NotImplementedError

    def step_model(self):
        """The module whose forward a step calls (DDP wraps it)."""
        return self.model

    def before_step(self, step: int) -> None:
        """Per-step settings (the audio stage's learning rate)."""

    def summary(self) -> dict:
        return {}

    # ------------------------------------------------------------------ shared

    def state(self) -> dict:
        c = self.config
        return {"stage": self.name, "model_config": self.model.config(),
                "model": cpu_state(self.model), "optimizer": self.opt.state_dict(),
                "step": self.step, "total": self.total, "steps_per_epoch": self.steps_per_epoch,
                "order": self._order(), "data_fingerprint": self.frames.fingerprint,
                "rng": rng_state(self.device), "negative_kinds": [int(k) for k in self.kinds],
                "metrics": dict(self.last), "anchor_fingerprint": self.anchors,
                "features": self.data[0].features, "train_config": plain(dataclasses.asdict(c))}

    def _order(self) -> dict:
        return {"batch_size": self.config.batch_size, "seed": self.config.seed,
                "n_frames": self.frames.n}

    def _read(self) -> dict | None:
        """The stage checkpoint to resume from, checked (None: start afresh)."""
        ckpt = read_checkpoint(self.path, AUDIO_STAGE)
        if ckpt.get("stage") != self.name:
            raise BadInputError(f"{self.path} is not a {self.name}-stage checkpoint of jean "
                                "train-audio")
        if ckpt.get("anchor_fingerprint") != self.anchors:
            return None  # stage 1 changed since (it was resumed further): this one is stale
        check_unchanged(self.path, "widths", ckpt.get("model_config") or {},
                        self.model.config())
        check_unchanged(self.path, "sample-order settings or data", ckpt.get("order") or {},
                        self._order())
        if ckpt.get("data_fingerprint") != self.frames.fingerprint:
            raise BadInputError(f"cannot resume from {self.path}: the training data differ "
                                "from the checkpoint's")
        return ckpt

    def _load(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        self.kinds = np.asarray(ckpt.get("negative_kinds", [0, 0, 0]), np.int64)
        self.last = dict(ckpt.get("metrics", {}))
        set_rng_state(ckpt["rng"], self.device)

    def run(self, resume: bool, progress: bool) -> dict:
        """Trains the stage to ``total`` steps; returns ``step``, ``steps_per_epoch``,
        ``history`` (this call's ``(step, loss)``), the last ``loss`` and validation values
        (and the audio stage's negative kinds)."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        c, frames, rank, world = self.config, self.frames, self.rank, self.world
        ckpt = self._read() if resume and self.path.is_file() else None
        if ckpt is not None:
            self._load(ckpt)
        for g in self.opt.param_groups:  # settings may change on resume
            g["weight_decay"] = self.weight_decay
        step_model = self.step_model()
        if dist_group() is not None:
            step_model = DDP(step_model)
        bs = c.batch_size
        history, acc_loss, acc_n = [], 0.0, 0
        perm_epoch, plan = -1, None
        self.model.train()
        with TrainingRun(self.path, AUDIO_STAGE, self.state, step=self.step, total=self.total,
                         resumed=ckpt is not None, desc=self.desc, progress=progress,
                         log_dir=self.log_dir, main_process=rank == 0) as run:
            while self.step < self.total:
                epoch, k = divmod(self.step, self.steps_per_epoch)
                with run.step():
                    if epoch != perm_epoch:
                        rng = np.random.default_rng([c.seed, self.seed_key, epoch])
                        order = rng.permutation(frames.n)
                        plan = (order, *self.plan(rng, order))
                        perm_epoch = epoch
                    lo, hi = k * bs, min((k + 1) * bs, frames.n)
                    mine = np.array_split(np.arange(lo, hi), world)[rank]
                    self.before_step(self.step)
                    loss = self.loss(step_model, plan, mine, lo, hi)
                    self.opt.zero_grad(set_to_none=True)
                    (loss * (len(mine) / (hi - lo) * world)).backward()
                    self.opt.step()
                    self.step += 1
                    lsum, stop = allreduce_sum([float(loss.detach()) * len(mine),
                                                float(run.interrupted)], self.device)
                    lval = lsum / (hi - lo)
                    if not math.isfinite(lval):
                        raise FloatingPointError(f"non-finite loss at step {self.step} of the "
                                                 f"{self.name} stage; lower the learning "
                                                 "rate or check the data")
                    history.append((self.step, lval))
                    self.last["loss"] = lval
                acc_loss, acc_n = acc_loss + lval, acc_n + 1
                if self.step % c.log_every == 0 or self.step == self.total:
                    run.scalars({"loss": acc_loss / acc_n}, self.step, f"{self.name}/")
                    if self.name == "audio":
                        run.scalars({"lr": self.opt.param_groups[0]["lr"]}, self.step, "audio/")
                    acc_loss, acc_n = 0.0, 0
                if k + 1 == self.steps_per_epoch or self.step == self.total:
                    v = self._validate()
                    self.last.update(v)
                    run.scalars(v, self.step, f"{self.name}/")
                run.advance(self.step, loss=f"{lval:.4f}", epoch=epoch + 1)
                run.check_interrupt(stop > 0)
                if self.step % c.checkpoint_every == 0 or self.step == self.total:
                    run.save()
            if self.step == 0 and ckpt is None:
                run.save()  # max_steps=0: still leave a loadable (untrained) checkpoint
        d = dist_group()
        if d is not None:  # every rank's model is the same; make sure the checkpoint is written
            d.barrier()
        return {"step": self.step, "steps_per_epoch": self.steps_per_epoch, "history": history,
                **self.last, **self.summary()}

    def _validate(self) -> dict:
        if self.rank != 0 or not self.val:
            return {}
        self.model.eval()
        try:
            with torch.no_grad():
                return self.validate()
        finally:
            self.model.train()


class LandmarkStage(Stage):
    """Stage 1: the landmark autoencoder (Eq. 1), mouth swap with probability swap_prob."""

    name, file, desc, seed_key = "landmark", "landmark_ae.pt", "landmark autoencoder", 1
    epochs_field, lr_field, weight_decay_field = "ae_epochs", "ae_lr", "ae_weight_decay"

    def step_model(self):
        return MouthSwapStep(self.model)

    def plan(self, rng, order):
        return (self.frames.partners(rng, order),
                rng.random(self.frames.n) < self.config.swap_prob)

    def loss(self, step_model, plan, mine, lo, hi):
        order, partner, swap = plan
        dev, pts = self.device, self.frames.pts
        a = torch.from_numpy(order[mine]).to(dev)
        b = torch.from_numpy(partner[mine]).to(dev)
        s = torch.from_numpy(swap[mine]).to(dev)
        return mouth_swap_loss(*step_model(pts[a], pts[b], s))

    def validate(self):
        res = [swap_errors(self.model, p, p.roll(len(p) // 2, 0)) for p, _ in self.val]
        return {f"val_{k}": float(np.mean([r[k] for r in res]))
                for k in ("mouth_error", "eye_error", "recon_error")}


class AudioStage(Stage):
    """Stage 2: the audio encoder (InfoNCE, Eq. 2) against the mouth codes ``e_m`` [n, 64]
    of the frozen landmark autoencoder ``ae``."""

    name, file, desc, seed_key = "audio", "audio_encoder.pt", "audio encoder", 2
    epochs_field, lr_field, weight_decay_field = "audio_epochs", "lr", "audio_weight_decay"

    def __init__(self, model, frames, config, data, out_dir, rank, world, device, *, e_m, ae):
        super().__init__(model, frames, config, data, out_dir, rank, world, device)
        self.e_m, self.ae = e_m, ae
        self.anchors = hashlib.sha256(e_m.detach().cpu().numpy().tobytes()).hexdigest()

    def before_step(self, step):
        lr0, lr1 = self.config.lr, self.config.lr_end
        for g in self.opt.param_groups:
            g["lr"] = lr0 * (lr1 / lr0) ** (step / max(self.total - 1, 1))

    def plan(self, rng, order):
        return self.frames.negatives(rng, order, self.config.negatives,
                                     self.config.min_negative_gap_s)

    def loss(self, step_model, plan, mine, lo, hi):
        order, neg, kind = plan
        dev, audio, n = self.device, self.frames.audio, len(mine)
        a = torch.from_numpy(order[mine]).to(dev)
        ng = torch.from_numpy(neg[mine]).to(dev)          # [n, K]
        codes = step_model(torch.cat([audio[a], audio[ng.flatten()]]))
        e_pos, e_neg = codes[:n], codes[n:].view(n, ng.shape[1], -1)
        self.kinds += np.bincount(kind[lo:hi], minlength=3)  # global batch, every rank
        return info_nce(self.e_m[a], e_pos, e_neg, tau=self.config.tau,
                        in_batch=self.config.in_batch)

    def validate(self):
        top1 = []
        for p, a in self.val:
            r = retrieval_accuracy(self.model(a), self.ae.encode(p)[1], trials=3,
                                   seed=self.config.seed)
            top1.append(r["top1"] / r["chance_top1"])
        return {"val_top1_over_chance": float(np.mean(top1))}

    def summary(self):
        k = self.kinds
        total = int(k.sum()) or 1
        return {"negative_kinds": {"other_video": int(k[0]), "same_video_far": int(k[1]),
                                   "same_video_farthest": int(k[2]),
                                   "fraction_other_video": float(k[0] / total)}}
