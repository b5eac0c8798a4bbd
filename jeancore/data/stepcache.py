"""The step cache of ``jean preprocess``: each step's result is kept in
``DIR/.steps/<step>.json`` with a key of everything it depends on, so a rerun skips the steps
whose key and output files are unchanged and redoes the others (an interrupted run resumes at
the first step that did not finish; a changed setting reruns only the steps that depend on it).

A step's key is the SHA-256 of a JSON payload: the step's name, the dataset format version,
the jeancore version, the source files (paths and SHA-256), the settings the step reads
(:attr:`Step.config`), the keys of the steps it reads from (:attr:`Step.upstream`), and
whatever :attr:`Step.extra_key` adds (e.g. the SHA-256 of precomputed audio features).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .._io import save_json

__all__ = ["Step", "StepCache"]

log = logging.getLogger("jeancore.preprocess")


@dataclass(frozen=True)
class Step:
    """One cached step.

    Attributes:
        name: the step's name (its marker file is ``.steps/<name>.json``).
        run: ``run(context) -> summary`` does the work and returns a JSON-able summary (kept
            in the marker and given to later steps and to meta.json).
        config: names of the config fields the result depends on.
        upstream: names of the steps whose results it reads (their keys enter its key).
        outputs: files / folders (relative to the dataset folder) the step leaves; a step
            whose outputs were deleted runs again.
        audio_outputs: outputs left only when the config has audio (``not config.no_audio``).
        extra_key: ``extra_key(config) -> dict`` of more inputs for the key, or None.
    """

    name: str
    run: Callable
    config: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    audio_outputs: tuple[str, ...] = ()
    extra_key: Callable | None = None

    def expected_outputs(self, config) -> list[str]:
        """The files this step leaves with ``config``."""
        return list(self.outputs) + ([] if config.no_audio else list(self.audio_outputs))


class StepCache:
    """The steps' markers of one dataset folder and what the steps of this run returned.

    Args:
        root: the dataset folder (markers in ``root/.steps``).
        config: the run's settings (read through :attr:`Step.config`).
        base: the key inputs common to every step (format and jeancore versions, source).
        progress: print one line per step (cached, or its seconds) to stderr.

    Attributes:
        keys, summaries, seconds: per step name, this run's key, summary and run time
            (0 for a cached step).
    """

    def __init__(self, root, config, base: dict, progress: bool = False):
        self.root, self.config, self.base, self.progress = Path(root), config, dict(base), progress
        self.dir = self.root / ".steps"
        self.keys: dict[str, str] = {}
        self.summaries: dict[str, dict] = {}
        self.seconds: dict[str, float] = {}

    def key(self, step: Step) -> str:
        """The step's cache key (its upstream steps must have run in this cache)."""
        payload = {
            "step": step.name, **self.base,
            "config": {k: getattr(self.config, k) for k in step.config},
            "upstream": {u: self.keys[u] for u in step.upstream},
        }
        if step.extra_key is not None:
            payload.update(step.extra_key(self.config))
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                              ).hexdigest()

    def _cached(self, step: Step, key: str) -> dict | None:
        marker = self.dir / f"{step.name}.json"
        if not marker.is_file():
            return None
        try:
            done = json.loads(marker.read_text())
        except json.JSONDecodeError:
            return None
        outputs = step.expected_outputs(self.config)
        if done.get("key") == key and all((self.root / o).exists() for o in outputs):
            return done
        return None

    def run(self, step: Step, context) -> dict:
        """Run ``step.run(context)``, or take its cached summary when its key and outputs are
        unchanged; records key, summary and seconds. Returns the summary."""
        key = self.key(step)
        self.keys[step.name] = key
        done = self._cached(step, key)
        if done is not None:
            self.summaries[step.name] = done["summary"]
            self.seconds[step.name] = 0.0
            log.info("%s: cached", step.name)
            if self.progress:
                print(f"  {step.name:<14} cached", file=sys.stderr)
            return done["summary"]
        t0 = time.perf_counter()
        summary = step.run(context)
        dt = time.perf_counter() - t0
        self.summaries[step.name] = summary
        self.seconds[step.name] = dt
        save_json(self.dir / f"{step.name}.json", {"key": key, "summary": summary, "seconds": dt})
        if self.progress:
            print(f"  {step.name:<14} {dt:6.2f} s", file=sys.stderr)
        return summary
