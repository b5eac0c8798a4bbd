"""Exceptions raised by jeancore for problems with the user's input (not bugs)."""

from __future__ import annotations


class JeanError(Exception):
    """Base class of jeancore's input errors; the message says what was wrong and what to do."""


class BadInputError(JeanError, ValueError):
    """An input file or dataset cannot be used (no face, no audio, not a video, ...)."""


class MissingDependencyError(JeanError, ImportError):
    """An optional dependency (e.g. mediapipe, face-alignment) is not installed."""


class ConfigError(JeanError, ValueError):
    """A setting (command-line flag or config field) is out of range or contradicts another."""
