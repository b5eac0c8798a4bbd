"""Metrics of the landmark autoencoder and the contrastive audio encoder (JEAN Sec. 3.1).

* :func:`retrieval_accuracy` -- audio-to-mouth retrieval: for each frame's audio code e_a,
  rank the mouth codes e_m of a set of candidate frames of the same clip by cosine
  similarity (Eq. 2's d); top-k accuracy = how often the frame's own mouth code is among the
  k best. Chance is k / n_candidates.
* :func:`swap_errors` -- the mouth-swap test of the landmark autoencoder: decode
  (e_f of A, e_m of B) and measure the mouth points against B and the eye-nose points
  against A.
* :func:`evaluate_audio` -- both on a split of loaded datasets (``jean evaluate-audio``).
* :func:`audio_lip_agreement` -- retrieval between the driving speech and the mouths of
  rendered (or real) frames, with our own encoders (``jean evaluate``; not SyncNet).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from .._config import with_settings
from ..errors import BadInputError

__all__ = ["AudioEvalConfig", "audio_lip_agreement", "evaluate_audio", "retrieval_accuracy",
           "swap_errors"]


def _as_tensor(x, name) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if not t.is_floating_point():
        raise BadInputError(f"{name} must be a float array")
    return t.detach().to("cpu", torch.float64)


def retrieval_accuracy(audio_codes, mouth_codes, *, n_candidates: int = 32, trials: int = 10,
                       seed: int = 0, ks=(1, 5), return_queries: bool = False) -> dict:
    """Audio-to-mouth retrieval among candidate frames of one clip.

    Each trial draws ``n_candidates`` distinct frames (all frames when the clip has fewer; then
    a single trial); every candidate's audio code queries the candidates' mouth codes ranked
    by cosine similarity; a query succeeds at k when fewer than k other candidates score
    strictly higher than its own frame.

    Args:
        audio_codes: float [T, C] e_a per frame (numpy or torch).
        mouth_codes: float [T, C] e_m of the same frames.
        n_candidates: frames per candidate set (32).
        trials: random candidate sets (ignored when T <= n_candidates).
        seed: seed of the candidate draws.
        ks: the k of the top-k accuracies.
        return_queries: also return every query's rank and the candidate sets (analysis).

    Returns:
        dict: ``top{k}`` accuracy and ``chance_top{k}`` (= min(k, n) / n) for each k,
        ``n_candidates`` used, ``queries`` (number of queries); with ``return_queries``,
        ``candidate_sets`` (list of int arrays of frame indices, sorted) and ``query_ranks``
        (int array: the rank of each query, set after set in that order; 0 = top-1).

    Raises:
        BadInputError: shapes disagree or fewer than 2 frames.
    """
    a, m = _as_tensor(audio_codes, "audio_codes"), _as_tensor(mouth_codes, "mouth_codes")
    if a.dim() != 2 or a.shape != m.shape:
        raise BadInputError(f"audio_codes and mouth_codes must both be [T, C], got "
                            f"{list(a.shape)} and {list(m.shape)}")
    t = a.shape[0]
    if t < 2:
        raise BadInputError(f"retrieval needs at least 2 frames, got {t}")
    n = min(int(n_candidates), t)
    rng = np.random.default_rng(seed)
    sets = [np.arange(t)] if t <= n else [np.sort(rng.choice(t, n, replace=False))
                                          for _ in range(int(trials))]
    a, m = F.normalize(a, dim=1), F.normalize(m, dim=1)
    ranks = []
    for s in sets:
        idx = torch.from_numpy(s)
        sim = a[idx] @ m[idx].t()                                  # [n, n]
        own = sim.diagonal()[:, None]
        ranks.append((sim > own).sum(1))
    ranks = torch.cat(ranks)
    out = {"n_candidates": n, "queries": int(ranks.numel())}
    if return_queries:
        out["candidate_sets"] = sets
        out["query_ranks"] = ranks.numpy()
    for k in ks:
        out[f"top{k}"] = float((ranks < k).double().mean())
        out[f"chance_top{k}"] = min(k, n) / n
    return out


@torch.no_grad()
def swap_errors(autoencoder, pts_a: torch.Tensor, pts_b: torch.Tensor) -> dict:
    """Mouth-swap test of the landmark autoencoder (JEAN Sec. 3.1, Eq. 1).

    Decodes ``LD(e_f^A, e_m^B)`` and measures mean Euclidean point errors (in the units of
    the normalised landmarks: inter-ocular distance 1, see
    :func:`jeancore.models.audio.normalize_landmarks`).

    Args:
        autoencoder: :class:`~jeancore.models.audio.LandmarkAutoencoder` (eval mode is used).
        pts_a, pts_b: float [B, 51, 2] normalised landmarks of frames A and B.

    Returns:
        dict: ``mouth_error`` (decoded mouth vs B's mouth), ``eye_error`` (decoded eye-nose
        points vs A's), ``recon_error`` (plain LD(LE(A)) vs A, all points), and the
        references ``mouth_distance_ab`` (A's mouth vs B's: the mouth error of a decoder that
        ignored e_m^B) and ``eye_distance_ab`` (B's eye-nose vs A's).
    """
    was = autoencoder.training
    autoencoder.eval()
    try:
        if pts_a.shape != pts_b.shape or pts_a.dim() != 3:
            raise BadInputError(f"pts_a and pts_b must both be [B, 51, 2], got "
                                f"{list(pts_a.shape)} and {list(pts_b.shape)}")
        p = next(autoencoder.parameters())
        pts_a, pts_b = pts_a.to(p.device, p.dtype), pts_b.to(p.device, p.dtype)
        f_a, m_a = autoencoder.encode(pts_a)
        _, m_b = autoencoder.encode(pts_b)
        mix = autoencoder.decode(f_a, m_b)
        rec = autoencoder.decode(f_a, m_a)
        mouth = autoencoder.mouth
        eye = slice(0, mouth.start)

        def err(x, y):
            return float((x - y).norm(dim=-1).mean())

        return {"mouth_error": err(mix[:, mouth], pts_b[:, mouth]),
                "eye_error": err(mix[:, eye], pts_a[:, eye]),
                "recon_error": err(rec, pts_a),
                "mouth_distance_ab": err(pts_a[:, mouth], pts_b[:, mouth]),
                "eye_distance_ab": err(pts_a[:, eye], pts_b[:, eye])}
    finally:
        autoencoder.train(was)


@dataclasses.dataclass
class AudioEvalConfig:
    """Settings of :func:`evaluate_audio` (``jean evaluate-audio``)."""

    split: str = "val"
    """The frames evaluated: 'val' (speech not seen in training), 'train' or 'all'."""
    n_candidates: int = 32
    """Candidate frames of one clip per retrieval trial (all its frames when fewer)."""
    trials: int = 10
    """Candidate sets per dataset."""
    seed: int = 0
    """Seed of the candidate sets and of the swap partners."""


def evaluate_audio(model, datasets, config: AudioEvalConfig | None = None, **settings) -> dict:
    """Audio-to-mouth retrieval and the landmark-autoencoder swap test on a split.

    Retrieval (:func:`retrieval_accuracy`): per dataset, the audio
    code e_a of each frame of the split queries the mouth codes e_m of ``n_candidates``
    frames of the same split (all of them when fewer), top-1 / top-5 accuracy vs chance.
    Swap test (:func:`swap_errors`): frame A = each frame of the split,
    B = a random other frame of the same split; errors in inter-ocular units.

    Args:
        model: :class:`~jeancore.models.AudioModel`.
        datasets: loaded datasets (:func:`jeancore.train.audio.load_audio_datasets`:
            objects with ``name``, ``identity``, ``root``, ``features``, normalised
            ``landmarks`` [T, 51, 2], ``audio`` [T, window, D] and ``split(which)``).
        config: :class:`AudioEvalConfig` (default: its defaults).
        settings: fields of :class:`AudioEvalConfig` to change (e.g. ``split="train"``).

    Returns:
        dict: ``datasets`` (per dataset: frames, top1, top5, chance_top1, chance_top5,
        n_candidates, swap errors), ``overall`` (query-weighted means, ``top1_over_chance``),
        ``swap`` (frame-weighted means).

    Raises:
        BadInputError: no datasets or unloaded ones (paths), a dataset whose features differ
            from the model's, a split with fewer than 2 frames.
        ConfigError: an unknown setting.
    """
    if not (isinstance(datasets, (list, tuple)) and datasets
            and all(hasattr(d, "landmarks") and hasattr(d, "split") for d in datasets)):
        raise BadInputError("evaluate_audio needs loaded datasets: load the folders with "
                            "jeancore.train.audio.load_audio_datasets(...) first")
    config = with_settings(AudioEvalConfig, config, settings)
    split, n_candidates, trials, seed = (config.split, config.n_candidates, config.trials,
                                         config.seed)
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


def audio_lip_agreement(frames_landmarks, audio_windows, audio_model=None) -> dict:
    """Audio-to-mouth retrieval between speech and the mouths of a frame sequence (our own
    encoders' score, JEAN Sec. 3.1; not SyncNet).

    Args:
        frames_landmarks: float [T, 68, 2] iBUG-68 landmarks of the frames (NaN rows: no face;
            they are left out).
        audio_windows: float [T, window, D] the speech windows that drove the frames.
        audio_model: a :class:`jeancore.models.AudioModel`, a path, or None (the shipped
            generic encoders, :func:`jeancore.checkpoints.load_audio_model`).

    Returns:
        dict: ``top1``, ``top5``, ``chance_top1``, ``chance_top5``, ``n_candidates``,
        ``frames`` (with a face); None values when fewer than 2 frames have a face.

    Raises:
        BadInputError: the windows do not fit the audio encoder, or lengths differ.
    """
    from ..checkpoints import load_audio_model
    from ..models.audio import normalize_landmarks
    from ..models.audio_model import AudioModel

    model = audio_model if isinstance(audio_model, AudioModel) else load_audio_model(audio_model)
    pts = np.asarray(frames_landmarks, np.float32)
    win = np.asarray(audio_windows, np.float32)
    if len(pts) != len(win):
        raise BadInputError(f"landmarks and audio windows must have one row per frame, got "
                            f"{len(pts)} and {len(win)}")
    ok = np.isfinite(pts).all(axis=(1, 2))
    if ok.sum() < 2:
        return {"top1": None, "top5": None, "frames": int(ok.sum())}
    with torch.no_grad():
        e_m = model.landmark_ae.encode(normalize_landmarks(pts[ok]))[1]
        e_a = model.audio_encoder(torch.from_numpy(win[ok]))
    out = retrieval_accuracy(e_a, e_m)
    out["frames"] = int(ok.sum())
    return out
