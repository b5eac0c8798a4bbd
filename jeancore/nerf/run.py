"""A trained NeRF run, ready to render new sequences (audio, expression and pose from anywhere).

JEAN suppl. 8.4.2: at inference the NeRF renders on a white background; the audio code of
frame t is smoothed over frames t - 4 .. t + 3 of the *given* sequence and the expression
code is the frozen expression transformer's windowed code of the given emotion features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import BadInputError, ConfigError
from ..models.backbone import Backbone
from ..models.conditioning import AudioConditioner
from .volume_rendering import RayOps, render_image

__all__ = ["NerfRun", "load_nerf_run"]


@dataclass
class NerfRun:
    """Networks and dataset constants of a trained NeRF (from :func:`load_nerf_run`).

    Attributes:
        backbone: the NeRF backbone (:class:`~jeancore.models.backbone.Backbone`, e.g. the
            AD-NeRF coarse and fine F_theta), eval mode.
        conditioner: fine-tuned audio encoder + projection + attention smoothing.
        expression: the frozen expression transformer.
        size: the dataset's image side (pixels); intrinsics: (fx, fy, cx, cy) at that size.
        near, far: z-depth bounds (decimetres).
        background: uint8 [size, size, 3], the dataset's background image.
        dataset: the checkpoint's dataset record (root, fingerprint, n_frames, ...).
        config: the training settings (dict); step: training steps done.
        device: where the networks are.
        ray_ops: the ray-operation back end (fused kernels or the reference).
    """

    backbone: Backbone
    conditioner: AudioConditioner
    expression: torch.nn.Module
    size: int
    intrinsics: tuple
    near: float
    far: float
    background: np.ndarray
    dataset: dict
    config: dict
    step: int
    device: torch.device
    ray_ops: RayOps = field(default_factory=RayOps)

    @property
    def audio_window(self) -> int:
        return int(self.conditioner.encoder.window)

    @property
    def audio_dim(self) -> int:
        return int(self.conditioner.encoder.in_dim)

    @torch.no_grad()
    def expression_codes_from_features(self, features) -> torch.Tensor:
        """Per-frame expression codes e_e of an emotion-feature sequence.

        Args:
            features: float [T, 128] (numpy or torch): ``emotion.npz`` ``features`` of any
                preprocessed video (the expression source).

        Returns:
            float32 [T, 64] on :attr:`device` (frame t: middle output of the expression
            transformer on the window of omega = 8 frames around t; suppl. 8.4.2).

        Raises:
            BadInputError: wrong shape or non-finite values.
        """
        x = torch.as_tensor(np.ascontiguousarray(features)
                            if not isinstance(features, torch.Tensor) else features,
                            dtype=torch.float32)
        return self.expression.expression_codes(x.cpu()).to(self.device)

    @torch.no_grad()
    def audio_codes(self, audio_windows) -> torch.Tensor:
        """Smoothed audio codes e_a of a sequence: float [T, window, D] -> [T, 32] on
        :attr:`device` (smoothing windows built from the sequence itself, edges repeated).

        Raises:
            BadInputError: features of another width or window than the encoder's.
        """
        a = torch.as_tensor(np.ascontiguousarray(audio_windows) if not isinstance(audio_windows,
                                                                        torch.Tensor)
                            else audio_windows, dtype=torch.float32).to(self.device)
        if a.dim() != 3 or a.shape[1:] != (self.audio_window, self.audio_dim):
            raise BadInputError(f"audio windows must be [T, {self.audio_window}, "
                                f"{self.audio_dim}] (the features this NeRF was trained "
                                f"with), got {list(a.shape)}")
        return self.conditioner.sequence(a)

    def _background(self, background, size: int) -> torch.Tensor:
        if isinstance(background, str):
            if background == "white":
                return torch.ones(3, device=self.device)
            if background == "dataset":
                import cv2

                bg = self.background
                if bg.shape[0] != size:
                    bg = cv2.resize(bg, (size, size), interpolation=cv2.INTER_AREA)
                return torch.from_numpy(bg).to(self.device).float() / 255.0
            raise ConfigError(f"background must be 'white', 'dataset' or a tensor, got "
                              f"{background!r}")
        bg = torch.as_tensor(background, device=self.device)
        if bg.dtype == torch.uint8:
            bg = bg.float() / 255.0
        bg = bg.float()
        if bg.shape not in ((3,), (size, size, 3)):
            raise BadInputError(f"background tensor must be [3] or [{size}, {size}, 3], got "
                                f"{list(bg.shape)}")
        return bg

    @torch.no_grad()
    def render_frames(self, camera_to_head, audio_windows, expression_codes, *,
                      size: int | None = None, background="white", chunk_rays: int = 16384,
                      as_float: bool = False, with_opacity: bool = False,
                      **sampling) -> Iterator:
        """Render a sequence, one frame at a time, ``chunk_rays`` rays per network pass.

        Args:
            camera_to_head: float [T, 4, 4] camera-to-head transforms (OpenGL axes,
                decimetres; ``tracking.npz`` ``camera_to_head`` of the pose source).
            audio_windows: float [T, window, D] speech-feature windows
                (``audio_features.npy`` of the audio source).
            expression_codes: float [T, 64] e_e (:meth:`expression_codes_from_features`).
            size: output side in pixels (default: the dataset's); intrinsics are scaled.
            background: ``"white"`` (JEAN's inference setting), ``"dataset"`` (the training
                background) or a colour [3] / image [size, size, 3] (float in [0, 1] or uint8).
            chunk_rays: rays per pass (bounds memory).
            as_float: yield float32 RGB in [0, 1] instead of uint8 (no quantisation).
            with_opacity: yield ``(rgb, opacity)`` pairs, the opacity float32 [size, size] in
                [0, 1] (for :func:`jeancore.render.fullframe.compose_full`, render over
                ``background=(0, 0, 0)``: the colour is then premultiplied).
            **sampling: the backbone's sampling settings (default: the training values),
                e.g. AD-NeRF's ``n_coarse``, ``n_fine``.

        Yields:
            uint8 (or float32 with ``as_float``) [size, size, 3] RGB frames (or pairs, see
            ``with_opacity``).

        Raises:
            BadInputError: the three inputs have different lengths or wrong shapes.
        """
        c2w = torch.as_tensor(np.ascontiguousarray(camera_to_head) if not isinstance(
            camera_to_head, torch.Tensor) else camera_to_head, dtype=torch.float32)
        codes = torch.as_tensor(np.ascontiguousarray(expression_codes) if not isinstance(
            expression_codes, torch.Tensor) else expression_codes, dtype=torch.float32)
        if c2w.dim() != 3 or c2w.shape[1:] not in ((4, 4), (3, 4)):
            raise BadInputError(f"camera_to_head must be [T, 4, 4], got {list(c2w.shape)}")
        expr_dim = self.backbone.cond_dim - self.conditioner.code_dim
        if codes.dim() != 2 or codes.shape[1] != expr_dim:
            raise BadInputError(f"expression_codes must be [T, {expr_dim}], got "
                                f"{list(codes.shape)}")
        e_a = self.audio_codes(audio_windows)
        if not len(c2w) == len(codes) == len(e_a):
            raise BadInputError(f"camera_to_head, audio_windows and expression_codes must have "
                                f"one row per frame; got {len(c2w)}, {len(e_a)}, {len(codes)}")
        size = self.size if size is None else int(size)
        if size < 1:
            raise ConfigError(f"size must be >= 1, got {size}")
        s = size / self.size
        intr = tuple(v * s for v in self.intrinsics)
        bg = self._background(background, size)
        cond = torch.cat([e_a, codes.to(self.device)], -1)
        for t in range(len(c2w)):
            img = render_image(self.backbone, c2w[t].to(self.device), intr, size, self.near,
                               self.far, cond[t], bg, chunk_rays=int(chunk_rays),
                               ray_ops=self.ray_ops, amp=self.device.type == "cuda",
                               return_opacity=with_opacity, **sampling)
            img, opacity = img if with_opacity else (img, None)
            img = img.float().cpu().numpy() if as_float else \
                (img * 255).round().byte().cpu().numpy()
            yield (img, opacity.float().cpu().numpy()) if with_opacity else img

    def check_dataset(self, root) -> None:
        """Raises BadInputError when the dataset at ``root`` has other audio features than
        this run (width or window)."""
        from .data import load_nerf_data

        d = load_nerf_data(root, 8, images=False)
        if d.audio.shape[1:] != (self.audio_window, self.audio_dim):
            raise BadInputError(f"{root} has audio windows {list(d.audio.shape[1:])}; this "
                                f"NeRF takes [{self.audio_window}, {self.audio_dim}]")


def load_nerf_run(run_dir, device="cpu", *, ops: str = "fused", backbone: str | None = None,
                  **expected) -> NerfRun:
    """Load a run of :func:`jeancore.train.train_nerf` (``run_dir/checkpoint.pt``) to render.

    Args:
        run_dir: run directory or checkpoint file (format version 2, or 1: written before the
            backbone seam, loaded as the AD-NeRF backbone).
        device: torch device for the networks.
        ops: ``"fused"`` kernels or ``"reference"`` ops.
        backbone: the backbone the caller needs (e.g. ``"grid"``); None: any.
        **expected: backbone settings the caller needs (keys of the backbone's config, e.g.
            ``width=128``); other values raise ConfigError.

    Raises:
        FileNotFoundError: no checkpoint.
        BadInputError: not a NeRF checkpoint, an unknown backbone, or weights that do not fit
            its stored settings.
        ConfigError: another backbone than ``backbone``, settings other than ``expected``.
    """
    from ..checkpoints import check_expected, read_nerf_checkpoint
    from ..models.backbone import BACKBONES, build_backbone
    from ..models.expression import ExpressionTransformer

    path = Path(run_dir)
    ckpt = read_nerf_checkpoint(path)
    if backbone is not None and ckpt["backbone"] != backbone:
        raise ConfigError(f"{path} is a NeRF of the {ckpt['backbone']!r} backbone, not "
                          f"{backbone!r}")
    settings = ckpt["backbone_config"]
    check_expected(settings, expected, path, "NeRF")
    ds = ckpt["dataset"]
    dev = torch.device(device)
    try:
        net = build_backbone(ckpt["backbone"], settings, ckpt["cond_dim"],
                             ds["head_center"], ds["head_radius"],
                             audio_dim=int(ckpt["conditioner_config"]["code_dim"]))
    except ConfigError as e:
        raise BadInputError(f"{path}: {e} (known backbones: {sorted(BACKBONES)})") from e
    try:
        net.load_state_dict(ckpt["model"])
        cond = AudioConditioner.from_config(ckpt["conditioner_config"])
        cond.load_state_dict(ckpt["conditioner"])
        expr = ExpressionTransformer.from_config(ckpt["expression_config"])
        expr.load_state_dict(ckpt["expression"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise BadInputError(f"{path}: the stored weights do not fit the stored settings "
                            f"{settings}: {str(e).splitlines()[0]}") from e
    return NerfRun(backbone=net.to(dev).eval(), conditioner=cond.to(dev).eval(),
                   expression=expr.eval(), size=int(ds["dataset_size"]),
                   intrinsics=tuple(float(v) for v in ds["intrinsics"]), near=float(ds["near"]),
                   far=float(ds["far"]), background=ds["background"].numpy(), dataset=ds,
                   config=ckpt["train_config"], step=int(ckpt["step"]), device=dev,
                   ray_ops=RayOps(ops))
