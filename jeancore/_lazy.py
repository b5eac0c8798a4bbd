"""Names of a package imported on first use (PEP 562), so that importing the package stays
cheap: ``jean --help`` loads no torch, and the audio side loads without the NeRF's kernels."""

from __future__ import annotations

import importlib

__all__ = ["lazy_names"]


def lazy_names(package: str, table: dict):
    """``(__getattr__, __dir__)`` for a package whose attribute ``name`` is
    ``getattr(import_module(table[name], package), name)`` (``table`` values are module names
    relative to the package, e.g. ``".run"`` or ``"..checkpoints"``)."""
    def __getattr__(name):
        if name in table:
            return getattr(importlib.import_module(table[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(importlib.import_module(package).__dict__) | set(table))

    return __getattr__, __dir__
