"""Atomic file writes: nothing the user made is left half-written.

Every writer writes to a temporary name in the destination's directory and renames it over
the destination (``os.replace``, atomic on POSIX), so a crash or Ctrl-C leaves either the old
file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["atomic_path", "atomic_dir", "save_json", "save_npy", "save_npz", "save_image",
           "read_image", "file_sha256"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None) -> Iterator[Path]:
    """Context manager yielding a temporary path beside ``path``; on success it is renamed to
    ``path``, on error it is removed. ``suffix`` (default: ``path``'s) lets writers that pick
    the format from the extension (numpy, OpenCV, PyAV) work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give a new file's usual mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path) -> Iterator[Path]:
    """Context manager yielding an empty temporary directory beside ``path``; on success it
    replaces ``path`` (an existing directory there is removed first), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (numpy scalars/arrays and Paths allowed)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def save_npy(path, array) -> None:
    """``np.save`` atomically."""
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, np.asarray(array), allow_pickle=False)


def save_npz(path, **arrays) -> None:
    """``np.savez_compressed`` atomically."""
    with atomic_path(path, ".npz") as tmp:
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


def save_image(path, image: np.ndarray, quality: int = 95) -> None:
    """Write an RGB uint8 [H, W, 3] or grey [H, W] image (format from the extension: .jpg
    with ``quality``, .png lossless) atomically.

    Raises:
        OSError: the image could not be encoded or written.
    """
    import cv2

    path = Path(path)
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif path.suffix.lower() == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast; label maps compress well anyway
    else:
        params = []
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img, params):
            raise OSError(f"could not write image {path}")


def read_image(path, grey: bool = False) -> np.ndarray:
    """Read an image as RGB uint8 [H, W, 3] (or grey [H, W] with ``grey`` / for 1-channel
    files).

    Raises:
        FileNotFoundError: missing or unreadable file.
    """
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"could not read image {path}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if grey else cv2.COLOR_BGR2RGB)
    return img


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()
