"""The audio training run (``jean train-audio``, JEAN Sec. 3.1): stage 1 then stage 2
(:mod:`.stages`), the trained :class:`~jeancore.models.AudioModel` (``model.pt``) and, with
``evaluate``, its evaluation on the validation splits (``metrics.json``)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..._io import save_json
from ...checkpoints import AUDIO_MODEL_NAME
from ...errors import ConfigError
from ...metrics.audio import evaluate_audio
from ...models.audio import AudioEncoder, LandmarkAutoencoder
from ...models.audio_model import AudioModel
from .._run import isolated_rng
from .config import AudioTrainConfig
from .dataset import load_audio_datasets
from .ddp import dist_group, setup_distributed
from .frames import TrainingFrames
from .stages import AudioStage, LandmarkStage

__all__ = ["train_audio"]


def train_audio(datasets, out_dir, config: AudioTrainConfig | None = None, *,
                resume: bool = False, progress: bool = True, evaluate: bool = True) -> dict:
    """Trains the landmark autoencoder (stage 1, Eq. 1) then the audio encoder (stage 2,
    InfoNCE, Eq. 2) on the training splits of ``datasets``; see :mod:`jeancore.train.audio`.

    Runs as one process, or under ``torchrun --nproc_per_node=K`` with DDP (every process
    calls this with the same arguments).

    Args:
        datasets: sources as :func:`~.dataset.load_audio_datasets` takes (at least one).
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
        BadInputError: see :func:`~.dataset.load_audio_datasets`.
        ConfigError: bad settings; resume with other widths / order settings.
        FileNotFoundError: resume without checkpoints.
    """
    config = AudioTrainConfig() if config is None else config
    if not isinstance(config, AudioTrainConfig):
        raise ConfigError(f"config must be an AudioTrainConfig, got {type(config).__name__}")
    config.validate()
    data = load_audio_datasets(datasets)
    out_dir = Path(out_dir)
    if resume and not any((out_dir / s.file).is_file() for s in (LandmarkStage, AudioStage)):
        raise FileNotFoundError(f"nothing to resume in {out_dir}: no {LandmarkStage.file}")
    rank, world, device, created = setup_distributed(config.device)
    if config.batch_size < world:
        raise ConfigError(f"batch_size ({config.batch_size}) must be >= the number of "
                          f"processes ({world})")
    try:
        with isolated_rng(device):
            return _train_all(data, out_dir, config, resume, progress, evaluate, rank, world,
                              device)
    finally:
        if created:
            import torch.distributed as dist
            dist.destroy_process_group()


def _train_all(data, out_dir, config, resume, progress, evaluate, rank, world, device):
    frames = TrainingFrames(data, "train")
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
    result["landmark"] = LandmarkStage(ae, frames, config, data, out_dir, rank, world,
                                       device).run(resume, progress)
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
    result["audio"] = AudioStage(enc, frames, config, data, out_dir, rank, world, device,
                                 e_m=e_m, ae=ae).run(resume, progress)
    result["audio"]["seconds"] = time.time() - t0

    model = AudioModel(enc, ae, dict(features), {
        "datasets": result["datasets"], "config": dataclasses.asdict(config),
        "negatives_used": result["audio"].get("negative_kinds")})
    model_path = out_dir / AUDIO_MODEL_NAME
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
    d = dist_group()
    if d is not None:
        d.barrier()
    return result
