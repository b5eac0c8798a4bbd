"""Settings dataclasses given as an instance and/or keyword overrides (``render(...,
size=256)``, ``evaluate_audio(..., split="train")``)."""

from __future__ import annotations

import dataclasses

from .errors import ConfigError

__all__ = ["with_settings"]


def with_settings(cls: type, config, settings: dict):
    """``config`` (an instance of the dataclass ``cls``; None: its defaults) with the fields
    named in ``settings`` changed.

    Raises:
        ConfigError: a name that is not a field of ``cls``, or ``config`` of another type.
    """
    if config is not None and not isinstance(config, cls):
        raise ConfigError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    unknown = set(settings) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} settings {sorted(unknown)}; known: "
                          f"{[f.name for f in dataclasses.fields(cls)]}")
    return dataclasses.replace(config or cls(), **settings)
