"""Plots a user looks at to judge the expression codes (paper Figs. 5, 7, 8).

* :func:`plot_code_embedding` -- a 2-D embedding (PCA or t-SNE, scikit-learn) of per-frame
  codes coloured by emotion.
* :func:`interpolate_emotions` / :func:`plot_interpolation` -- a linear path between two
  emotions' mean e_e, decoded by the transformer to the emotion-feature space and read by the
  emotion CNN's head (:meth:`~jeancore.data.emotion.MiniXception.classify_pooled`, an
  approximation on pooled features), as class probabilities along the path.
* :func:`plot_expression_run` -- all of them for a trained run and MEAD clips
  (``jean plot-expression``, settings :class:`ExpressionPlotConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_path

__all__ = ["EMBEDDINGS", "ExpressionPlotConfig", "embed_2d", "plot_code_embedding",
           "interpolate_emotions", "plot_interpolation", "plot_expression_run"]

EMBEDDINGS = ("pca", "tsne")
"""The 2-D embeddings of :func:`embed_2d`."""


def embed_2d(codes: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D embedding [N, 2] of codes [N, d] by ``"pca"`` or ``"tsne"`` (scikit-learn).

    Raises:
        ValueError: unknown method or fewer than 3 codes.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) < 3:
        raise ValueError(f"need codes [N >= 3, d], got {codes.shape}")
    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(codes)
    if method == "tsne":  # EMBEDDINGS
        return TSNE(2, perplexity=min(30.0, (len(codes) - 1) / 3), init="pca",
                    random_state=seed).fit_transform(codes)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def _save(fig, out) -> Path:
    import matplotlib.pyplot as plt

    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out


def plot_code_embedding(codes_by_label: dict, out, *, method: str = "pca",
                        title: str = "") -> Path:
    """Scatter of a 2-D embedding of codes, one colour per label (e.g. emotion); PNG.

    Args:
        codes_by_label: {label: float [N_i, d]}.
        out: PNG path (written atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(codes_by_label)
    allc = np.concatenate([codes_by_label[k] for k in labels])
    xy = embed_2d(allc, method)
    fig, ax = plt.subplots(figsize=(6, 5))
    s = 0
    for k in labels:
        n = len(codes_by_label[k])
        ax.scatter(xy[s:s + n, 0], xy[s:s + n, 1], s=6, label=str(k))
        s += n
    ax.legend(fontsize=7, markerscale=2)
    ax.set_title(title or f"{method.upper()} of per-frame codes", fontsize=9)
    return _save(fig, out)


def interpolate_emotions(model, emotion_cnn, features_a: np.ndarray, features_b: np.ndarray,
                         steps: int = 11) -> np.ndarray:
    """Class probabilities along a linear path between two clips' mean expression codes.

    The lip codes of ``features_a``'s middle window are kept; its expression codes are
    replaced at every position by ``(1 - t) * mean e_e(A) + t * mean e_e(B)``, decoded
    greedily by the transformer, averaged over the window and classified by the emotion
    CNN's head on pooled features.

    Args:
        model: :class:`~jeancore.models.ExpressionTransformer`.
        emotion_cnn: :class:`~jeancore.data.emotion.MiniXception`.
        features_a, features_b: float [T, in_dim] emotion features of two clips.
        steps: points on the path (t from 0 to 1).

    Returns:
        float32 [steps, 7] probabilities.
    """
    import torch

    _, e_a = model.frame_codes(np.asarray(features_a, np.float32))
    _, e_b = model.frame_codes(np.asarray(features_b, np.float32))
    w = model.window
    start = max(0, len(features_a) // 2 - w // 2)
    window = torch.from_numpy(np.asarray(features_a[start:start + w], np.float32))[None]
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            e_l, _ = model.encode(window.to(p.device))
            out = []
            for t in np.linspace(0, 1, steps):
                e = (1 - t) * e_a.mean(0) + t * e_b.mean(0)
                e_e = torch.from_numpy(np.asarray(e, np.float32)).to(p.device)
                e_e = e_e.expand(1, e_l.shape[1], -1)
                frames, _ = model.generate(model.memory(e_l, e_e))
                pooled = frames.mean(dim=1).to(next(emotion_cnn.parameters()).device)
                out.append(emotion_cnn.classify_pooled(pooled)[0].cpu().numpy())
    finally:
        model.train(was_training)
    return np.stack(out).astype(np.float32)


def plot_interpolation(probs: np.ndarray, labels, out, *, title: str = "") -> Path:
    """Lines of class probabilities [steps, C] along an interpolation; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.linspace(0, 1, len(probs))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for c, name in enumerate(labels):
        ax.plot(t, probs[:, c], label=name)
    ax.set_xlabel("interpolation t")
    ax.set_ylabel("probability (emotion CNN)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=4)
    ax.set_title(title, fontsize=9)
    return _save(fig, out)


@dataclass
class ExpressionPlotConfig:
    """Settings of :func:`plot_expression_run` (``jean plot-expression``)."""

    method: str = "tsne"
    """2-D embedding of the codes: 'pca' or 'tsne'."""
    from_emotion: str = "neutral"
    """Start of the interpolation between two emotions' mean e_e."""
    to_emotion: str = "happy"
    """End of the interpolation."""


def plot_expression_run(run, sources, out, config: ExpressionPlotConfig | None = None, *,
                        identity: str | None = None) -> list[Path]:
    """The plots of a trained expression transformer on MEAD clips (paper Figs. 5, 7, 8):
    ``expression_codes.png`` and ``lip_codes.png`` (2-D embeddings of the per-frame e_e and
    e_l, one colour per identity and emotion) and, when both emotions are among the clips,
    ``interpolation_<from>_<to>.png`` (:func:`interpolate_emotions` between the first clip of
    each).

    Args:
        run: run directory of ``jean train-expression`` (``checkpoint.pt``; the emotion
            features of the clips are cached in its ``features/``).
        sources: MEAD roots / folders of MEAD-named clips
            (:func:`jeancore.data.pairs.find_mead_clips`).
        out: folder for the PNGs (written atomically).
        config: :class:`ExpressionPlotConfig`.
        identity: only this identity's clips (None: all).

    Returns:
        the PNG paths written.

    Raises:
        BadInputError: no clips (for ``identity``); an unreadable run.
    """
    from ..checkpoints import load_expression_model
    from ..data.emotion import EMOTION_LABELS, load_emotion_cnn
    from ..data.pairs import find_mead_clips
    from ..errors import BadInputError
    from .expression import clip_codes

    config = config or ExpressionPlotConfig()
    run, out = Path(run), Path(out)
    model = load_expression_model(run / "checkpoint.pt")
    clips = [c for src in sources for c in find_mead_clips(src)
             if identity in (None, c.identity)]
    if not clips:
        raise BadInputError("no clips to plot" + (f" for identity {identity!r}"
                                                  if identity else ""))
    feats, e_e, e_l = {}, {}, {}
    for c, f, lip, expr in clip_codes(model, clips, run / "features"):
        key = f"{c.identity} {c.emotion}"
        feats.setdefault(c.emotion, f)
        e_e.setdefault(key, []).append(expr)
        e_l.setdefault(key, []).append(lip)
    m = config.method
    made = [plot_code_embedding({k: np.concatenate(v) for k, v in e_e.items()},
                                out / "expression_codes.png", method=m, title=f"e_e ({m})"),
            plot_code_embedding({k: np.concatenate(v) for k, v in e_l.items()},
                                out / "lip_codes.png", method=m, title=f"e_l ({m})")]
    a, b = config.from_emotion, config.to_emotion
    if a in feats and b in feats:
        probs = interpolate_emotions(model, load_emotion_cnn(), feats[a], feats[b])
        made.append(plot_interpolation(probs, EMOTION_LABELS, out / f"interpolation_{a}_{b}.png",
                                       title=f"{a} -> {b}: emotion CNN on decoded features"))
    return made
