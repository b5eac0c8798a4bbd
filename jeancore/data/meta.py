"""``meta.json``, the file that makes a folder a dataset: ``jean preprocess`` writes it last
(a folder without it is not a finished dataset), every reader checks it first. What it holds:
``docs/dataset.md``."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from .._io import save_json
from ..errors import BadInputError

__all__ = ["FORMAT_VERSION", "SOURCE_FILE", "read_meta", "write_meta"]

#: Version of the dataset layout (meta.json ``format_version``); readers refuse newer ones.
FORMAT_VERSION = 1
#: Identifies the video a dataset folder belongs to (written first, before any step runs).
SOURCE_FILE = ".jeancore-source.json"


def read_meta(root) -> dict:
    """meta.json of a finished dataset.

    Args:
        root: the dataset folder, or its ``meta.json`` file.

    Raises:
        BadInputError: ``root`` is not a finished jeancore dataset, or has a newer format.
    """
    root = Path(root)
    if root.is_file():
        path, root = root, root.parent
    else:
        path = root / "meta.json"
    if not path.is_file():
        hint = (" (an interrupted `jean preprocess`: run it again to finish)"
                if (root / ".steps").is_dir() else "")
        raise BadInputError(f"{root} is not a jeancore dataset: no meta.json{hint}. Make one "
                            "with `jean preprocess VIDEO --out DIR`.")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != "jeancore-dataset":
        raise BadInputError(f"{path} is not a jeancore dataset's meta.json")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise BadInputError(f"{root} has dataset format {meta['format_version']}; this jeancore "
                            f"reads up to {FORMAT_VERSION}: upgrade jeancore")
    return meta


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version(), "jeancore": __version__}
    for pkg in ("torch", "numpy", "av", "librosa", "dlib-bin", "mediapipe", "opencv-python-headless"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_meta(root, cfg, source: dict, summaries: dict, seconds: dict, total: float) -> dict:
    """Write ``root/meta.json`` (atomically) from a finished run's step summaries.

    Args:
        root: the dataset folder.
        cfg: the run's :class:`~jeancore.data.config.PreprocessConfig`.
        source: the source files' paths and SHA-256 (:data:`SOURCE_FILE`'s content).
        summaries: each step's summary (``jeancore.data.steps``), by step name.
        seconds: each step's run time in seconds (0 when cached); total: the whole run's.

    Returns:
        the meta.json content.
    """
    s = summaries
    lm, tr = s["landmarks"], s["tracking"]
    n = lm["n_frames"]
    n_val = int(round(n * cfg.val_fraction))
    meta = {
        "format": "jeancore-dataset", "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {**source, **s["decode"]["source"]},
        "config": asdict(cfg),
        "fps": cfg.fps, "size": cfg.size, "n_frames": n,
        "first_frame": lm["first_frame"], "n_decoded": lm["n_decoded"],
        "duration": n / cfg.fps,
        "crop": s["decode"]["crop"], "face_motion": s["decode"]["face_motion"],
        "has_audio": bool(s["decode"]["has_audio"]),
        "audio": s["audio"] if s["audio"]["features"] else None,
        "landmarks": {k: lm[k] for k in ("backend", "found", "interpolated",
                                         "interpolated_frames", "no_face_frames", "dropped")},
        "tracking": tr,
        "parsing": s["parsing"],
        "emotion": s["emotion"],
        "split": {"val_fraction": cfg.val_fraction, "n_train": n - n_val, "n_val": n_val,
                  "val_start": n - n_val},
        "versions": _versions(),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "seconds_total": round(total, 3),
    }
    save_json(Path(root) / "meta.json", meta)
    return meta
