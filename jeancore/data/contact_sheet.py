"""The contact sheet of a preprocessed dataset: what a user looks at to trust the data.

Sampled frames with the detected landmarks (green) and the projected 3DMM fit (red), the same
frames with the head (green) / torso (blue) parsing, the background image, and plots of head
pose, 3DMM expression and emotion probabilities over time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_path, read_image

__all__ = ["make_contact_sheet", "rotation_to_euler"]


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """Yaw, pitch, roll in degrees [T, 3] of head-to-camera rotations [T, 3, 3] (intrinsic
    y-x-z angles: yaw about the vertical axis, pitch about the horizontal, roll in the image
    plane)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(rotation, np.float64)).as_euler("YXZ", degrees=True)


def make_contact_sheet(root, out, *, n_samples: int = 6, first_frame: int | None = None,
                       fps: float | None = None) -> Path:
    """Draw ``contact_sheet.png`` for the dataset folder ``root`` (written atomically to
    ``out``).

    Args:
        root: dataset directory (needs frames/, parsing/, landmarks.npz, tracking.npz,
            emotion.npz, background.png).
        out: output PNG path.
        n_samples: frames shown.
        first_frame: index of the dataset's first frame among the decoded frames (meta.json's
            ``first_frame``); read from meta.json when None.
        fps: frame rate for the time axis (meta.json when None).

    Returns:
        ``out`` as a Path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .camera import HeadTracking
    from .emotion import EMOTION_LABELS
    from .parsing import LABEL_HEAD, LABEL_TORSO

    root = Path(root)
    if first_frame is None or fps is None:
        from .meta import read_meta

        meta = read_meta(root)
        first_frame = meta["first_frame"] if first_frame is None else first_frame
        fps = meta["fps"] if fps is None else fps
    with np.load(root / "landmarks.npz") as z:
        points = z["points"]
    tr = HeadTracking.load(root / "tracking.npz")
    with np.load(root / "emotion.npz") as z:
        probs = z["probs"]
    background = read_image(root / "background.png")
    n = len(points)
    picks = np.linspace(0, n - 1, min(n_samples, n)).round().astype(int)

    cols = len(picks) + 1
    fig = plt.figure(figsize=(2.4 * cols, 2.4 * 2 + 2.2 * 3), dpi=100)
    gs = fig.add_gridspec(5, cols, height_ratios=[1, 1, 0.9, 0.9, 0.9])
    for c, j in enumerate(picks):
        i = first_frame + int(j)
        frame = read_image(root / "frames" / f"{i:06d}.jpg")
        ax = fig.add_subplot(gs[0, c])
        ax.imshow(frame)
        ax.scatter(points[j, :, 0] - 0.5, points[j, :, 1] - 0.5, s=2, c="lime", linewidths=0)
        ax.scatter(tr.projected[j, :, 0] - 0.5, tr.projected[j, :, 1] - 0.5, s=2, c="red",
                   linewidths=0)
        err = tr.reprojection_error[j]
        ax.set_title(f"frame {j}  {j / fps:.1f}s\nerr {err:.2f}px", fontsize=7)
        ax.axis("off")
        label = read_image(root / "parsing" / f"{i:06d}.png")
        over = frame.astype(np.float32)
        over[label == LABEL_HEAD] = 0.5 * over[label == LABEL_HEAD] + [0, 127, 0]
        over[label == LABEL_TORSO] = 0.5 * over[label == LABEL_TORSO] + [0, 0, 127]
        ax = fig.add_subplot(gs[1, c])
        ax.imshow(over.clip(0, 255).astype(np.uint8))
        ax.set_title("head / torso", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(gs[0, -1])
    ax.imshow(background)
    ax.set_title("background", fontsize=7)
    ax.axis("off")
    seen_path = root / "background_seen.png"
    if seen_path.exists():
        ax = fig.add_subplot(gs[1, -1])
        ax.imshow(read_image(seen_path), cmap="gray", vmin=0, vmax=255)
        ax.set_title("background seen", fontsize=7)
        ax.axis("off")

    t = np.arange(n) / fps
    ax = fig.add_subplot(gs[2, :])
    euler = rotation_to_euler(tr.rotation)
    for k, name in enumerate(("yaw", "pitch", "roll")):
        ax.plot(t, euler[:, k], label=name, lw=1)
    ax2 = ax.twinx()
    ax2.plot(t, tr.translation[:, 2], color="k", lw=0.8, ls="--", label="t_z (dm)")
    ax.set_ylabel("degrees", fontsize=8)
    ax2.set_ylabel("t_z (dm)", fontsize=8)
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    ax.set_title(f"head pose (focal {tr.focal:.0f}px, near {tr.near:.2f}, far {tr.far:.2f} dm; "
                 f"mean reprojection error {np.nanmean(tr.reprojection_error):.2f}px)",
                 fontsize=8)
    ax = fig.add_subplot(gs[3, :])
    ax.plot(t, tr.expression, lw=0.8)
    ax.set_title("3DMM expression coefficients (10)", fontsize=8)
    ax = fig.add_subplot(gs[4, :])
    ax.stackplot(t, probs.T, labels=EMOTION_LABELS)
    ax.set_xlim(t[0], t[-1] if n > 1 else 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=7, ncol=7)
    ax.set_title("emotion probabilities (mini-Xception)", fontsize=8)
    ax.set_xlabel("time (s)", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
