"""The run skeleton every training loop of jeancore stands on (audio stages, expression
transformer, NeRF): written once here, so that the loops keep only what is theirs.

* settings: :func:`check_ints`, :func:`resolve_device`;
* random numbers: :func:`rng_state` / :func:`set_rng_state` (torch on the CPU and the CUDA
  device, NumPy's and Python's global states, and optionally a ``torch.Generator``), and
  :func:`isolated_rng`, which leaves the caller's states as they were;
* resume checks: :func:`check_unchanged` (a one-line ConfigError naming every setting that
  differs from the checkpoint's);
* :class:`TrainingRun`: the checkpoint (atomic, ``weights_only``-loadable, format name and
  version: :mod:`jeancore.checkpoints`), the TensorBoard writer, the tqdm progress bar and
  Ctrl-C: the first one lets the current step finish, saves a checkpoint and raises
  KeyboardInterrupt (the ``jean`` command then exits with status 130); a second one
  interrupts at once and leaves the last checkpoint.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..checkpoints import CheckpointFormat, plain, write_checkpoint
from ..errors import ConfigError

__all__ = ["TrainingRun", "check_ints", "check_unchanged", "isolated_rng", "resolve_device",
           "rng_state", "set_rng_state"]


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------

def check_ints(config, names, lo: int = 1, *, optional: bool = False) -> None:
    """Checks that each named field of ``config`` is an integer >= ``lo`` (not a bool; None
    allowed with ``optional``).

    Raises:
        ConfigError: naming the field, the bound and the value.
    """
    for name in names:
        v = getattr(config, name)
        if optional and v is None:
            continue
        if isinstance(v, bool) or int(v) != v or v < lo:
            raise ConfigError(f"{name} must be {'None or ' if optional else ''}an integer "
                              f">= {lo}, got {v!r}")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; otherwise the torch device named.

    Raises:
        ConfigError: not a device name, or CUDA asked for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"bad device {name!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return dev


def check_unchanged(path, what: str, old: dict, new: dict) -> None:
    """Refuses a resume whose settings differ from the checkpoint's.

    Args:
        path: the checkpoint (for the message).
        what: what the settings are, e.g. "network widths", "sample-order settings".
        old: the checkpoint's values; new: the values now, ``{name: value}`` (tuples and
            lists compare equal).

    Raises:
        ConfigError: ``cannot resume from PATH: it has other WHAT: k=old (now new), ...``.
    """
    diff = [f"{k}={old.get(k)!r} (now {v!r})" for k, v in new.items()
            if plain(old.get(k)) != plain(v)]
    if diff:
        raise ConfigError(f"cannot resume from {path}: it has other {what}: " + ", ".join(diff))


# ---------------------------------------------------------------------------------------------
# random numbers
# ---------------------------------------------------------------------------------------------

def rng_state(device: torch.device, generator: torch.Generator | None = None) -> dict:
    """torch's (CPU and, on CUDA, the device's), NumPy's global and Python's random states,
    and ``generator``'s when given, as tensors and plain types (loadable with
    ``torch.load(weights_only=True)``)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                       "cached_gaussian": float(np_state[4])},
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, device: torch.device,
                  generator: torch.Generator | None = None) -> None:
    """Restores what :func:`rng_state` saved (entries it lacks are left as they are)."""
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                             n["has_gauss"], n["cached_gaussian"]))
    if "python" in state:
        random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    if generator is not None:
        generator.set_state(state["generator"])


@contextlib.contextmanager
def isolated_rng(device: torch.device):
    """Inside: the caller's torch (CPU and ``device``), NumPy and Python random states may be
    reseeded freely; on exit they are restored."""
    caller_np, caller_py = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        np.random.set_state(caller_np)
        random.setstate(caller_py)


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

