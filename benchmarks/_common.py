"""Shared benchmark helpers: timing (median of repeats), CPU peak memory, machine info."""

from __future__ import annotations

import ctypes
import datetime as _dt
import os
import platform
import statistics
import time

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median_time(fn, repeats: int, warmup: int = 1, sync=None):
    """Median wall time of fn() over `repeats` runs after `warmup` runs: (median_s, times, out).
    `sync` (e.g. torch.cuda.synchronize) is called around each run for device work."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times, out = [], None
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


class CpuPeakMemory:
    """Peak resident memory added by a block of CPU work, in bytes (Linux).

    glibc's mmap threshold is pinned low so every tensor buffer is its own mapping that returns
    to the OS when freed (resident memory then follows live tensors), and the kernel's
    high-water mark (VmHWM) is reset through /proc/self/clear_refs before the block. Resolution
    is about 0.1 MB (the kernel batches resident-set accounting), so compare sizes of MBs.
    """

    available = False

    def __init__(self):
        try:
            self._libc = libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: no dynamic adjustment
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            CpuPeakMemory.available = True
        except OSError:
            CpuPeakMemory.available = False

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def measure(self, fn) -> int | None:
        if not CpuPeakMemory.available:
            return None
        self._libc.malloc_trim(0)  # hand back heap memory freed before the probe was set up
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = self._status("VmRSS:")
        fn()
        return self._status("VmHWM:") - base


def peak_mb(fn, cuda: bool, cpu_mem: CpuPeakMemory | None) -> float | None:
    """Peak memory fn() adds on top of what is allocated, in MB: the CUDA caching allocator's
    peak, or the CPU resident-set high-water mark (cpu_mem; None when it is unavailable)."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    m = cpu_mem.measure(fn) if cpu_mem is not None else None
    return None if m is None else m / 2 ** 20
