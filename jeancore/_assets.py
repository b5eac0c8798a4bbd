"""Locate data files that ship with jeancore (vendored third-party data, shipped weights).

Installed wheels carry ``third_party/`` inside the package (``jeancore/third_party``, see
CMakeLists.txt); a source checkout has it at the repository root. Both are searched.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    """Path of a vendored data file, e.g. ``asset_path("bfm", "bfm_3ddfa_68kp.npz")``.

    Raises:
        FileNotFoundError: the file is in neither the installed package nor the source tree
            (a broken install: reinstall jeancore).
    """
    candidates = [_PKG / "third_party" / Path(*parts), _PKG.parent / "third_party" / Path(*parts)]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"jeancore data file {'/'.join(parts)!r} not found (looked in "
        f"{', '.join(str(c) for c in candidates)}); reinstall jeancore "
        "(`pip install --no-build-isolation .` from a source checkout)")


def pretrained_path(name: str) -> Path:
    """Path of weights shipped inside the package (``jeancore/pretrained/<name>``).

    Raises:
        FileNotFoundError: the file is missing (a broken install: reinstall jeancore).
    """
    p = _PKG / "pretrained" / name
    if not p.is_file():
        raise FileNotFoundError(f"shipped weights {p} not found; reinstall jeancore")
    return p