class _CtrlC:
    """SIGINT while training: the first one only sets :attr:`hit`; a second one raises
    KeyboardInterrupt at once. Installed in the main thread only (elsewhere Ctrl-C keeps
    Python's default)."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class TrainingRun:
    """Checkpoint, TensorBoard, progress bar and Ctrl-C of one training loop.

    Use as a context manager around the loop::

        with TrainingRun(path, FORMAT, state_fn, step=step, total=total, resumed=...,
                         desc="...", log_dir=out / "tb") as run:
            while step < total:
                with run.step():              # one optimisation step and its bookkeeping
                    ...; step += 1
                run.advance(step, loss=...)   # progress bar
                run.check_interrupt()         # first Ctrl-C: save and stop
                ...                           # logging (run.writer), validation, run.save()

    On leaving through KeyboardInterrupt outside a step (Ctrl-C during validation, or a
    callback raising it) the finished steps are saved; inside a step (a second Ctrl-C) the
    last checkpoint is left as it is (the model may be half updated); other exceptions save
    nothing.

    Args:
        checkpoint: the checkpoint file.
        fmt: its :class:`~jeancore.checkpoints.CheckpointFormat`.
        state: callable returning the checkpoint dict of the current state (format and
            version are added when writing).
        step: the step the run starts at (the checkpoint's on resume); total: the last step.
        resumed: continuing from a checkpoint (TensorBoard events logged after it by a killed
            run are hidden; a fresh run hides every old event in the folder).
        desc, unit: progress-bar label and unit.
        progress: show the progress bar.
        log_dir: TensorBoard folder (None: no writer).
        main_process: False on the ranks of a distributed run other than 0: no checkpoint,
            no TensorBoard, no progress bar there.
    """

    def __init__(self, checkpoint, fmt: CheckpointFormat, state: Callable[[], dict], *,
                 step: int, total: int, resumed: bool, desc: str, unit: str = "step",
                 progress: bool = True, log_dir=None, main_process: bool = True):
        self.checkpoint = Path(checkpoint)
        self.fmt = fmt
        self._state = state
        self.current = int(step)
        self.total = int(total)
        self.main_process = main_process
        self.saved_step = self.current if resumed else None
        self._resumed = resumed
        self._log_dir = log_dir
        self._bar_args = dict(total=self.total, initial=min(self.current, self.total),
                              disable=not progress or not main_process, unit=unit, desc=desc,
                              dynamic_ncols=True)
        self._in_step = False
        self._ctrl_c = _CtrlC()
        self.writer = None
        self.bar = None

    def __enter__(self) -> TrainingRun:
        from tqdm.auto import tqdm

        if self.main_process and self._log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self._log_dir),
                                        purge_step=self.current + 1 if self._resumed else 0)
        self.bar = tqdm(**self._bar_args)
        self._ctrl_c.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) \
                    and not self._in_step and self.saved_step != self.current:
                self.save()
        finally:
            self._ctrl_c.__exit__(exc_type, exc, tb)
            self.bar.close()
            if self.writer is not None:
                self.writer.close()
        return False

    @property
    def interrupted(self) -> bool:
        """A Ctrl-C has arrived (the loop stops after the current step)."""
        return self._ctrl_c.hit

    @contextlib.contextmanager
    def step(self):
        """Marks one optimisation step: a KeyboardInterrupt inside it saves nothing."""
        self._in_step = True
        yield
        self._in_step = False

    def advance(self, step: int, **postfix) -> None:
        """The loop has finished ``step``: moves the progress bar (``postfix``: values shown
        beside it, formatted by the caller)."""
        self.bar.update(step - self.current)
        self.current = int(step)
        if postfix:
            self.bar.set_postfix(**postfix)

    def check_interrupt(self, hit: bool | None = None) -> None:
        """After the first Ctrl-C (or when ``hit``, e.g. any rank of a distributed run saw
        one): saves the checkpoint and raises KeyboardInterrupt."""
        if self.interrupted if hit is None else hit:
            self.save()
            raise KeyboardInterrupt

    def save(self) -> None:
        """Writes the checkpoint of the current state (on the main process only)."""
        if self.main_process:
            write_checkpoint(self.checkpoint, self.fmt, self._state())
        self.saved_step = self.current

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        """TensorBoard scalars ``prefix + name`` at ``step`` (nothing without a writer)."""
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}{name}", value, step)
